"""Backend-agnostic evaluation: any callable from a float32 batch to logits, scored on a whole ImageSet."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from .data import ImageSet
from .models import Preprocessing

Runner = Callable[[torch.Tensor], "torch.Tensor | np.ndarray"]  # float32 NCHW batch -> [N, classes] logits


def predict(runner: Runner, images: ImageSet, preprocessing: Preprocessing,
            batch_size: int = 256) -> tuple[np.ndarray, float]:
    """Top-1 predictions for every image, and the wall time the runner spent on them (seconds)."""
    preds = np.empty(len(images), dtype=np.int64)
    spent = 0.0
    for start in range(0, len(images), batch_size):
        x = preprocessing(images.images[start:start + batch_size])
        t0 = time.perf_counter()
        logits = runner(x)
        spent += time.perf_counter() - t0
        preds[start:start + len(x)] = np.asarray(logits).argmax(axis=1)
    return preds, spent


def confusion_matrix(preds: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    return np.bincount(labels * num_classes + preds, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def score(preds: np.ndarray, images: ImageSet) -> dict:
    labels = images.labels.numpy()
    cm = confusion_matrix(preds, labels, len(images.classes))
    per_class = cm.diagonal() / np.maximum(cm.sum(axis=1), 1)
    correct = int((preds == labels).sum())
    return {
        "accuracy": correct / len(labels),
        "correct": correct,
        **images.describe(),
        "per_class_accuracy": dict(zip(images.classes, per_class.round(6).tolist())),
        "confusion_matrix": cm.tolist(),
    }


def evaluate(runner: Runner, images: ImageSet, preprocessing: Preprocessing, batch_size: int = 256) -> dict:
    """Accuracy, per-class accuracy, confusion matrix and throughput of `runner` on every image."""
    preds, spent = predict(runner, images, preprocessing, batch_size)
    return {**score(preds, images), "eval_seconds": round(spent, 4),
            "images_per_second": round(len(images) / spent, 1) if spent else None}, preds
