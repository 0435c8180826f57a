"""quant-explorer: what 8-bit post-training quantization costs a CIFAR-10 classifier, and where."""

__version__ = "0.1.0"
