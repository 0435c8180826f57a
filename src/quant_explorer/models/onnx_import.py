"""Bring your own ONNX model: validate a foreign FP32 image classifier and normalize it to our one form.

Everything downstream (ORT quantize_static, onnx2torch for the PyTorch paths, evaluation) sees the same
thing an export of ours gives it: one float32 NCHW [N, C, H, W] input with a dynamic batch and one
[N, classes] output, at opset 13 or newer; `LoadedModel.input_shape` and `num_classes` say which. A normalized
copy is written under `models_dir()` keyed by the file's content; the original is never modified. How its input
is scaled is remembered in a small model card beside it (`model.onnx.card.json`), so the user says it once.

This module only puts the steps in order: reading and validating (onnx_validate), the model card
(model_card), the rewrites (onnx_normalize) and the PyTorch conversion (onnx_convert).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

from ..errors import first_line
from ..files import atomic_path
from ..provenance import reuse_or_build
from .loaded import LoadedModel
from .model_card import card_preprocessing, write_card
from .onnx_convert import convert, torch_disagreement
from .onnx_normalize import normalize
from .onnx_validate import read_model
from .preprocessing import Preprocessing


def load_onnx_model(path: Path, preprocessing: Preprocessing | None = None,
                    check: Callable[[LoadedModel], None] | None = None, remember: bool = True) -> LoadedModel:
    """Validate `path`, write its normalized copy, convert it for PyTorch; one-line UserError on anything wrong.
    `check` (e.g. does it fit the data?) sees the model before anything is written; `remember`: write the model
    card beside the file (the Python API, whose data come preprocessed, does not)."""
    from ..paths import models_dir

    path = Path(path)
    model, data = read_model(path)
    sha = hashlib.sha256(data).hexdigest()
    preprocessing = card_preprocessing(path, sha, preprocessing)
    normalized, info = normalize(model, path, preprocessing)
    # Converted now, but only ever needed by the PyTorch configs: ONNX Runtime runs what onnx2torch cannot.
    module, unavailable = None, None
    try:
        module = convert(normalized, info["fixed_batch"])
    except Exception as e:  # any converter's failure, some with no message: then its type says what failed
        unavailable = (f"onnx2torch cannot convert it ({first_line(e) or type(e).__name__}); ONNX Runtime configs "
                       f"still run it")
    chw = tuple(info["input_shape"])
    if module is not None and (disagreement := torch_disagreement(module, normalized, preprocessing, chw)):
        module, unavailable = None, disagreement
    standard = normalized.SerializeToString()
    # Keyed by both files: a change in how we normalize gets a new directory, never a stale derived cache.
    target = models_dir() / f"imported-{sha[:12]}-{hashlib.sha256(standard).hexdigest()[:8]}" / "fp32.onnx"
    loaded = LoadedModel(f"onnx:{sha[:12]}", module, preprocessing, path, sha, onnx_source=target, import_info=info,
                         torch_unavailable=unavailable, input_shape=chw, num_classes=info["num_classes"])
    if check is not None:
        check(loaded)
    reuse_or_build(target, {"source_sha256": sha}, lambda out: _write(out, standard), "normalized copy")
    if remember:
        write_card(path, sha, preprocessing, info)
    return loaded


def _write(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
