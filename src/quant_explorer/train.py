"""Train our own FP32 models from scratch: seeded, random-crop + flip augmentation, one-cycle AdamW."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .data import ImageSet, load_split
from .errors import UserError
from .evaluate import evaluate
from .files import atomic_path, cannot_write, write_target, write_text_atomic
from .models import MODELS, PACKAGED_WEIGHTS, get_spec
from .paths import trained_dir


@dataclass(frozen=True)
class TrainRecipe:
    epochs: int = 100
    batch_size: int = 128
    max_lr: float = 4e-3  # AdamW: insensitive to ResNet8's raw 0-255 input scale, unlike plain SGD
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    crop_padding: int = 4
    seed: int = 0


def concat(sets: list[ImageSet]) -> ImageSet:
    if len({s.classes for s in sets}) != 1:
        raise ValueError("training sets have different class lists")
    return ImageSet(torch.cat([s.images for s in sets]), torch.cat([s.labels for s in sets]), sets[0].classes,
                    "+".join(s.dataset for s in sets))


def augment(batch: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Random crop (zero padding) and horizontal flip of a uint8 batch, vectorised: no per-image Python."""
    n, _, h, w = batch.shape
    padded = F.pad(batch, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator)
    rows = (dy + torch.arange(h))[:, None, :, None]
    cols = (dx + torch.arange(w))[:, None, None, :]
    flip = torch.rand(n, generator=generator) < 0.5
    cols = torch.where(flip[:, None, None, None], cols.flip(-1), cols)
    return padded[torch.arange(n)[:, None, None, None], torch.arange(3)[None, :, None, None], rows, cols]


def check_trainable(model_name: str, out_dir: Path, force: bool = False) -> None:
    """Before hours of training: a model whose weights come from elsewhere, or an `out_dir` holding the weights
    shipped in the package (without `force`), or one that cannot be written, is refused in one line."""
    spec = get_spec(model_name)
    if not spec.trainable:
        trainable = ", ".join(name for name, other in MODELS.items() if other.trainable)
        raise UserError(f"{model_name} is not trainable here: its weights are imported, not trained ("
                        f"{spec.weights_hint}); train one of {trainable} instead")
    weights = Path(out_dir) / "fp32_baseline.pt"
    if not force and weights.exists() and weights.resolve().is_relative_to(PACKAGED_WEIGHTS):
        raise UserError(f"{weights} holds the weights shipped with quant-explorer: pass --force to replace them, or "
                        f"leave out --out to write under {trained_dir(model_name)}")
    write_target(weights)
    try:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out_dir).close()
    except OSError as e:
        raise cannot_write(Path(out_dir), e) from None


def train(model_name: str, train_dirs: list[Path], eval_dir: Path, out_dir: Path, recipe: TrainRecipe,
          log=print, force: bool = False) -> dict:
    """Train `model_name`, write `fp32_baseline.pt` and `model_card.json` to `out_dir`, return the card."""
    check_trainable(model_name, out_dir, force)
    spec = get_spec(model_name)
    torch.manual_seed(recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)
    data = concat([load_split(d, "train") for d in train_dirs])
    test = load_split(eval_dir, "test")
    model = spec.architecture(quantizable=False).to(memory_format=torch.channels_last)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=recipe.max_lr)
    steps_per_epoch = len(data) // recipe.batch_size
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, recipe.max_lr, epochs=recipe.epochs,
                                                   steps_per_epoch=steps_per_epoch, pct_start=0.25)
    started = time.time()
    for epoch in range(recipe.epochs):
        model.train()
        order = torch.randperm(len(data), generator=generator)
        total_loss = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * recipe.batch_size:(step + 1) * recipe.batch_size]
            x = spec.preprocessing(augment(data.images[idx], recipe.crop_padding, generator))
            loss = F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), data.labels[idx],
                                   label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += loss.item()
        log(f"epoch {epoch + 1}/{recipe.epochs} loss {total_loss / steps_per_epoch:.4f} "
            f"elapsed {time.time() - started:.0f}s")
    model = model.to(memory_format=torch.contiguous_format).eval()
    with torch.inference_mode():
        metrics, _ = evaluate(model, test, spec.preprocessing)
    with atomic_path(out_dir / "fp32_baseline.pt") as tmp:
        torch.save(model.state_dict(), tmp)
    card = {
        "model": model_name,
        "architecture": type(model).__name__,
        "preprocessing": spec.preprocessing.to_dict(),
        "accuracy": metrics["accuracy"],
        "correct": metrics["correct"],
        "evaluated_on": metrics["dataset"],
        "n_eval_images": metrics["n_images"],
        "per_class_accuracy": metrics["per_class_accuracy"],
        "recipe": asdict(recipe) | {"optimizer": "AdamW, one-cycle", "augmentation": "random crop + horizontal flip"},
        "trained_on": data.dataset,
        "n_train_images": len(data),
        "train_seconds": round(time.time() - started, 1),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    write_text_atomic(out_dir / "model_card.json", json.dumps(card, indent=2) + "\n")
    return card


def _main() -> None:  # pragma: no cover - convenience for background runs
    import sys
    name, epochs = sys.argv[1], int(sys.argv[2])
    shared = Path(sys.argv[3])
    card = train(name, [shared / "cifar10-jpeg", shared / "cifar10-subset"], shared / "cifar10-subset",
                 Path(sys.argv[4]), TrainRecipe(epochs=epochs))
    print(json.dumps({k: card[k] for k in ("accuracy", "correct", "train_seconds")}))


if __name__ == "__main__":
    _main()
