"""The typed row (`row.Row`): every committed row reads and writes back exactly, unknown keys survive, and
readers that name a field that does not exist, or read one by string key, fail. A view's records are typed rows too."""

import json
from pathlib import Path

import pytest

from quant_explorer.analysis.summary import load_view
from quant_explorer.results import MIGRATES, Results, entry_key, load_results, save_rows, update_rows
from quant_explorer.row import Row

COMMITTED = Path(__file__).resolve().parents[1] / "artifacts" / "results" / "full_results.json"


def test_every_committed_row_round_trips_exactly():
    entries = json.loads(COMMITTED.read_text())["entries"]
    assert len(entries) > 100
    for key, stored in entries.items():
        row = Row.from_dict(stored)
        assert row.extra == {}, f"{key} has keys Row does not know: {sorted(row.extra)}"
        written = row.to_dict()
        assert written == stored and list(written) == list(stored), key
    schemas = {Row.from_dict(e).schema for e in entries.values()}  # a migrated row says its own; None: current
    assert None in schemas and schemas <= {None, *MIGRATES}  # legacy rows keep their schema


def test_unknown_keys_and_nulls_are_kept_and_fields_are_typed(tmp_path):
    stored = {"model": "m", "config_name": "c", "accuracy": 0.5, "n_images": 2, "per_class_accuracy": {"a": 0.5},
              "confusion_matrix": [[1, 1], [0, 0]], "images_per_second": None, "from_a_newer_version": {"x": 1}}
    row = Row.from_dict(stored)
    assert row.accuracy == 0.5 and row.images_per_second is None and row.extra["from_a_newer_version"] == {"x": 1}
    assert row.to_dict() == stored
    with pytest.raises(AttributeError):
        row.acuracy  # noqa: B018 (a typo is an error, not a silent None)
    with pytest.raises(TypeError):
        Row(acuracy=0.5)
    with pytest.raises(TypeError):
        row["accuracy"]  # noqa: B018 (fields are attributes; the stored dict is `to_dict`'s)
    path = tmp_path / "full_results.json"
    save_rows(path, {entry_key("m", "c"): row}, {"fp": {"name": "d", "n_images": 2, "classes": ["a", "b"]}})
    assert load_results(path)["entries"] == {"m|c": stored}  # written as it was read
    results = Results.load(path)
    assert results.rows["m|c"] == row and results.datasets["fp"]["n_images"] == 2


def test_update_rows_rewrites_only_the_rows_it_returns(tmp_path):
    path = tmp_path / "full_results.json"
    save_rows(path, {"m|a": Row(model="m", config_name="a", correct=4), "m|b": Row(model="m", config_name="b")})
    before = load_results(path)["entries"]["m|b"]
    written = update_rows(path, lambda rows: {"m|a": Row(**{**vars(rows["m|a"]), "bench": {"latency": 1.0}})})
    entries = load_results(path)["entries"]
    assert list(written) == ["m|a"] and entries["m|a"] == {"model": "m", "config_name": "a", "correct": 4,
                                                           "bench": {"latency": 1.0}}
    assert entries["m|b"] == before


def test_a_views_records_are_their_first_seeds_rows_with_the_seed_statistics():
    results = Results.load(COMMITTED)
    view = load_view(results)
    assert view.rows
    for record in view.rows:
        first = results.rows[record.key]
        assert (record.model, record.config_name, record.identity) == (first.model, first.config_name, first.identity)
        assert record.first_seed_accuracy == first.accuracy and len(record.per_seed) == max(len(record.seeds), 1)
        assert record.accuracy_min - 1e-12 <= record.accuracy <= record.accuracy_max + 1e-12  # the mean over seeds
        assert record.cost("size_bytes") == record.size_bytes
    assert all(p.why and results.rows[p.key].accuracy is None for p in view.problems)
