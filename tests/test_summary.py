"""The view every table reads: one environment and one evaluation set, seeds pooled, ties and the pick.

Results files are written by hand here (predictions chosen so the answer is known); test_sweep.py checks the
same view on files a real sweep wrote.
"""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from quant_explorer.analysis.rows import this_environment
from quant_explorer.analysis.summary import load_view
from quant_explorer.backends import get_config
from quant_explorer.errors import UserError
from quant_explorer.identity import cpu_class, identity_hash, versions
from quant_explorer.results import SCHEMA_VERSION, Results, encode_classes, load_results, save_labels
from quant_explorer.row import Row

N = 400
LABELS = np.arange(N) % 10
CLASSES = [f"c{i}" for i in range(10)]


def preds(lost: int, offset: int = 0) -> np.ndarray:
    """The labels with `lost` images (from `offset` on, every 7th) predicted wrong."""
    out = LABELS.copy()
    idx = (np.arange(lost) * 7 + offset) % N
    out[idx] = (out[idx] + 1) % 10
    return out


def entry(model: str, config: str, p: np.ndarray, seed: int | None, cpu: str, dataset: str = "ds1",
          created: str = "2026-12-01T00:00:00+00:00", identity_extra: dict | None = None, **extra) -> tuple[str, dict]:
    cfg = get_config(config).to_dict()
    identity = {"model": model, "model_weights_sha256": "w", "dataset": {"fingerprint": dataset, "n_images": N},
                "calibration_pool": "pool", "calibration": [256, seed] if seed is not None else None,
                "calibration_sample": f"sample{seed}" if seed is not None else None,
                "config": config, "recipe": "ort v1", "cpu_class": cpu, "versions": versions(),
                **(identity_extra or {})}
    right = p == LABELS
    cm = np.zeros((10, 10), int)
    np.add.at(cm, (LABELS, p), 1)
    row = {"model": model, "config_name": config, "config": cfg, "model_weights_sha256": "w",
           "identity": identity, "accuracy": float(right.mean()), "correct": int(right.sum()), "n_images": N,
           "dataset": f"images:{dataset}", "predictions": encode_classes(p), "size_bytes": extra.pop("size", 100),
           "confusion_matrix": cm.tolist(), "created": created, "runtime": "onnxruntime",
           "per_class_accuracy": {c: float(right[LABELS == i].mean()) for i, c in enumerate(CLASSES)}, **extra}
    if seed is not None:
        row["calibration"] = {"calibration_n": 256, "calibration_seed": seed}
    key = "|".join([model, config, *(("n=256", f"seed={seed}") if seed is not None else ()), identity_hash(identity)])
    return key, row


def results(*entries: tuple[str, dict], datasets=("ds1",), cache_labels: bool = True) -> dict:
    for d in datasets if cache_labels else ():
        save_labels(d, LABELS)  # as a sweep caches them
    return {"schema_version": SCHEMA_VERSION, "entries": dict(entries),
            "datasets": {d: {"name": f"images:{d}", "n_images": N, "classes": CLASSES} for d in datasets}}


HERE = cpu_class()
OTHER = "amx" if HERE != "amx" else "avx2"
BENCH = {"runtime": "onnxruntime"}


def bench(throughput: float, latency: float, **ratios) -> dict:
    return {"bench": {**BENCH, "throughput_b256": throughput, "latency_ms_b1_median": latency, **ratios}}


def model_rows(cpu: str = HERE, bench_it: bool = True, dataset: str = "ds1") -> list:
    out = [entry("m", "fp32_baseline", preds(20), None, cpu, dataset, size=400,
                 **(bench(2000.0, 0.6) if bench_it else {}))]
    for seed in range(3):
        first = bench_it and seed == 0
        out.append(entry("m", "ort_u8_minmax_qdq_per_channel", preds(22 + seed, 100 * seed), seed, cpu, dataset,
                         size=120, **(bench(4000.0, 0.4, latency_speedup_vs_fastest_fp32_b1=1.5,
                                            fastest_fp32_b1="onnxruntime") if first else {})))
        out.append(entry("m", "ort_u8_minmax_qoperator_per_channel", preds(21 + seed, 50 * seed), seed, cpu, dataset,
                         size=90, **(bench(3000.0, 0.5, speedup_vs_fp32_b256=1.7) if first else {})))
        out.append(entry("m", "ort_s8_minmax_qdq_per_channel", preds(80 + seed), seed, cpu, dataset, size=80,
                         **(bench(9000.0, 0.1) if first else {})))
    return out


def test_the_confidence_set_for_the_best_holds_what_noise_cannot_separate_and_the_pick_is_fastest_at_batch_1():
    view = load_view(Results.of(results(*model_rows())))
    choice = view.choices["m"]
    assert choice.best == "ort_u8_minmax_qoperator_per_channel"  # 21-23 lost vs 22-24: inside the noise
    assert set(choice.best_set) == {"ort_u8_minmax_qdq_per_channel", "ort_u8_minmax_qoperator_per_channel"}
    assert choice.objective == "latency"
    # s8 loses 60 more images on every seed: out of the set, however fast it is
    assert choice.pick == "ort_u8_minmax_qdq_per_channel" and "lowest batch-1 median latency" in choice.rule
    assert "1.50x the fastest FP32 (onnxruntime)" in choice.rule  # the bench's ratio against the fastest FP32
    assert "at batch 256 the fastest of the set is ort_u8_minmax_qdq_per_channel" not in choice.rule
    rows = {r.config_name: r for r in view.rows}
    s8 = rows["ort_s8_minmax_qdq_per_channel"]
    assert s8.delta_pp == pytest.approx(-100 * (61 / N), abs=1e-6) and s8.delta_pp_ci[1] < 0
    assert not s8.in_best_set and s8.beaten_by and s8.best_set_margin_pp > 0
    assert rows["ort_u8_minmax_qdq_per_channel"].seeds == [0, 1, 2]
    assert rows["ort_u8_minmax_qdq_per_channel"].accuracy_std == pytest.approx(np.std([378, 377, 376], ddof=1) / N)


def test_a_set_member_that_loses_a_class_detectably_is_not_picked_while_another_loses_none():
    lossy = LABELS.copy()
    class3 = np.flatnonzero(LABELS == 3)
    lossy[class3[(preds(20) == LABELS)[class3]][:20]] = 5  # half of c3, which FP32 gets right, now called c5
    rows = [entry("m", "fp32_baseline", preds(20), None, HERE, size=400, **bench(2000.0, 0.6))]
    for seed in range(3):
        first = seed == 0
        rows.append(entry("m", "ort_u8_minmax_qdq_per_channel", preds(22 + seed, 100 * seed), seed, HERE, size=120,
                          **(bench(4000.0, 0.4) if first else {})))
        rows.append(entry("m", "ort_u8_minmax_qoperator_per_channel", lossy, seed, HERE, size=90,
                          **(bench(9000.0, 0.1) if first else {})))  # as accurate overall, and faster
    choice = load_view(Results.of(results(*rows))).choices["m"]
    assert set(choice.best_set) == {"ort_u8_minmax_qdq_per_channel", "ort_u8_minmax_qoperator_per_channel"}
    assert choice.pick == "ort_u8_minmax_qdq_per_channel"
    assert "1 of them loses a class detectably (Holm over the classes) and is not picked: " \
           "ort_u8_minmax_qoperator_per_channel (c3)" in choice.rule


def test_the_objective_chooses_the_pick_and_names_the_fastest_at_the_other_batch_size():
    data = results(*model_rows())
    throughput = load_view(Results.of(data), objective="throughput").choices["m"]
    assert throughput.pick == "ort_u8_minmax_qdq_per_channel"  # 4,000 images/s against 3,000
    size = load_view(Results.of(data), objective="size").choices["m"]
    assert size.pick == "ort_u8_minmax_qoperator_per_channel" and "4.4x smaller than FP32" in size.rule
    rows = dict(model_rows())
    for row in rows.values():  # the qdq config now fastest at batch 256 only
        if row["config_name"] == "ort_u8_minmax_qdq_per_channel" and "bench" in row:
            row["bench"].update(latency_ms_b1_median=0.9, latency_speedup_vs_fastest_fp32_b1=0.67)
    latency = load_view(Results.of(results(*rows.items()))).choices["m"]
    assert latency.pick == "ort_u8_minmax_qoperator_per_channel"
    assert "at batch 256 the fastest of the set is ort_u8_minmax_qdq_per_channel (4,000 images/s" in latency.rule
    with pytest.raises(UserError, match="--objective"):
        load_view(Results.of(data), objective="speed")


def test_when_no_int8_config_beats_fp32_the_rule_says_what_int8_still_buys():
    rows = dict(model_rows())
    for row in rows.values():
        if "bench" in row and row["config_name"] != "fp32_baseline":
            row["bench"].update(latency_speedup_vs_fastest_fp32_b1=0.8, fastest_fp32_b1="onnxruntime")
    choice = load_view(Results.of(results(*rows.items()))).choices["m"]
    assert "no int8 config in the set beats FP32 at batch 1 (the fastest FP32 (onnxruntime))" in choice.rule
    assert "what int8 still buys here is size" in choice.rule


def test_without_speed_the_smallest_config_of_the_set_is_picked_and_the_rule_says_so():
    view = load_view(Results.of(results(*model_rows(bench_it=False))))
    assert view.choices["m"].pick == "ort_u8_minmax_qoperator_per_channel"  # 90 bytes < 120
    assert "run `quant-explorer bench`), so the smallest" in view.choices["m"].rule


def test_identical_recipes_are_one_finding_counted_once():
    twins = [entry("m", "ort_s8asym_minmax_qdq_per_channel", preds(21 + seed, 50 * seed), seed, HERE, size=95)
             for seed in range(3)]  # the qoperator config's predictions, seed for seed
    view = load_view(Results.of(results(*model_rows(), *twins)))
    choice = view.choices["m"]
    assert choice.identical == [["ort_s8asym_minmax_qdq_per_channel", "ort_u8_minmax_qoperator_per_channel"]]
    assert "give identical predictions on every seed" in choice.identical_text
    assert "ort_u8_minmax_qoperator_per_channel" not in choice.best_set  # counted once, as the first by name
    assert "2 of 3 recipes (3 of 4 configs, those with identical predictions counted as one recipe)" in choice.rule
    rows = {r.config_name: r for r in view.rows}
    assert rows["ort_u8_minmax_qoperator_per_channel"].identical_to == "ort_s8asym_minmax_qdq_per_channel"
    assert rows["ort_u8_minmax_qoperator_per_channel"].in_best_set
    assert choice.best_set_with_identical == ["ort_s8asym_minmax_qdq_per_channel", "ort_u8_minmax_qdq_per_channel",
                                                 "ort_u8_minmax_qoperator_per_channel"]


def test_a_twin_in_the_set_can_be_the_pick_and_the_smallest_of_the_set():
    """The smallest file of the set is a twin (90 bytes) of the recipe's first name (95 bytes): it is picked, as the
    rule says ("the smallest file"), and pareto.md's "smallest of the set" names it too."""
    from quant_explorer.analysis.pareto import picks

    twins = [entry("m", "ort_s8asym_minmax_qdq_per_channel", preds(21 + seed, 50 * seed), seed, HERE, size=95)
             for seed in range(3)]
    view = load_view(Results.of(results(*model_rows(bench_it=False), *twins)), objective="size")
    choice = view.choices["m"]
    assert choice.pick == "ort_u8_minmax_qoperator_per_channel" and "has the smallest file (0 KiB" in choice.rule
    smallest = next(p for p in picks(view) if p.criterion == "smallest of the set")
    assert smallest.row.config_name == "ort_u8_minmax_qoperator_per_channel" and "of the 3 configs" in smallest.rule


def test_the_view_shows_one_environment_and_one_dataset_never_a_mix():
    other_cpu = [(k, {**r, "accuracy": 0.1}) for k, r in model_rows(cpu=OTHER)]
    other_data = model_rows(dataset="ds2")
    file = results(*model_rows(), *other_cpu, *other_data, datasets=("ds1", "ds2"))
    file["entries"] = {k: {**r, "created": "2026-11-01T00:00:00+00:00"}
                       if r["identity"]["dataset"]["fingerprint"] == "ds1" else r
                       for k, r in file["entries"].items()}
    view = load_view(Results.of(file))
    assert view.environment == this_environment() and view.this_machine and not view.notes
    assert view.dataset == "ds2"  # as full as ds1, and newer
    assert len(view.rows) == 4 and {len(view.available)} == {3}
    first = load_view(Results.of(file), dataset="ds1")
    assert all(r.identity["dataset"]["fingerprint"] == "ds1" for r in first.rows)
    theirs = load_view(Results.of(file), environment=OTHER)
    assert not theirs.this_machine and all(r.accuracy == pytest.approx(0.1) for r in theirs.rows)
    assert f"Environment: {OTHER}" in theirs.banner() and "not this machine's" in theirs.banner()
    with pytest.raises(UserError, match="no results for environment"):
        load_view(Results.of(file), environment="sse9")


def test_a_quantize_of_a_few_configs_never_replaces_a_full_sweep_and_another_cpu_class_is_said():
    newer = {"created": "2026-12-05T00:00:00+00:00", "identity_extra": {"versions": {**versions(), "torch": "9.9"}}}
    few = [entry("m", "fp32_baseline", preds(20), None, HERE, **newer),
           entry("m", "ort_u8_minmax_qdq_per_channel", preds(22), 0, HERE, **newer)]
    view = load_view(Results.of(results(*model_rows(), *few)))
    assert len(view.rows) == 4 and "torch 9.9" not in view.environment  # the fuller view, not the newest
    elsewhere = load_view(Results.of(results(*model_rows(cpu=OTHER))))
    assert elsewhere.notes == [f"no results computed on {HERE} yet; showing {OTHER} from 2026-12-01; `make run` "
                               "computes them here"]
    assert elsewhere.choices["m"].pick


def test_each_config_keeps_one_identity_and_one_fp32_row_the_rest_set_aside_once_with_the_reason():
    older = {"created": "2026-11-01T00:00:00+00:00", "identity_extra": {"config": "an older record"}}
    stale = [entry("m", "ort_u8_minmax_qdq_per_channel", preds(200), seed, HERE, **older) for seed in range(5)]
    fp32_old = entry("m", "fp32_baseline", preds(300), None, HERE, created="2026-11-01T00:00:00+00:00",
                     identity_extra={"preprocessing": {"input_scale": "raw255"}})
    view = load_view(Results.of(results(*model_rows(), *stale, fp32_old)))
    rows = {r.config_name: r for r in view.rows}
    assert rows["ort_u8_minmax_qdq_per_channel"].seeds == [0, 1, 2]  # the newest identity's seeds only
    assert rows["fp32_baseline"].accuracy == pytest.approx(380 / N)
    assert len(view.set_aside) == 6
    lines = view.set_aside_lines()
    assert len(lines) == 2
    assert any(line.startswith("5 rows set aside, a row with another config record") for line in lines)
    assert any("an FP32 row with other input preprocessing" in line for line in lines)


def test_without_a_label_cache_the_view_reads_the_labels_from_the_evaluation_set(tmp_path):
    import pickle

    data = results(*model_rows(), cache_labels=False)
    assert load_view(Results.of(data)).labels is None and "no intervals" in load_view(Results.of(data)).notes[-1]
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(pickle.dumps({"labels": LABELS.tolist()}))
    view = load_view(Results.of(data), data_dir=tmp_path)
    assert (view.labels == LABELS).all() and view.choices["m"].best_set and not view.notes
    (folder / "test_batch").write_bytes(pickle.dumps({"labels": np.roll(LABELS, 1).tolist()}))
    wrong = load_view(Results.of(data), data_dir=tmp_path)  # other images' labels never score stored predictions
    assert wrong.labels is None and "does not score the stored predictions as stored" in wrong.notes[-1]


def test_test_labels_reads_the_image_folder_in_the_loaders_order_without_decoding(image_folder_dir):
    from quant_explorer.data import load_split, test_labels

    assert (test_labels(image_folder_dir) == load_split(image_folder_dir, "test").labels.numpy()).all()


def test_per_class_losses_are_called_losing_only_when_they_survive_the_correction():
    from quant_explorer.analysis.comparisons import all_confusions, losers_text

    lossy = LABELS.copy()
    lossy[LABELS == 3] = 5  # class 3 (40 images) all now called c5
    view = load_view(Results.of(results(entry("m", "fp32_baseline", LABELS, None, HERE),
                             entry("m", "dynamic_int8", lossy, None, HERE),
                             entry("m", "ort_u8_minmax_qdq_per_channel", preds(2), 0, HERE))))
    by_config = {c["config"]: c for c in all_confusions(view)}
    lost = by_config["dynamic_int8"]["most_lost"]
    assert [c["class"] for c in lost] == ["c3"] and lost[0]["mostly_to"] == "c5" and lost[0]["lost_images"] == 40
    assert losers_text(by_config["ort_u8_minmax_qdq_per_channel"]) == "no class loses detectably (Holm over 10 classes)"


def test_summary_json_has_the_fields_scripts_rely_on(tmp_path, monkeypatch):
    from quant_explorer.cli import app

    monkeypatch.setenv("QUANT_EXPLORER_ARTIFACTS", str(tmp_path))
    path = tmp_path / "results" / "full_results.json"
    path.parent.mkdir()
    path.write_text(json.dumps(results(*model_rows())))
    out = CliRunner().invoke(app, ["summary", "--json", "--objective", "throughput"])
    assert out.exit_code == 0, out.output
    document = json.loads(out.stdout)
    assert document["alpha"] == 0.05 and document["correction"] == "Holm" and document["objective"] == "throughput"
    model = document["models"]["m"]
    assert model.keys() >= {"best_set", "pick", "rule", "alpha", "correction", "objective", "identical_recipes",
                            "set_aside"}
    assert model["pick"] == "ort_u8_minmax_qdq_per_channel"
    records = {r["config"]: r for r in document["rows"]}
    r = records["ort_u8_minmax_qdq_per_channel"]
    for name in ("model", "config", "runtime", "reference_accuracy", "dataset", "n_images", "environment", "seeds",
                 "accuracy_mean", "accuracy_std", "delta_pp_mean", "delta_pp_ci", "delta_pp_image_se",
                 "delta_pp_seed_se", "changed_predictions_mean", "in_best_set", "throughput_b256", "latency_ms_b1"):
        assert name in r
    assert r["seeds"] == [0, 1, 2] and r["in_best_set"] and r["pick"] and r["throughput_b256"] == 4000.0
    assert r["runtime"] == "onnxruntime" and r["reference_accuracy"] is None
    assert r["environment"]["cpu_class"] == HERE and r["n_images"] == N and len(r["per_seed"]) == 3
    assert r["per_seed"][0].keys() >= {"accuracy", "mcnemar_p", "fp32_right_quantized_wrong"}
    table = CliRunner().invoke(app, ["summary"])
    assert table.exit_code == 0 and "ort_u8_minmax_qdq_per_channel ◀" in table.stdout


def test_reference_accuracy_is_the_mean_of_the_rows_float_reference():
    rows = dict(model_rows())
    for row in rows.values():
        if row["config_name"] == "ort_u8_minmax_qdq_per_channel":
            row["reference"] = {"runtime": "onnx2torch", "accuracy": 0.9 + row["calibration"]["calibration_seed"] / 100}
    view = load_view(Results.of(results(*rows.items())))
    assert next(r for r in view.rows if r.config_name == "ort_u8_minmax_qdq_per_channel").reference_accuracy \
        == pytest.approx(0.91)


def test_schema_1_files_are_migrated_on_read_and_keep_every_row(tmp_path):
    path = tmp_path / "full_results.json"
    old = {"model": "m", "config_name": "fp32_baseline", "config": get_config("fp32_baseline").to_dict(),
           "accuracy": 0.9, "n_images": 10, "dataset": "d", "size_bytes": 1, "confusion_matrix": [[1]],
           "per_class_accuracy": {"a": 0.9}, "environment": {"cpu": {"flags": {"avx2": True}}, "versions": {}}}
    path.write_text(json.dumps({"schema_version": 1, "entries": {"m|fp32_baseline": old}}))
    data = load_results(path)
    assert data["schema_version"] == SCHEMA_VERSION and data["entries"] == {"m|fp32_baseline": {**old, "schema": 1}}
    view = load_view(Results.of(data))  # shown (its own environment), without intervals: it has no predictions
    assert view.environment.startswith("avx2") and view.rows[0].accuracy == 0.9 and not view.correct
    assert "no per-image predictions" in view.notes[0]


def test_legacy_rows_are_never_the_basis_of_a_set_or_a_pick():
    legacy = {"model": "m", "config_name": "dynamic_int8", "config": get_config("dynamic_int8").to_dict(),
              "accuracy": 0.99, "n_images": N, "dataset": "d", "size_bytes": 1, "confusion_matrix": [[1]],
              "per_class_accuracy": {"a": 0.99}, "environment": {"cpu": {"flags": {"avx2": True}}, "versions": {}}}
    view = load_view(Results({"m|dynamic_int8": Row.from_dict(legacy)}, {}))
    choice = view.choices["m"]
    assert choice.pick is None and choice.best_set == [] and "no confidence set and no pick" in choice.rule


def test_a_view_can_pool_a_subset_of_seeds_and_keeps_speed_from_the_benched_seed():
    view = load_view(Results.of(results(*model_rows())), seeds={1, 2})
    rows = {r.config_name: r for r in view.rows}
    assert rows["ort_u8_minmax_qdq_per_channel"].seeds == [1, 2] and "fp32_baseline" in rows
    assert rows["ort_u8_minmax_qoperator_per_channel"].speed.throughput_b256 == 3000.0  # benched on seed 0


def test_rows_on_other_weights_or_calibration_sizes_are_set_aside_with_a_reason():
    key, old = entry("m", "ort_u8_minmax_qdq_per_channel", preds(30), 0, HERE)
    old = {**old, "model_weights_sha256": "older", "identity": {**old["identity"], "model_weights_sha256": "older"}}
    key2, big = entry("m", "ort_u8_minmax_qoperator_per_channel", preds(30), 0, HERE)
    big = {**big, "calibration": {"calibration_n": 1024, "calibration_seed": 0}}
    failed = {k: v for k, v in entry("m", "ort_s8_minmax_qdq_per_channel", preds(1), 0, HERE)[1].items()
              if k != "accuracy"}
    view = load_view(Results.of(results(*model_rows(), (key + "x", old), (key2 + "y", big),
                             ("m|failed", {**failed, "error": "boom"}))))
    reasons = {s["key"]: s["reason"] for s in view.set_aside}
    assert reasons == {key + "x": "measured with other weights of the model (older) than its FP32 row",
                       key2 + "y": "calibrated on 1024 images (this view: 256)"}
    assert {p.key: p.error for p in view.problems} == {"m|failed": "boom"}


def test_a_config_that_failed_is_said_beside_the_pick_not_only_among_unscored_rows():
    from quant_explorer.report.answer import answers

    key, failed = entry("m", "pt2e_u8_per_channel_minmax", preds(20), 0, HERE)
    failed = {k: v for k, v in failed.items() if k in ("model", "config_name", "config", "model_weights_sha256",
                                                      "identity", "calibration", "created")}
    failed["error"] = "AssertionError: expected size 16==16, stride 1==64 at dim=1"
    view = load_view(Results.of(results(*model_rows(), (key, failed))))
    said = "not scored, so not candidates: pt2e_u8_per_channel_minmax (AssertionError: expected size 16==16"
    assert said in view.choices["m"].rule
    assert answers(view)["m"].not_scored == ["pt2e_u8_per_channel_minmax (AssertionError: expected size 16==16, "
                                                "stride 1==64 at dim=1)"]
