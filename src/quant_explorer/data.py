"""CIFAR-10 data: find it, decode it once into a uint8 tensor, and draw calibration samples.

Two layouts are accepted, detected from the directory:
- the CIFAR-10 python batches (`cifar-10-batches-py/`), read through torchvision with its md5 checks;
- an image folder `ROOT/{train,test}/<class>/*.png|jpg`: exactly CIFAR-10's ten class folders (or the classes
  a caller declares), none empty, labels in CIFAR-10's order; anything else is refused in one line.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import UserError
from .identity import fingerprint

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DATA_ENV = "QUANT_EXPLORER_DATA"
CACHE_ENV = "QUANT_EXPLORER_CACHE"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
CIFAR_PYTHON_DIR = "cifar-10-batches-py"
MIN_CALIBRATION = 10

LAYOUT_HELP = (
    "expected either the CIFAR-10 python batches (DIR/cifar-10-batches-py/data_batch_1..5, test_batch, "
    "batches.meta; `quant-explorer data fetch DIR` downloads them) or image folders "
    "DIR/train/<class>/*.png and DIR/test/<class>/*.png"
)


def cache_dir() -> Path:
    """Where decoded tensors and downloads live: $QUANT_EXPLORER_CACHE or ~/.cache/quant-explorer."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "quant-explorer"
    return Path(os.environ.get(CACHE_ENV, default))


def resolve_data_dir(data_dir: Path | None) -> Path:
    """--data-dir, else $QUANT_EXPLORER_DATA, else the default cache directory."""
    if data_dir is not None:
        return Path(data_dir)
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    return cache_dir() / "cifar10"


@dataclass(frozen=True)
class ImageSet:
    """A split decoded once: `images` uint8 [N, 3, 32, 32], `labels` int64 [N]."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    dataset: str  # which data, e.g. "image-folder:/data/cifar10-subset/test"

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices) -> "ImageSet":
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return ImageSet(self.images[idx], self.labels[idx], self.classes, self.dataset)

    @functools.cached_property
    def fingerprint(self) -> str:
        """Which images these are, by content: the key that keeps results on other data apart."""
        return fingerprint(self.images, self.labels)

    def describe(self) -> dict:
        return {"dataset": self.dataset, "n_images": len(self), "fingerprint": self.fingerprint}

    def record(self) -> dict:
        """What the results file keeps of an evaluation set; its labels go to `results.save_labels`."""
        return {"name": self.dataset, "n_images": len(self), "classes": list(self.classes)}


def detect_layout(root: Path) -> str:
    """'cifar-python' or 'image-folder'; a one-line error when neither or both are present."""
    if root.is_file():
        raise UserError(f"data directory {root} is a file, expected a directory: {LAYOUT_HELP}")
    if not root.is_dir():
        raise UserError(f"data directory {root} does not exist: {LAYOUT_HELP}; pass --data-dir or set ${DATA_ENV}")
    has_batches = (root / CIFAR_PYTHON_DIR).is_dir() or (root.name == CIFAR_PYTHON_DIR and (root / "batches.meta").exists())
    has_folders = any((root / split).is_dir() for split in ("train", "test"))
    if has_batches and has_folders:
        raise UserError(f"data directory {root} is ambiguous: it holds both CIFAR-10 batches and train/test image "
                        "folders; point --data-dir at one of them")
    if has_batches:
        return "cifar-python"
    if has_folders:
        return "image-folder"
    raise UserError(f"no CIFAR-10 data in {root}: {LAYOUT_HELP}")


def load_split(root: Path, split: str, classes: tuple[str, ...] | None = None) -> ImageSet:
    """Load `split` ('train' or 'test') of the data set at `root`, decoded and cached."""
    root = Path(root).resolve()
    layout = detect_layout(root)
    if layout == "cifar-python":
        return _load_cifar_python(root, split)
    return _load_image_folder(root, split, classes)


def _load_cifar_python(root: Path, split: str) -> ImageSet:
    from torchvision.datasets import CIFAR10

    parent = root.parent if root.name == CIFAR_PYTHON_DIR else root
    try:
        ds = CIFAR10(str(parent), train=(split == "train"), download=False)
    except RuntimeError:  # torchvision: "Dataset not found or corrupted."
        raise UserError(f"{_cifar_damage(parent / CIFAR_PYTHON_DIR)}; re-download the batches with "
                        f"`quant-explorer data fetch {parent}`") from None
    except Exception as e:  # truncated pickle and the like
        raise UserError(f"cannot read CIFAR-10 batches in {parent / CIFAR_PYTHON_DIR}: {e}; re-download them with "
                        f"`quant-explorer data fetch {parent}`") from None
    images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
    labels = torch.tensor(ds.targets, dtype=torch.long)
    return ImageSet(images, labels, tuple(ds.classes), f"cifar10-python:{parent}:{split}")


def _cifar_damage(folder: Path) -> str:
    """Which batch file torchvision's md5 check refused, and how."""
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import check_integrity

    for name, md5 in [*CIFAR10.train_list, *CIFAR10.test_list, (CIFAR10.meta["filename"], CIFAR10.meta["md5"])]:
        path = folder / name
        if not path.is_file():
            return f"CIFAR-10 file {path} is missing"
        if not check_integrity(str(path), md5):
            return (f"CIFAR-10 file {path} is corrupted or truncated ({path.stat().st_size:,} bytes, md5 check "
                    f"failed)")
    return f"CIFAR-10 batches in {folder} are missing or corrupted (md5 check failed)"


def _load_image_folder(root: Path, split: str, classes: tuple[str, ...] | None) -> ImageSet:
    split_dir = root / split
    if not split_dir.is_dir():
        raise UserError(f"{split_dir} is missing: {LAYOUT_HELP}")
    classes = tuple(classes) if classes else CIFAR10_CLASSES
    folders = {p.name for p in split_dir.iterdir() if p.is_dir()}
    missing, unexpected = [c for c in classes if c not in folders], sorted(folders - set(classes))
    if missing or unexpected:
        raise UserError(f"{split_dir} has class folders that differ from the {len(classes)} classes expected "
                        f"({', '.join(classes)}): missing {missing}, unexpected {unexpected}; rename or remove them")
    files = [(path, label) for label, name in enumerate(classes)
             for path in sorted((split_dir / name).iterdir()) if path.suffix.lower() in IMAGE_SUFFIXES]
    present = {label for _, label in files}
    empty = [name for label, name in enumerate(classes) if label not in present]
    if empty:
        raise UserError(f"class folders {empty} under {split_dir} hold no .png/.jpg images: every class needs images")
    # Cache key: every file's name, size and mtime, so edited data is re-decoded.
    key = hashlib.sha256(repr(classes).encode())
    for path, _ in files:
        st = path.stat()
        key.update(f"{path.relative_to(split_dir)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    cache_file = cache_dir() / "decoded" / f"{key.hexdigest()[:24]}.pt"
    if cache_file.exists():
        try:
            images, labels = torch.load(cache_file)
            return ImageSet(images, labels, classes, f"image-folder:{split_dir}")
        except Exception:
            pass  # a broken cache entry is rebuilt below
    images = _decode_images([p for p, _ in files])
    labels = torch.tensor([label for _, label in files], dtype=torch.long)
    _save_cache((images, labels), cache_file)
    return ImageSet(images, labels, classes, f"image-folder:{split_dir}")


def _decode_images(paths: list[Path]) -> torch.Tensor:
    """Decode to RGB; greyscale, palette or RGBA files are converted, with one warning (on stderr) saying how many."""
    from PIL import Image
    from rich.console import Console
    from rich.progress import track

    stderr = Console(stderr=True)  # stdout may be --json: progress and warnings never go there
    out = np.empty((len(paths), 32, 32, 3), dtype=np.uint8)
    converted = 0
    for i, path in enumerate(track(paths, description=f"decoding {len(paths)} images", transient=True,
                                   disable=len(paths) < 2000, console=stderr)):
        try:
            with Image.open(path) as im:
                converted += im.mode != "RGB"
                arr = np.asarray(im.convert("RGB"))
        except Exception as e:
            raise UserError(f"cannot decode image {path}: {e}; remove or replace the file") from None
        if arr.shape != (32, 32, 3):
            raise UserError(f"image {path} is {arr.shape[1]}x{arr.shape[0]}, expected 32x32 CIFAR-10 images")
        out[i] = arr
    if converted:
        stderr.print(f"[yellow]warning:[/yellow] {converted} of {len(paths)} images under {paths[0].parent.parent} "
                     "were not RGB (greyscale, palette or RGBA) and were converted to RGB", highlight=False, soft_wrap=True)
    return torch.from_numpy(out.transpose(0, 3, 1, 2).copy())


def _save_cache(obj, path: Path) -> None:
    """Keep the decoded tensors for next time; a cache that cannot be written costs only a re-decode (one warning)."""
    from rich.console import Console

    from .files import atomic_path

    try:
        with atomic_path(path) as tmp:
            try:
                torch.save(obj, tmp)
            except RuntimeError as e:  # torch reports a full disk as "PytorchStreamWriter failed writing file"
                raise OSError(28, f"torch.save failed: {str(e).splitlines()[0]}") from None
    except UserError as e:
        Console(stderr=True).print(f"[yellow]warning:[/yellow] decoded images not cached: {e}", highlight=False,
                                   soft_wrap=True)


@dataclass(frozen=True)
class EvalData:
    """Loaded once per command: the evaluation set and the calibration pool (the training split)."""

    test: ImageSet
    train: ImageSet

    @classmethod
    def load(cls, data_dir: Path) -> "EvalData":
        return cls(load_split(data_dir, "test"), load_split(data_dir, "train"))


def calibration_indices(labels: torch.Tensor, n: int, seed: int) -> np.ndarray:
    """A stratified, seeded sample of `n` indices: n // classes per class, the remainder to random classes."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise UserError(f"--calibration-n must be a whole number, got {n!r}")
    if n < MIN_CALIBRATION:
        raise UserError(f"--calibration-n {n} is too small: use at least {MIN_CALIBRATION} images")
    if n > len(labels):
        raise UserError(f"--calibration-n {n} is larger than the training split ({len(labels)} images): use at most "
                        f"{len(labels)}")
    rng = np.random.default_rng(seed)
    labels = labels.numpy()
    classes = np.unique(labels)
    per_class = np.full(len(classes), n // len(classes))
    per_class[rng.choice(len(classes), n % len(classes), replace=False)] += 1
    chosen = []
    for c, k in zip(classes, per_class):
        members = np.flatnonzero(labels == c)
        if k > len(members):
            raise UserError(f"--calibration-n {n} needs {k} images of class {c}, the training split has {len(members)}")
        chosen.append(rng.choice(members, k, replace=False))
    return np.sort(np.concatenate(chosen))


def calibration_set(train: ImageSet, n: int, seed: int) -> ImageSet:
    """Unaugmented calibration images drawn from the training split, never from the test split."""
    return train.subset(calibration_indices(train.labels, n, seed))


def fetch_cifar10(root: Path) -> None:
    """Download the real CIFAR-10 python batches into `root` with torchvision (needs internet)."""
    from torchvision.datasets import CIFAR10

    try:
        CIFAR10(str(root), train=True, download=True)
        CIFAR10(str(root), train=False, download=True)
    except Exception as e:
        raise UserError(f"could not download CIFAR-10 into {root} ({e}); download cifar-10-python.tar.gz by hand "
                        f"and unpack it there") from None
