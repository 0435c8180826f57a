"""Where quant-explorer writes: ./artifacts unless $QUANT_EXPLORER_ARTIFACTS or --artifacts says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

ARTIFACTS_ENV = "QUANT_EXPLORER_ARTIFACTS"


def artifacts_dir() -> Path:
    return Path(os.environ.get(ARTIFACTS_ENV, "artifacts"))


def results_file() -> Path:
    return artifacts_dir() / "results" / "full_results.json"


def models_dir() -> Path:
    """Exported and quantized models: a regenerated cache, git-ignored."""
    return artifacts_dir() / "models"
