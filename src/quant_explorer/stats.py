"""How sure a difference in accuracy is: a paired bootstrap over test images and calibration seeds, McNemar per seed.

Two sources of noise move a quantized model's accuracy: which test images score it (1,017 here), and which
calibration sample set its scales (one draw moves a recipe by up to ~2 points). The interval of a delta
resamples both at once, as a two-way bootstrap: each resample draws the test images with replacement — the
same images for both sides, which is what makes the delta paired — and, independently, the seeds with
replacement, and averages the per-image differences over them. The 2.5th and 97.5th percentiles of 2,000
such resamples are the 95% interval (percentile method). An analytic interval would need the covariance
between seeds and images; the bootstrap gets it from the data. Resampling weights come from one seeded
generator, so the same predictions always give the same interval, and every comparison of a model draws the
same image resamples (common random numbers: two configs' intervals against one reference are coherent).

Seeds pair up too: seed s of two static configs calibrates on the same images. A config without calibration
(FP32, dynamic) has one prediction vector, used for every seed.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.stats import binomtest

RESAMPLES = 2000
RNG_SEED = 20261201
ALPHA = 0.05  # every test and interval here is at 95%
FULL_CIFAR10_TEST = 10_000


class Resampler:
    """Bootstrap weights for one evaluation set: image counts [resamples, n], and seed counts per number of seeds."""

    def __init__(self, n_images: int, resamples: int = RESAMPLES, seed: int = RNG_SEED):
        rng = np.random.default_rng([seed, n_images])
        self.n_images, self.resamples, self.seed = n_images, resamples, seed
        self.images = np.stack([np.bincount(rng.integers(0, n_images, n_images), minlength=n_images)
                                for _ in range(resamples)]).astype(np.float32)

    @functools.cache
    def seeds(self, k: int) -> np.ndarray:
        """[resamples, k] counts of each seed in each resample (its own generator: independent of call order)."""
        rng = np.random.default_rng([self.seed, self.n_images, k])
        return rng.multinomial(k, np.full(k, 1 / k), size=self.resamples).astype(np.float32)


@functools.cache
def resampler(n_images: int) -> Resampler:
    return Resampler(n_images)


def correct(predictions: list[np.ndarray], labels: np.ndarray) -> np.ndarray:
    """[seeds, images] 1.0 where a seed's prediction is right."""
    return np.stack([np.asarray(p) == labels for p in predictions]).astype(np.float32)


def paired_delta(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> dict:
    """Accuracy of `a` minus accuracy of `b`, in pp, with its 95% interval; both [seeds, images] (or [1, images]).

    `mask` restricts the images (one class): the resampled delta is then a ratio over the drawn images of it.
    Also the spread from each source alone: `image_sd_pp` (seeds held fixed) and `seed_sd_pp` (images held).
    """
    diff = np.atleast_2d(a) - np.atleast_2d(b)  # [k, n]; a single vector broadcasts over the other's seeds
    draws = resampler(diff.shape[1])
    weights, k = draws.images, diff.shape[0]
    if mask is not None:
        diff, weights = diff[:, mask], weights[:, mask]
    drawn = weights.sum(axis=1)  # images drawn per resample (n without a mask)
    per_seed = (diff @ weights.T) / np.maximum(drawn, 1)  # [k, resamples]: each seed on each image resample
    seeds = draws.seeds(k)
    both = (seeds * per_seed.T).sum(axis=1) / k
    low, high = np.percentile(both, [2.5, 97.5])
    return {"mean_pp": round(100 * float(diff.mean()), 4), "ci95_pp": [round(100 * float(low), 4), round(100 * float(high), 4)],
            "image_sd_pp": round(100 * float(per_seed.mean(axis=0).std()), 4),
            "seed_sd_pp": round(100 * float(diff.mean(axis=1).std(ddof=1) / np.sqrt(k)), 4) if k > 1 else 0.0}


def excludes_zero(interval: list[float]) -> bool:
    return interval[0] > 0 or interval[1] < 0


def mcnemar(reference_correct: np.ndarray, other_correct: np.ndarray) -> dict:
    """Exact McNemar test on one pair of prediction vectors: the discordant images and their binomial p-value."""
    ref, other = np.asarray(reference_correct, bool), np.asarray(other_correct, bool)
    lost, gained = int((ref & ~other).sum()), int((~ref & other).sum())
    p = binomtest(lost, lost + gained, 0.5).pvalue if lost + gained else 1.0
    return {"fp32_right_quantized_wrong": lost, "fp32_wrong_quantized_right": gained, "mcnemar_p": round(float(p), 6)}


def resolution(deltas: list[dict], n_images: int, k_seeds: int) -> dict:
    """The smallest difference these numbers can tell apart (median 95% half-width over configs), here and
    extrapolated to the full 10,000-image test set (the image part shrinks as 1/sqrt(n), the seed part stays)."""
    if not deltas:
        return {}
    here = [(d["ci95_pp"][1] - d["ci95_pp"][0]) / 2 for d in deltas]
    full = [1.96 * np.sqrt(d["image_sd_pp"] ** 2 * n_images / FULL_CIFAR10_TEST + d["seed_sd_pp"] ** 2) for d in deltas]
    return {"n_images": n_images, "seeds": k_seeds, "resolution_pp": round(float(np.median(here)), 2),
            "full_test_set_resolution_pp": round(float(np.median(full)), 2),
            "text": f"With {n_images:,} test images and {k_seeds} seed{'s' if k_seeds != 1 else ''}, differences smaller "
                    f"than about {np.median(here):.1f} pp cannot be told apart; the full {FULL_CIFAR10_TEST:,}-image "
                    f"CIFAR-10 test set resolves about {np.median(full):.1f} pp"}
