import json
import multiprocessing

import pytest

from quant_explorer.errors import UserError
from quant_explorer.results import SCHEMA_VERSION, entry_key, load_results, save_entries


def test_entries_merge_and_survive_reload(tmp_path):
    path = tmp_path / "r" / "full_results.json"
    save_entries(path, {entry_key("m", "a", 256, 0): {"accuracy": 0.5}})
    save_entries(path, {entry_key("m", "b"): {"accuracy": 0.6}})
    data = load_results(path)
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["entries"] == {"m|a|n=256|seed=0": {"accuracy": 0.5}, "m|b": {"accuracy": 0.6}}
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("content, message", [("{not json", "not valid JSON"),
                                              (json.dumps({"schema_version": 99, "entries": {}}), "schema version 99")])
def test_broken_results_file_is_refused_and_left_byte_identical(tmp_path, content, message):
    path = tmp_path / "full_results.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message) as error:
        save_entries(path, {"k": {}})
    assert "mv " in str(error.value)
    assert path.read_text() == content


def _writer(path, worker):
    for i in range(15):
        save_entries(path, {f"w{worker}|{i}": {"i": i}})


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "full_results.json"
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_writer, args=(path, w)) for w in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert len(load_results(path)["entries"]) == 45
