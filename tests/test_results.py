import json
import multiprocessing
import os

import pytest

from quant_explorer.errors import UserError
from quant_explorer.files import locked
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


def test_a_symlinked_results_file_is_written_through_to_its_target(tmp_path):
    target = tmp_path / "elsewhere" / "results.json"
    save_entries(target, {"a": {"i": 1}})
    link = tmp_path / "full_results.json"
    link.symlink_to(target)
    save_entries(link, {"b": {"i": 2}})
    assert link.is_symlink() and link.resolve() == target
    assert set(load_results(target)["entries"]) == {"a", "b"}


def test_a_read_only_results_file_is_refused_and_keeps_its_mode(tmp_path):
    path = tmp_path / "full_results.json"
    save_entries(path, {"a": {"i": 1}})
    path.chmod(0o444)
    before = path.read_bytes()
    with pytest.raises(UserError, match=r"full_results.json \(the file is read-only, mode 444\)"):
        save_entries(path, {"b": {"i": 2}})
    assert path.read_bytes() == before and path.stat().st_mode & 0o777 == 0o444


def test_a_lock_wait_says_who_holds_it_and_gives_up_in_one_line(tmp_path, monkeypatch, capsys):
    path = tmp_path / "full_results.json"
    monkeypatch.setenv("QUANT_EXPLORER_LOCK_TIMEOUT", "1.5")
    with locked(path):  # flock is per open file: a second open of the lock, even in this process, waits
        with pytest.raises(UserError, match=rf"is locked by pid {os.getpid()} on .*; gave up after waiting 2 s: .*"
                                            r"raise \$QUANT_EXPLORER_LOCK_TIMEOUT \(seconds\)") as error:
            save_entries(path, {"a": {}})
    assert len(str(error.value).splitlines()) == 1
    [warning] = capsys.readouterr().err.splitlines()
    assert warning.startswith(f"warning: waiting for {path}, locked by pid {os.getpid()} ") and "(up to 2 s)" in warning
    assert not path.exists()
    for never in ("soon", "inf", "nan", "-1", "86401"):  # a wait that never ends is refused too
        monkeypatch.setenv("QUANT_EXPLORER_LOCK_TIMEOUT", never)
        with pytest.raises(UserError, match=rf"QUANT_EXPLORER_LOCK_TIMEOUT must be a number of seconds from 0 to "
                                            rf"86,400, got '{never}'"):
            save_entries(path, {"a": {}})


def test_a_row_computed_again_under_its_key_keeps_the_speed_measured_on_it(tmp_path):
    """`quantize` recomputes a row: same key, same identity, so the bench attached to it still holds."""
    path = tmp_path / "full_results.json"
    save_entries(path, {"m|c|h": {"accuracy": 0.5, "bench": {"latency_ms_b1_median": 0.2}}, "m|d|h": {"accuracy": 0.4}})
    save_entries(path, {"m|c|h": {"accuracy": 0.6}, "m|d|h": {"accuracy": 0.7}})
    entries = load_results(path)["entries"]
    assert entries["m|c|h"] == {"accuracy": 0.6, "bench": {"latency_ms_b1_median": 0.2}}
    assert entries["m|d|h"] == {"accuracy": 0.7}


def test_a_failed_row_never_replaces_a_stored_answer_and_the_caller_is_told(tmp_path):
    """A recompute (`quantize`, `sweep --force`) that fails keeps the scored or not-applicable row of its key."""
    path = tmp_path / "full_results.json"
    scored, na = {"accuracy": 0.5, "predictions": "AA=="}, {"not_applicable": "no kernels"}
    save_entries(path, {"m|c|h": scored, "m|d|h": na, "m|e|h": {"error": "old failure"}})
    kept = save_entries(path, {"m|c|h": {"error": "DecodeError: ..."}, "m|d|h": {"error": "x"},
                               "m|e|h": {"error": "new failure"}, "m|f|h": {"error": "first try"}})
    entries = load_results(path)["entries"]
    assert kept == ["m|c|h", "m|d|h"] and entries["m|c|h"] == scored and entries["m|d|h"] == na
    assert entries["m|e|h"] == {"error": "new failure"} and entries["m|f|h"] == {"error": "first try"}
