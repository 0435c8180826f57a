"""The model card beside an imported file (`model.onnx.card.json`): how its input is scaled, so the user says
it once, and what normalizing it changed.

A graph cannot tell us whether it expects 0-255 pixels or normalized ones, and guessing wrong costs no error,
only accuracy; so the card is trusted only for the exact file it was written for (by content hash), and a
card we cannot write costs a warning, not the run.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError, first_line, warn
from ..files import write_text_atomic
from .preprocessing import Preprocessing

CARD_SCHEMA_VERSION = 1
PREPROCESSING_HINT = ("pass --input-scale raw255 (the graph takes 0-255 pixels) or unit (0-1), plus --mean/--std "
                      "when it expects normalized input")


def card_path(path: Path) -> Path:
    return path.with_name(path.name + ".card.json")


def card_preprocessing(path: Path, sha: str, given: Preprocessing | None) -> Preprocessing:
    """The preprocessing given now, else the one the model card beside the file remembers."""
    if given is not None:
        return given
    card = card_path(path)
    if not card.exists():
        raise UserError(f"{path} does not say how its input is scaled: {PREPROCESSING_HINT} "
                        f"(remembered in {card.name} for next time)")
    try:
        saved = json.loads(card.read_text())
        remembered = Preprocessing(saved["preprocessing"]["input_scale"],
                                   *(tuple(v) if v else None for v in (saved["preprocessing"]["mean"],
                                                                       saved["preprocessing"]["std"])))
    except (ValueError, KeyError, TypeError, UserError) as e:
        raise UserError(f"model card {card} is unreadable ({first_line(e)}): {PREPROCESSING_HINT} "
                        f"to rewrite it") from None
    if saved.get("sha256") != sha:
        raise UserError(f"model card {card} was written for another version of {path.name} (sha256 "
                        f"{str(saved.get('sha256'))[:12]}, the file is now {sha[:12]}): {PREPROCESSING_HINT} "
                        f"to confirm it")
    return remembered


def write_card(path: Path, sha: str, preprocessing: Preprocessing, info: dict) -> None:
    """The card for `path` (rewritten only when it changes); a card we cannot write is a warning."""
    card = card_path(path)
    text = json.dumps({"schema_version": CARD_SCHEMA_VERSION, "file": path.name, "sha256": sha,
                       "preprocessing": preprocessing.to_dict(), "import": info}, indent=2) + "\n"
    try:
        if not card.exists() or card.read_text() != text:
            write_text_atomic(card, text)
    except (OSError, UserError) as e:  # `files.cannot_write` keeps the filesystem's word for why as `reason`
        warn(f"cannot write model card {card} ({getattr(e, 'reason', None) or e.strerror}): pass --input-scale (and "
             "--mean/--std) again next time")
