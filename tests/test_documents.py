"""The typed documents (`record.Record`): every committed bench document and study entry reads and writes back
exactly, nested records are typed however they are set, `summary --json` keeps its shape, a bench finds its row by
identity, and the studies draw without importing the report that shows them."""

import ast
import json
from pathlib import Path

from quant_explorer.bench import _row_of
from quant_explorer.bench_entry import HEADLINE, POOLED, WORDS, BenchDocument, BenchEntry, LoadRecord, RuntimeSpeed
from quant_explorer.identity import identity_hash
from quant_explorer.record import document
from quant_explorer.results import load_results
from quant_explorer.row import Row, RuntimeScore
from quant_explorer.studies import kinds, read_entries

RESULTS = Path(__file__).resolve().parents[1] / "artifacts" / "results"
PACKAGE = Path(__file__).resolve().parents[1] / "src" / "quant_explorer"


def test_every_committed_bench_document_reads_typed_and_writes_back_exactly():
    paths = sorted(RESULTS.glob("bench*.json"))
    assert len(paths) >= 3
    for path in paths:
        stored = json.loads(path.read_text())
        if "entries" not in stored:
            continue  # bench_profile.json: the benchmarks' own document
        bench = BenchDocument.from_dict(stored)
        written = bench.to_dict()
        assert written == stored and json.dumps(written) == json.dumps(stored), path.name  # key order too
        for entry in bench.entries.values():
            assert isinstance(entry, BenchEntry) and entry.extra == {}, (path.name, sorted(entry.extra))
            assert all(isinstance(r, RuntimeSpeed) for r in (entry.runtimes or {}).values())


def test_every_committed_study_entry_reads_as_its_kind_and_writes_back_exactly():
    for kind in kinds():
        stored = load_results(RESULTS / kind.file)["entries"]
        entries = read_entries(RESULTS / kind.file, kind)
        assert entries and list(entries) == list(stored)
        for key, entry in entries.items():
            assert isinstance(entry, kind.entry_type) and entry.extra == {}, (key, sorted(entry.extra))
            assert entry.to_dict() == stored[key] and list(entry.to_dict()) == list(stored[key])
            head, rows = kind.table(entry)  # drawn from typed fields, as the report draws it
            assert rows and all(len(r) == len(head) for r in rows)


def test_nested_records_are_typed_when_read_built_or_assigned():
    row = Row.from_dict({"model": "m", "bench": {"runtime": "onnxruntime", "load": {"code": "x"}, "new_key": 1,
                                                 "runtimes": {"onnxruntime": {"accuracy": 0.5}}}})
    assert isinstance(row.bench, BenchEntry) and isinstance(row.bench.load, LoadRecord)
    assert row.bench.runtimes["onnxruntime"].accuracy == 0.5 and row.bench.extra == {"new_key": 1}
    row.reference = {"runtime": "onnx2torch", "accuracy": 0.25}  # as `experiment.run_config` sets it
    row.alternates = {"torch": {"error": "RuntimeError: no kernel"}}
    assert row.reference == RuntimeScore(runtime="onnx2torch", accuracy=0.25)
    assert row.alternates["torch"].error.startswith("RuntimeError")
    assert row.to_dict()["bench"] == {"runtime": "onnxruntime", "load": {"code": "x"}, "new_key": 1,
                                      "runtimes": {"onnxruntime": {"accuracy": 0.5}}}


def test_a_speed_field_says_once_what_it_is():
    assert {"latency_ms_b1_median", "throughput_b256", "accuracy", "error"} <= set(HEADLINE)
    assert set(POOLED) <= set(HEADLINE) and list(WORDS) == ["latency_ms_b1_median", "latency_ms_b1_p90",
                                                             "throughput_b256"]


def test_a_bench_finds_its_row_by_identity():
    identity = {"model": "m", "config": "c", "recipe": "ort v1"}
    stored = Row(model="m", config_name="c", identity=identity, identity_hash=identity_hash(identity), correct=3)
    rows = {"m|c|n=20|seed=0|elsewhere": stored, "m|c|other": Row(model="m", config_name="c", identity_hash="x")}
    assert _row_of(rows, identity, "c") is stored
    missing = _row_of({}, identity, "c")  # never stored: timed under that identity, without a score
    assert missing.identity == identity and missing.identity_hash == identity_hash(identity) and missing.correct is None


def test_the_summary_json_record_keeps_its_shape():
    from quant_explorer.analysis.records import SummaryRecord

    record = SummaryRecord("m", "c", "ort", "onnxruntime", "d", "fp", 10, {}, [0], accuracy=0.5, delta_pp=-1.0,
                           changed_predictions=2.0, load=LoadRecord(code="x"))
    shown = document(record)
    assert list(shown) == [
        "model", "config", "backend", "runtime", "dataset", "dataset_fingerprint", "n_images", "environment", "seeds",
        "accuracy_mean", "accuracy_std", "accuracy_min", "accuracy_max", "reference_accuracy", "delta_pp_mean",
        "delta_pp_ci", "delta_pp_se", "delta_pp_image_se", "delta_pp_seed_se", "delta_pp_df", "delta_pp_p",
        "delta_pp_seed_part", "changed_predictions_mean", "per_seed", "in_best_set", "beaten_by", "identical_to",
        "pick", "size_bytes", "bench_runtime", "throughput_b256", "latency_ms_b1", "latency_ms_b1_spread", "load",
        "speedup_b1", "speedup_b256", "resolution_pp"]
    assert (shown["accuracy_mean"], shown["delta_pp_mean"], shown["load"]) == (0.5, -1.0, {"code": "x"})


def test_the_studies_draw_without_importing_the_report():
    for path in (PACKAGE / "studies").glob("*.py"):
        imported = {node.module for node in ast.walk(ast.parse(path.read_text()))
                    if isinstance(node, ast.ImportFrom) and node.module}
        assert not [m for m in imported if m == "report" or m.startswith("report.")], path.name
