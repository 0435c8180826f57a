"""Which stored rows make up a view: the (environment, evaluation set) to show, and within it one identity per
(model, config).

By default the view is the fullest current one (rows with per-image predictions) of this machine's CPU class,
else the fullest current one of another class, said in a note; a `quantize` of a few configs never replaces a
full sweep. Within it each (model, config) keeps the rows of one identity (everything but the calibration
seed), the newest; rows of other identities, other weights or another calibration size are set aside, each
reason said once. A model has one FP32 row.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from ..configs import REFERENCE
from ..errors import UserError
from ..identity import cpu_class, mismatch
from ..results import decode_classes, load_labels
from ..row import Row
from .rows import is_current, recipe_identity, row_dataset, row_environment, this_environment

MODEL_FIELDS = ("model_weights_sha256", "preprocessing")  # identity fields every row of a model shares with its FP32


def available_views(rows: dict[str, Row]) -> list[dict]:
    found: dict[tuple[str, str], dict] = {}
    for row in rows.values():
        if not row.scored:
            continue
        key = (row_environment(row), row_dataset(row))
        info = found.setdefault(key, {"environment": key[0], "dataset": key[1], "dataset_name": row.dataset,
                                      "n_images": row.n_images, "rows": 0, "current": 0, "latest": ""})
        info["rows"] += 1
        info["current"] += is_current(row)
        info["latest"] = max(info["latest"], row.created or "")
    return sorted(found.values(), key=lambda v: v["latest"], reverse=True)


def _cpu_class(view: dict) -> str:
    return view["environment"].split(",")[0]


def choose_view(available: list[dict], environment: str | None, dataset: str | None) -> tuple[dict, list[str]]:
    """The (environment, dataset) to show and the notes on why: the fullest current view of this machine's CPU
    class, else of another class (said), else rows of an older quant-explorer (said)."""
    def matches(v: dict) -> bool:
        return ((environment is None or environment in v["environment"])
                and (dataset is None or dataset == v["dataset"] or dataset in str(v["dataset_name"])))

    chosen = [v for v in available if matches(v)]
    if not chosen:
        known = "; ".join(f"{v['environment']} / {v['dataset_name']} ({v['rows']} rows)" for v in available)
        raise UserError(f"no results for environment {environment!r} and dataset {dataset!r}; the file has: {known}")
    fullest = lambda views: max(  # noqa: E731
        views, key=lambda v: (v["current"], v["environment"] == this_environment(), v["rows"], v["latest"]))
    current = [v for v in chosen if v["current"]]
    if environment is not None:
        return fullest(chosen), []
    here = cpu_class()
    mine = [v for v in current if _cpu_class(v) == here]
    if mine:
        return fullest(mine), []
    if current:
        view = fullest(current)
        return view, [f"no results computed on {here} yet; showing {_cpu_class(view)} from {view['latest'][:10]}; "
                      "`make run` computes them here"]
    return fullest(chosen), ["only rows of an older quant-explorer here (no per-image predictions): no intervals, no "
                             "confidence set and no pick; `make run` computes them"]


def set_aside(key: str, row: Row, reason: str) -> dict:
    """A scored row left out of the view, as `View.set_aside` lists it."""
    return {"key": key, "model": row.model, "config": row.config_name, "seed": row.seed, "reason": reason}


def _newest_identity(rows: dict[str, Row], what: str) -> tuple[dict[str, Row], list[dict]]:
    """The rows of the newest identity among `rows` (one seed each, the newest), and the others set aside."""
    by_identity: dict[str, dict[str, Row]] = defaultdict(dict)
    for key, r in rows.items():
        by_identity[repr(sorted(recipe_identity(r).items()))][key] = r
    groups = sorted(by_identity.values(), key=lambda g: max(r.created or "" for r in g.values()), reverse=True)
    keep, aside = {}, []
    wanted = recipe_identity(next(iter(groups[0].values())))
    for group in groups[1:]:
        stored = recipe_identity(next(iter(group.values())))
        differs = mismatch(stored, wanted) or "of another identity (" + ", ".join(
            sorted(k for k in {*stored, *wanted} if stored.get(k) != wanted.get(k))) + ")"
        aside += [set_aside(k, r, f"{what} {differs}; the newest identity is kept") for k, r in group.items()]
    seen = set()
    for key, r in sorted(groups[0].items(), key=lambda kr: kr[1].created or "", reverse=True):
        if r.seed in seen:
            aside.append(set_aside(key, r, f"seed {r.seed} stored twice; the newer kept"))
        else:
            keep[key] = r
        seen.add(r.seed)
    return keep, aside


def one_identity(rows: dict[str, Row]) -> tuple[dict[str, Row], list[dict], list[str]]:
    """Per model: one FP32 row, the rows on its weights and preprocessing and the usual calibration size, and per
    config the rows of one identity; the rest set aside (`set_aside`: with the reason), and notes for models
    without FP32."""
    keep, aside, notes = {}, [], []
    for model in sorted({r.model for r in rows.values()}):
        mine = {k: r for k, r in rows.items() if r.model == model}
        fp32 = {k: r for k, r in mine.items() if r.config_name == REFERENCE}
        reference = None
        if fp32:
            fp32, out = _newest_identity(fp32, "an FP32 row")
            (first, row), *same = fp32.items()
            keep[first] = row
            aside += out + [set_aside(k, r, "an FP32 row of the same identity; the newest is kept") for k, r in same]
            reference = recipe_identity(row)
        else:
            notes.append(f"{model}: no FP32 row in this view, so no deltas (`quant-explorer sweep --model {model}` "
                         "measures it)")
        others = {}
        for key, r in mine.items():
            if r.config_name == REFERENCE:
                continue
            identity = recipe_identity(r)
            differs = reference and next((f for f in MODEL_FIELDS if identity.get(f) != reference.get(f)), None)
            if differs:
                aside.append(set_aside(key, r, f"measured {mismatch({differs: identity.get(differs)}, reference)} "
                                               "than its FP32 row"))
            else:
                others[key] = r
        sizes = Counter(r.calibration_n for r in others.values() if r.calibration)
        usual = sizes.most_common(1)[0][0] if sizes else None
        configs: dict[str, dict[str, Row]] = defaultdict(dict)
        for key, r in others.items():
            if r.calibration_n is not None and r.calibration_n != usual:
                aside.append(set_aside(key, r, f"calibrated on {r.calibration_n} images (this view: {usual})"))
            else:
                configs[r.config_name][key] = r
        for group in configs.values():
            chosen, out = _newest_identity(group, "a row")
            keep.update(chosen)
            aside += out
    return keep, aside, notes


def evaluation_labels(record: dict | None, fingerprint: str, rows: list[Row],
                      data_dir: Path | None) -> tuple[np.ndarray | None, str | None]:
    """The evaluation set's labels: cached (and proven by the cache entry's record, or, an older version's entry,
    by scoring every stored row as stored), else read from `data_dir` (without decoding images) and checked the
    same way; None and a one-line note where neither gives them. A damaged cache entry is named in that note."""
    if record is None:
        return None, None
    labels, why = load_labels(fingerprint, record["n_images"])
    if labels is not None and (why is None or _scores_as_stored(labels, record, rows)):
        return labels, None
    damaged = f"{why}; " if why else ""
    if data_dir is None:
        return None, (f"{damaged}the labels of {record['name']} are not cached here and no data directory was given "
                      "(--data-dir): no intervals")
    from ..data import test_labels

    try:
        labels = test_labels(data_dir, tuple(record.get("classes") or ()))
    except UserError as e:
        return None, f"{damaged}the labels of {record['name']} are not cached here and {e}: no intervals"
    if not _scores_as_stored(labels, record, rows):
        return None, (f"{damaged}the labels of {record['name']} are not cached here, and the test split in {data_dir} "
                      "does not score the stored predictions as stored (another evaluation set): no intervals; pass "
                      "--data-dir")
    return labels, (f"{why}: read from {data_dir} instead" if why else None)


def _scores_as_stored(labels: np.ndarray, record: dict, rows: list[Row]) -> bool:
    """Whether `labels` are the evaluation set's: as many as its images, and every stored row scored on them gets
    its stored number of correct images."""
    scored = [r for r in rows if r.predictions is not None and r.correct is not None]
    return len(labels) == record["n_images"] and all(
        int((decode_classes(r.predictions) == labels).sum()) == r.correct for r in scored)
