"""How sure a difference in accuracy is: images and calibration seeds as two sources of noise, a confidence set
for the best config, multiplicity-corrected flags, McNemar per seed.

Two sources of noise move a quantized model's accuracy: which test images score it (1,017 here), and which
calibration sample set its scales (one draw moves a recipe by up to ~2 points). A delta is paired on both: the
same images for both sides, and seed s of two static configs calibrates on the same images. Its standard error
is the two-way (seeds x images) decomposition of the per-image differences: the image part is the variance of
the seed-averaged per-image differences over n, the seed part the variance of the per-seed deltas over k less
what the seed-by-image interaction already put there (so nothing is counted twice). With 5 seeds the seed part
is estimated from 4 degrees of freedom, so the interval uses Student's t with Welch-Satterthwaite degrees of
freedom: normal quantiles there cover 0.87-0.89 instead of 0.95 when seed noise dominates.

Which config is best is a selection among ~20 noisy means, so "tied with the best" is a confidence set for the
best (multiple comparisons with the best, after Hsu): the configs no other config beats by more than a margin
that holds for all pairs at once, family-wise at 1 - ALPHA, so that configs of equal accuracy all stay in. The
margin comes from the maximum, over all pairs, of the standardized pairwise deviation in a bootstrap that
resamples the test images and the seeds (common random numbers: one generator per evaluation set, the same draws
for every config, so the configs' correlation is kept); that maximum sets the per-pair level, and each pair
applies it with its own t quantile and standard error. A maximum over ~200 pairs seeks out the pairs whose 5 seeds
happen to agree, so a pair's own seed variance (4 degrees of freedom) would let seed noise exclude equal configs in
~0.3 of runs; configs on the same seeds share one scale for it, so the set pools it over the model's configs
(the config-by-seed interaction, (configs - 1)(seeds - 1) degrees of freedom) and takes, per pair, the larger of
its own and the pooled estimate: a config noisier than the rest keeps its own spread. Flags raised on many tests
at once (per-class losses, one-field scheme comparisons) are corrected with Holm's method.

A config without calibration (FP32, dynamic) has one prediction vector, used for every seed.
"""

from __future__ import annotations

import functools
import gc

import numpy as np
from scipy.stats import binomtest, norm, t

RESAMPLES = 2000
RNG_SEED = 20261201
ALPHA = 0.05  # every interval, set and flag here is at 1 - ALPHA
CORRECTION = "holm"  # statsmodels' multipletests method for families of flags
CORRECTION_NAME = "Holm"
FULL_CIFAR10_TEST = 10_000


def level_text(alpha: float = ALPHA) -> str:
    """'95%': the confidence level every interval and set is stated at."""
    return f"{100 * (1 - alpha):g}%"


class Resampler:
    """Bootstrap weights for one evaluation set: image counts [resamples, n], and seed counts per number of seeds."""

    def __init__(self, n_images: int, resamples: int = RESAMPLES, seed: int = RNG_SEED):
        rng = np.random.default_rng([seed, n_images])
        self.n_images, self.resamples, self.seed = n_images, resamples, seed
        self.images = np.stack([np.bincount(rng.integers(0, n_images, n_images), minlength=n_images)
                                for _ in range(resamples)]).astype(np.float32)
        self._seeds: dict[int, np.ndarray] = {}

    def seeds(self, k: int) -> np.ndarray:
        """[resamples, k] counts of each seed in each resample (its own generator: independent of call order)."""
        if k not in self._seeds:
            rng = np.random.default_rng([self.seed, self.n_images, k])
            self._seeds[k] = rng.multinomial(k, np.full(k, 1 / k), size=self.resamples).astype(np.float32)
        return self._seeds[k]


@functools.cache
def resampler(n_images: int) -> Resampler:
    return Resampler(n_images)


def correct(predictions: list[np.ndarray], labels: np.ndarray) -> np.ndarray:
    """[seeds, images] 1.0 where a seed's prediction is right."""
    return np.stack([np.asarray(p) == labels for p in predictions]).astype(np.float32)


def align(a: np.ndarray, seeds_a: list, b: np.ndarray, seeds_b: list) -> tuple[np.ndarray, np.ndarray]:
    """Two [seeds, images] matrices paired on their common calibration seeds (seed s with seed s: the same
    calibration images); a config without seeds pairs with every seed; no common seed: each averaged over its own."""
    if seeds_a and seeds_b:
        common = [s for s in seeds_a if s in seeds_b]
        if common:
            return a[[seeds_a.index(s) for s in common]], b[[seeds_b.index(s) for s in common]]
        return a.mean(axis=0, keepdims=True), b.mean(axis=0, keepdims=True)
    return a, b


def _df(image_var, seed_var, n: int, seed_df):
    """Welch-Satterthwaite degrees of freedom of image_var + seed_var, estimated from n - 1 and seed_df (scalars or
    arrays alike)."""
    image_var, seed_var, seed_df = (np.asarray(x, dtype=np.float64) for x in (image_var, seed_var, seed_df))
    parts = image_var ** 2 / (n - 1) + np.where(seed_df > 0, seed_var ** 2 / np.maximum(seed_df, 1), 0.0)
    out = np.where(parts > 0, (image_var + seed_var) ** 2 / np.where(parts > 0, parts, 1.0), float(n - 1))
    return float(out) if out.ndim == 0 else out


def _two_way_raw(diff: np.ndarray) -> tuple[float, float, float]:
    """Mean, image variance (of the mean) and the unclipped estimate of the seed-effect variance (of one seed,
    not of the mean; may be negative) of a [seeds, images] matrix of paired differences."""
    k, n = diff.shape
    mean = float(diff.mean())
    if n < 2:
        return mean, 0.0, 0.0
    by_seed, by_image = diff.mean(axis=1), diff.mean(axis=0)
    image_var = float(by_image.var(ddof=1)) / n
    seed_raw = 0.0
    if k > 1:
        interaction = diff - by_seed[:, None] - by_image[None, :] + mean
        residual = float((interaction ** 2).sum()) / ((k - 1) * (n - 1))
        seed_raw = float(by_seed.var(ddof=1)) - residual / n
    return mean, image_var, seed_raw


def _two_way(diff: np.ndarray) -> tuple[float, float, float, float]:
    """Mean, image variance, seed variance (of the mean) and Welch-Satterthwaite degrees of freedom of a
    [seeds, images] matrix of paired differences."""
    k, n = diff.shape
    mean, image_var, seed_raw = _two_way_raw(diff)
    if n < 2:
        return mean, 0.0, 0.0, 1.0
    seed_var = max(seed_raw, 0.0) / k
    return mean, image_var, seed_var, _df(image_var, seed_var, n, k - 1)


def _pairwise_two_way(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_two_way_raw` for every pair of a [configs, seeds, images] stack on the same seeds, at once: each part is
    a quadratic form of the configs' own (linear) parts, so pair (i, j) is G_ii + G_jj - 2 G_ij of a Gram matrix.
    Returns [configs, configs] mean differences, image variances and unclipped seed variances."""
    c, k, n = stack.shape
    x = stack.astype(np.float64)
    mean, by_seed, by_image = x.mean(axis=(1, 2)), x.mean(axis=2), x.mean(axis=1)

    def spread(rows: np.ndarray) -> np.ndarray:  # [c, c] sum of squares of row i - row j about its own mean
        rows = rows.reshape(c, -1)
        centered = rows - rows.mean(axis=1, keepdims=True)
        gram = centered @ centered.T
        return np.maximum(np.diag(gram)[:, None] + np.diag(gram)[None, :] - 2 * gram, 0.0)

    image_var = spread(by_image) / (n - 1) / n if n > 1 else np.zeros((c, c))
    seed_raw = np.zeros((c, c))
    if k > 1 and n > 1:
        interaction = x - by_seed[:, :, None] - by_image[:, None, :] + mean[:, None, None]  # its mean is 0
        residual = spread(interaction) / ((k - 1) * (n - 1))
        seed_raw = spread(by_seed) / (k - 1) - residual / n
    return mean[:, None] - mean[None, :], image_var, seed_raw


def seed_variance(diffs: list[np.ndarray]) -> tuple[float, int] | None:
    """The variance of one calibration draw's effect on a delta, pooled over several configs' [seeds, images]
    paired differences (those with two seeds or more): their unclipped two-way estimates weighted by their degrees
    of freedom (seeds - 1 each), clipped at 0, and the degrees of freedom summed; None where no config has two."""
    parts = [(_two_way_raw(d)[2], len(d) - 1) for d in diffs if d.ndim == 2 and len(d) > 1 and d.shape[1] > 1]
    df = sum(k for _, k in parts)
    return (max(sum(v * k for v, k in parts) / df, 0.0), df) if df else None


def paired_delta(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None, alpha: float = ALPHA,
                 pooled: tuple[float, int] | None = None) -> dict:
    """Accuracy of `a` minus accuracy of `b`, in pp, both [seeds, images] (or [1, images]) and already paired:
    the mean, its 1 - alpha interval (t with Welch-Satterthwaite df), the two-sided p-value, and the standard
    error with its parts: `image_se_pp` (which test images) and `seed_se_pp` (which calibration draws).
    `mask` restricts the images (one class). `pooled`: the variance of one draw's effect estimated from other
    rows (`seed_variance`) and its degrees of freedom, for a calibrated config: taken where this pair has one
    draw, or where it is larger than the pair's own estimate (a few draws that happen to agree), as the best set
    does. `seed_part` says where the seed part came from: "own", "pooled", or "none" (one draw, nothing pooled:
    the interval covers the test images only)."""
    diff = np.atleast_2d(a) - np.atleast_2d(b)  # [k, n]; a single vector broadcasts over the other's seeds
    if mask is not None:
        diff = diff[:, mask]
    k, n = diff.shape
    mean, image_var, seed_var, df = _two_way(diff)
    part = "own" if k > 1 else "none"
    if pooled is not None and pooled[1] > 0 and n > 1 and (k == 1 or pooled[0] / k > seed_var):
        seed_var, part = pooled[0] / k, "pooled"
        df = _df(image_var, seed_var, n, pooled[1])
    se = np.sqrt(image_var + seed_var)
    if se > 0:
        half, p = float(t.ppf(1 - alpha / 2, df)) * se, float(2 * t.sf(abs(mean) / se, df))
    else:  # every image differs alike: no noise to speak of
        half, p = 0.0, float(mean == 0)
    pp = lambda x: round(100 * float(x), 4)  # noqa: E731
    return {"mean_pp": pp(mean), "ci_pp": [pp(mean - half), pp(mean + half)], "level": 1 - alpha,
            "p": round(p, 6), "se_pp": pp(se), "image_se_pp": pp(np.sqrt(image_var)),
            "seed_se_pp": pp(np.sqrt(seed_var)), "df": round(float(df), 1), "seed_part": part}


def adjust(pvalues: list[float], alpha: float = ALPHA) -> list[tuple[bool, float]]:
    """(rejected, adjusted p) per test of one family, by `CORRECTION` (statsmodels' multipletests)."""
    if not pvalues:
        return []
    from statsmodels.stats.multitest import multipletests

    # statsmodels' Holm branch ends in gc.collect(), which walks every live object: 0.2-1 s a call in a process
    # holding the results and models, minutes over a report's few hundred families. Frozen objects are not walked.
    gc.freeze()
    try:
        reject, adjusted, _, _ = multipletests(pvalues, alpha=alpha, method=CORRECTION)
    finally:
        gc.unfreeze()
    return [(bool(r), round(float(p), 6)) for r, p in zip(reject, adjusted)]


def _resampled_accuracy(matrices: list[np.ndarray], seeds: list[list]) -> np.ndarray:
    """[configs, resamples] accuracy of each config in each bootstrap resample: the same image draws for all, and
    the same draw of each seed for every config that has that seed."""
    draws = resampler(matrices[0].shape[1])
    # [sum of k, resamples]; images on the left: BLAS takes it as it is stored, ~4x faster than the transpose
    per_seed = (draws.images @ np.vstack(matrices).astype(np.float32).T).T / draws.n_images
    ids = sorted({s for found in seeds for s in found or ()})
    weights = draws.seeds(len(ids)) if ids else None
    out, start = [], 0
    for m, found in zip(matrices, seeds):
        rows = per_seed[start:start + len(m)]
        start += len(m)
        if not found:
            out.append(rows.mean(axis=0))
            continue
        w = weights[:, [ids.index(s) for s in found]]  # [resamples, k]
        drawn = w.sum(axis=1)
        out.append(np.where(drawn > 0, (w * rows.T).sum(axis=1) / np.maximum(drawn, 1), rows.mean(axis=0)))
    return np.stack(out)


def _pairs(matrices: list[np.ndarray], seeds: list[list]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """[configs, configs] lead of i over j, its standard error and degrees of freedom, for every pair.

    Configs on the same seeds form a two-way (config x seed) layout: their pairwise seed variances estimate one
    common scale (twice the config-by-seed interaction variance, seed effects shared by all configs cancelling),
    so the mean of the group's pairwise estimates, exactly twice the interaction mean square, pools
    (configs - 1)(seeds - 1) degrees of freedom where one pair has seeds - 1. Each pair takes the larger of its own
    estimate and the pooled one, with the degrees of freedom of the one it took: a pair whose few seeds happen to
    agree is not read as surer than the group, and a config noisier than the rest keeps its own spread."""
    c = len(matrices)
    lead, se, df = np.zeros((c, c)), np.zeros((c, c)), np.ones((c, c))
    groups: dict[tuple, list[int]] = {}
    for i, (m, found) in enumerate(zip(matrices, seeds)):
        groups.setdefault((tuple(found or ()), len(m)), []).append(i)
    for (_, k), members in groups.items():
        if len(members) < 2:
            continue
        n = matrices[members[0]].shape[1]
        mean, image_var, seed_raw = _pairwise_two_way(np.stack([matrices[i] for i in members]))
        upper = np.triu_indices(len(members), 1)
        pooled = max(float(seed_raw[upper].mean()), 0.0) if k > 1 else 0.0
        own = np.maximum(seed_raw, 0.0)
        seed_var = np.maximum(own, pooled) / k
        seed_df = np.where(own >= pooled, k - 1, (len(members) - 1) * (k - 1))
        at = np.ix_(members, members)
        lead[at], se[at] = mean, np.sqrt(image_var + seed_var)
        df[at] = _df(image_var, seed_var, n, seed_df) if n > 1 else 1.0
    key = [(tuple(found or ()), len(m)) for m, found in zip(matrices, seeds)]
    for i in range(c):
        for j in range(i + 1, c):
            if key[i] == key[j]:
                continue
            mean, image_var, seed_var, dof = _two_way(np.subtract(*align(matrices[i], seeds[i], matrices[j], seeds[j])))
            lead[i, j], lead[j, i] = mean, -mean
            se[i, j] = se[j, i] = np.sqrt(image_var + seed_var)
            df[i, j] = df[j, i] = dof
    np.fill_diagonal(se, 0.0)
    return lead, se, df


def _max_deviation(boot: np.ndarray, point: np.ndarray) -> np.ndarray:
    """[resamples] maximum over all pairs of |bootstrap deviation of i - j| / its bootstrap standard deviation."""
    deviation = boot.astype(np.float64) - point[:, None]  # [configs, resamples]
    centered = deviation - deviation.mean(axis=1, keepdims=True)
    gram = centered @ centered.T / deviation.shape[1]
    spread = np.sqrt(np.maximum(np.diag(gram)[:, None] + np.diag(gram)[None, :] - 2 * gram, 0.0))
    worst = np.zeros(deviation.shape[1])
    for i in range(len(deviation) - 1):
        rest = spread[i, i + 1:] > 1e-12
        if rest.any():
            pair = np.abs(deviation[i] - deviation[i + 1:][rest]) / spread[i, i + 1:][rest, None]
            worst = np.maximum(worst, pair.max(axis=0))
    return worst


def best_set(matrices: list[np.ndarray], seeds: list[list], alpha: float = ALPHA) -> dict:
    """The configs not distinguishable from the best, family-wise at 1 - alpha: config j is out when some
    config i beats it by more than t(level, df_ij) standard errors, with `level` set by the bootstrap maximum
    over all pairs and the seed part of each standard error pooled over configs on the same seeds (`_pairs`).
    `matrices`: [seeds, images] correctness per config; `seeds`: their seed ids (empty: none).
    Returns `members` (bool per config), `beaten_by` (the config that excludes it, else None), `margin_pp` (how
    far the strongest rival's lead exceeds what noise allows; <= 0 inside)."""
    c = len(matrices)
    if c < 2:
        return {"members": [True] * c, "beaten_by": [None] * c, "margin_pp": [0.0] * c}
    point = np.array([m.mean() for m in matrices], dtype=np.float64)
    worst = _max_deviation(_resampled_accuracy(matrices, seeds), point)
    lead, se, df = _pairs(matrices, seeds)
    critical = float(np.quantile(worst, 1 - alpha))
    level = float(norm.sf(critical))  # the per-pair one-sided level that holds for every pair at once
    margin = lead - t.isf(level, df) * se  # [i, j]: how far i's lead over j exceeds its noise allowance
    np.fill_diagonal(margin, -np.inf)
    beaten = margin.argmax(axis=0)
    worst_margin = margin.max(axis=0)
    inside = worst_margin <= 0
    return {"members": inside.tolist(), "beaten_by": [None if ok else int(i) for ok, i in zip(inside, beaten)],
            "margin_pp": [round(100 * float(m), 4) for m in worst_margin]}


def mcnemar(reference_correct: np.ndarray, other_correct: np.ndarray) -> dict:
    """Exact McNemar test on one pair of prediction vectors: the discordant images and their binomial p-value."""
    ref, other = np.asarray(reference_correct, bool), np.asarray(other_correct, bool)
    lost, gained = int((ref & ~other).sum()), int((~ref & other).sum())
    p = binomtest(lost, lost + gained, 0.5).pvalue if lost + gained else 1.0
    return {"fp32_right_quantized_wrong": lost, "fp32_wrong_quantized_right": gained, "mcnemar_p": round(float(p), 6)}


def resolution(deltas: list[dict], n_images: int, k_seeds: int, full_set: int | None = FULL_CIFAR10_TEST) -> dict:
    """The smallest difference these numbers can tell apart (median interval half-width over configs), here and,
    for CIFAR-10, extrapolated to its full 10,000-image test set (`full_set`; the image part shrinks as 1/sqrt(n),
    the seed part stays). `full_set` None: other data, no test set to extrapolate to."""
    if not deltas:
        return {}
    here = [(d["ci_pp"][1] - d["ci_pp"][0]) / 2 for d in deltas]
    full = [h * np.sqrt(d["image_se_pp"] ** 2 * n_images / full_set + d["seed_se_pp"] ** 2) / d["se_pp"]
            if d["se_pp"] else 0.0 for h, d in zip(here, deltas)] if full_set else []
    seeds = f"{n_images:,} test images and {k_seeds} seed{'s' if k_seeds != 1 else ''}"
    text = (f"With {seeds}, differences smaller than about {np.median(here):.1f} pp cannot be told apart"
            + (f"; the full {full_set:,}-image CIFAR-10 test set resolves about {np.median(full):.1f} pp"
               if full_set else ""))
    if np.median(here) < 0.05:  # no spread measured (most configs changed no prediction): nothing to estimate from
        text = (f"With {seeds}, most configs changed no prediction against FP32, so no resolution can be estimated; "
                f"one test image here is {100 / n_images:.1f} pp")
    return {"n_images": n_images, "seeds": k_seeds, "resolution_pp": round(float(np.median(here)), 2),
            "full_test_set_resolution_pp": round(float(np.median(full)), 2) if full_set else None, "text": text}
