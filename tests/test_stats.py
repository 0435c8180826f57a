"""The statistics every interval and tie rests on, checked against answers known by hand."""

import numpy as np
import pytest

from quant_explorer.stats import correct, excludes_zero, mcnemar, paired_delta, resolution


def test_mcnemar_counts_the_discordant_images_and_gives_the_exact_binomial_p():
    labels = np.zeros(30, dtype=int)
    fp32 = np.zeros(30, dtype=int)
    fp32[:5] = 1  # FP32 wrong on images 0-4
    quantized = fp32.copy()
    quantized[[0, 1]] = 0  # quantized right where FP32 was wrong: 2 gained
    quantized[10:18] = 1  # and wrong on 8 images FP32 had right
    out = mcnemar(fp32 == labels, quantized == labels)
    assert out["fp32_right_quantized_wrong"] == 8 and out["fp32_wrong_quantized_right"] == 2
    # two-sided exact: 2 * P(X <= 2), X ~ Binomial(10, 1/2) = 2 * (1 + 10 + 45) / 1024
    assert out["mcnemar_p"] == pytest.approx(112 / 1024, abs=1e-6)
    assert mcnemar(fp32 == labels, fp32 == labels)["mcnemar_p"] == 1.0  # no discordant image: no evidence


def test_bootstrap_of_a_known_paired_difference_matches_the_normal_interval():
    rng = np.random.default_rng(1)
    n = 1000
    labels = np.zeros(n, dtype=int)
    quantized = np.zeros(n, dtype=int)
    quantized[rng.choice(n, 100, replace=False)] = 1  # 100 of 1,000 images lost, none gained: exactly -10 pp
    d = paired_delta(correct([quantized], labels), correct([labels], labels))
    se = 100 * np.sqrt(0.1 * 0.9 / n)  # the per-image difference is -1 w.p. 0.1, else 0
    assert d["mean_pp"] == pytest.approx(-10.0)
    assert d["ci95_pp"][0] == pytest.approx(-10 - 1.96 * se, abs=0.3)
    assert d["ci95_pp"][1] == pytest.approx(-10 + 1.96 * se, abs=0.3)
    assert d["image_sd_pp"] == pytest.approx(se, rel=0.1) and d["seed_sd_pp"] == 0.0
    assert excludes_zero(d["ci95_pp"])
    again = paired_delta(correct([quantized], labels), correct([labels], labels))
    assert again == d  # seeded: the same predictions give the same interval


def test_calibration_seeds_widen_the_interval_by_their_spread():
    n, labels = 1000, np.zeros(1000, dtype=int)
    order = np.random.default_rng(2).permutation(n)
    seeds = []
    for lost in (60, 80, 100, 120, 140):  # per-seed deltas -6 ... -14 pp, mean -10
        preds = np.zeros(n, dtype=int)
        preds[order[:lost]] = 1
        seeds.append(preds)
    fp32 = correct([labels], labels)
    pooled = paired_delta(correct(seeds, labels), fp32)
    one = paired_delta(correct(seeds[2:3], labels), fp32)
    assert pooled["mean_pp"] == pytest.approx(-10.0)
    assert pooled["seed_sd_pp"] == pytest.approx(np.std([6, 8, 10, 12, 14], ddof=1) / np.sqrt(5), abs=1e-3)
    width = pooled["ci95_pp"][1] - pooled["ci95_pp"][0]
    assert width > 1.3 * (one["ci95_pp"][1] - one["ci95_pp"][0])
    # images and seeds together: about 1.96 * sqrt(image var + (k-1)/k * seed var of the mean) either side
    expected = 2 * 1.96 * np.sqrt(pooled["image_sd_pp"] ** 2 + 0.8 * pooled["seed_sd_pp"] ** 2)
    assert width == pytest.approx(expected, rel=0.2)


def test_no_difference_gives_an_interval_around_zero_and_a_class_mask_isolates_a_class():
    rng = np.random.default_rng(3)
    n = 2000
    labels = np.repeat([0, 1], n // 2)
    fp32 = labels.copy()
    quantized = labels.copy()
    swap = rng.choice(n // 2, 40, replace=False)
    quantized[swap[:20]] = 1  # class 0: 20 images lost ...
    fp32[swap[20:]] = 1  # ... and 20 others that FP32 got wrong are now right: no net change
    a, b = correct([quantized], labels), correct([fp32], labels)
    d = paired_delta(a, b)
    assert d["mean_pp"] == 0.0 and not excludes_zero(d["ci95_pp"])
    assert d["ci95_pp"][0] < -0.3 and d["ci95_pp"][1] > 0.3  # 40 discordant images are not nothing
    untouched = paired_delta(a, b, mask=labels == 1)
    assert untouched["mean_pp"] == 0.0 and untouched["ci95_pp"] == [0.0, 0.0]


def test_resolution_states_what_can_be_told_apart_here_and_on_the_full_test_set():
    deltas = [{"ci95_pp": [-2.0, 0.0], "image_sd_pp": 0.5, "seed_sd_pp": 0.0},
              {"ci95_pp": [-1.5, 0.5], "image_sd_pp": 0.5, "seed_sd_pp": 0.0}]
    out = resolution(deltas, 1000, 5)
    assert out["resolution_pp"] == 1.0
    assert out["full_test_set_resolution_pp"] == pytest.approx(1.96 * 0.5 * np.sqrt(0.1), abs=0.01)
    assert "with 1,000 test images and 5 seeds" in out["text"].lower() and "10,000-image" in out["text"]
