"""quant-explorer: what 8-bit post-training quantization costs an image classifier, and where.

From Python (`api.py`; importing the package stays cheap, torch loads on first use):

    import quant_explorer as qe
    result = qe.explore(model, calibration=train_ds, evaluation=test_ds, configs=["ort_u8_*"], seeds=5)
    result.pick, result.rows, result.report("out/")
    q = qe.quantize(model, "pt2e_u8_per_channel_minmax", train_ds); q(x); q.artifact
    qe.evaluate(q, test_ds)
    qe.configs("pt2e_*")
"""

from __future__ import annotations

import sys
import types

__version__ = "0.1.0"

_API = ("explore", "quantize", "evaluate", "configs", "Exploration", "Quantized")
__all__ = ["__version__", *_API]


def _api(name: str):
    from . import api  # torch and the backends load on first use, not at `import quant_explorer`

    return getattr(api, name)


class _Package(types.ModuleType):
    """The package: `qe.configs` and `qe.evaluate` are the API's functions, though submodules share their names.
    Importing a submodule sets the package attribute of its name to it; these properties keep the functions
    (the submodules stay importable by their full names: `from quant_explorer.evaluate import evaluate`)."""

    configs = property(lambda self: _api("configs"), lambda self, module: None)
    evaluate = property(lambda self: _api("evaluate"), lambda self, module: None)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name in _API:
        return _api(name)
    raise AttributeError(f"module 'quant_explorer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
