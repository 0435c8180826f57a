"""Where quant-explorer writes: ./artifacts unless $QUANT_EXPLORER_ARTIFACTS says otherwise (the Python API's
`artifacts_dir=` sets it for the call)."""

from __future__ import annotations

import os
from pathlib import Path

ARTIFACTS_ENV = "QUANT_EXPLORER_ARTIFACTS"
CACHE_ENV = "QUANT_EXPLORER_CACHE"


def env_path(name: str, default: Path | str) -> Path:
    """A directory named by environment variable `name` (`default` when unset or empty), with a leading `~`
    expanded as a shell would: a quoted '~/x' never becomes a folder named `~` in the working directory."""
    return Path(os.path.expanduser(os.environ.get(name) or str(default)))


def artifacts_dir() -> Path:
    """$QUANT_EXPLORER_ARTIFACTS, unless unset or empty (which would write into the working directory)."""
    return env_path(ARTIFACTS_ENV, "artifacts")


def cache_dir() -> Path:
    """Where decoded tensors, downloads and emulated runs' logits live: $QUANT_EXPLORER_CACHE or
    ~/.cache/quant-explorer."""
    return env_path(CACHE_ENV, env_path("XDG_CACHE_HOME", Path.home() / ".cache") / "quant-explorer")


def results_file() -> Path:
    return artifacts_dir() / "results" / "full_results.json"


def labels_dir() -> Path:
    """Each evaluation set's labels, by fingerprint: a regenerated cache (git-ignored), never committed, since
    the labels are the data's own; the results file keeps only the fingerprint."""
    return artifacts_dir() / "cache" / "labels"


def models_dir() -> Path:
    """Exported and quantized models: a regenerated cache, git-ignored."""
    return artifacts_dir() / "models"


def trained_dir(model: str) -> Path:
    """Where `train` writes unless --out says otherwise: never over the weights shipped in the package."""
    return artifacts_dir() / "weights" / model


def results_path(name: str) -> Path:
    """A results file beside full_results.json: a study's (calibration_size.json...) or a bench document."""
    return results_file().with_name(name)


def bench_file(model: str) -> Path:
    return results_path(f"bench_{model}.json")
