"""CIFAR-10 data: find it, decode it once into a uint8 tensor, and draw calibration samples.

Two layouts are accepted, detected from the directory:
- the CIFAR-10 python batches (`cifar-10-batches-py/`), read through torchvision with its md5 checks;
- an image folder `ROOT/{train,test}/<class>/*.png|jpg`: exactly CIFAR-10's ten class folders (or the classes
  a caller declares), none empty, labels in CIFAR-10's order; anything else is refused in one line. Its images
  are read at their own size, all one size, with the channels the model takes (`MODES`: greyscale stays
  greyscale for a 1-channel model).
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import UserError, warn
from .identity import fingerprint
from .paths import cache_dir, env_path

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DATA_ENV = "QUANT_EXPLORER_DATA"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}
CIFAR_PYTHON_DIR = "cifar-10-batches-py"
MIN_CALIBRATION = 10
MODES = {1: ("L", "greyscale"), 3: ("RGB", "RGB"), 4: ("RGBA", "RGBA")}  # a model's channels: how images are read

LAYOUT_HELP = (
    "expected either the CIFAR-10 python batches (DIR/cifar-10-batches-py/data_batch_1..5, test_batch, "
    "batches.meta; `quant-explorer data fetch DIR` downloads them) or image folders "
    "DIR/train/<class>/*.png and DIR/test/<class>/*.png"
)


def resolve_data_dir(data_dir: Path | None) -> Path:
    """--data-dir, else $QUANT_EXPLORER_DATA, else the default cache directory (a leading `~` expanded)."""
    if data_dir is not None:
        return Path(os.path.expanduser(data_dir))
    if os.environ.get(DATA_ENV):
        return env_path(DATA_ENV, "")
    return cache_dir() / "cifar10"


@dataclass(frozen=True)
class ImageSet:
    """A split decoded once: `images` uint8 [N, C, H, W] (CIFAR-10: [N, 3, 32, 32]), `labels` int64 [N]."""

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
    has_batches = ((root / CIFAR_PYTHON_DIR).is_dir()
                   or (root.name == CIFAR_PYTHON_DIR and (root / "batches.meta").exists()))
    has_folders = any((root / split).is_dir() for split in ("train", "test"))
    if has_batches and has_folders:
        raise UserError(f"data directory {root} is ambiguous: it holds both CIFAR-10 batches and train/test image "
                        "folders; point --data-dir at one of them")
    if has_batches:
        return "cifar-python"
    if has_folders:
        return "image-folder"
    raise UserError(f"no CIFAR-10 data in {root}: {LAYOUT_HELP}")


def load_split(root: Path, split: str, classes: tuple[str, ...] | None = None, channels: int = 3,
               size: tuple[int, int] | None = None) -> ImageSet:
    """Load `split` ('train' or 'test') of the data set at `root`, decoded and cached; image folders with
    `channels` per image (1, 3 or 4: the model's), each of `size` (height, width: the model's) where given, else
    all of one size."""
    root = Path(root).resolve()
    layout = detect_layout(root)
    if layout == "cifar-python":
        return _load_cifar_python(root, split)
    return _load_image_folder(root, split, classes, channels, size)


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


def _class_files(split_dir: Path, classes: tuple[str, ...]) -> list[tuple[Path, int]]:
    """(image file, label) of every class folder; one warning counting what is not an image; one line refusing
    class folders that are one folder under two names."""
    seen: dict[Path, str] = {}
    for name in classes:
        real = (split_dir / name).resolve()
        if real in seen:
            raise UserError(f"class folders {seen[real]} and {name} under {split_dir} are the same folder ({real}): "
                            "each class needs its own images")
        seen[real] = name
    files, skipped = [], [p for p in split_dir.iterdir() if not p.is_dir()]
    for label, name in enumerate(classes):
        for path in sorted((split_dir / name).iterdir()):
            (files.append((path, label)) if path.suffix.lower() in IMAGE_SUFFIXES else skipped.append(path))
    if skipped:
        warn(f"{len(skipped)} files under {split_dir} are not images and were skipped (e.g. {skipped[0].name}); "
             f"images are {'/'.join(sorted(IMAGE_SUFFIXES))}")
    return files


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:  # a dangling symlink, a symlink loop, a folder named .png, no permission
        raise UserError(f"cannot read image {path} ({e.strerror}); remove it or replace it by an image") from None


def _load_image_folder(root: Path, split: str, classes: tuple[str, ...] | None, channels: int = 3,
                       size: tuple[int, int] | None = None) -> ImageSet:
    split_dir = root / split
    if not split_dir.is_dir():
        raise UserError(f"{split_dir} is missing: {LAYOUT_HELP}")
    classes = tuple(classes) if classes else CIFAR10_CLASSES
    folders = {p.name for p in split_dir.iterdir() if p.is_dir()}
    missing, unexpected = [c for c in classes if c not in folders], sorted(folders - set(classes))
    if missing or unexpected:
        raise UserError(f"{split_dir} has class folders that differ from the {len(classes)} classes expected "
                        f"({', '.join(classes)}): missing {missing}, unexpected {unexpected}; rename or remove them")
    files = _class_files(split_dir, classes)
    present = {label for _, label in files}
    empty = [name for label, name in enumerate(classes) if label not in present]
    if empty:
        raise UserError(f"class folders {empty} under {split_dir} hold no .png/.jpg images: every class needs images")
    # Cache key: every file's name (its bytes: a name need not be UTF-8), class and bytes (a fast hash), so no edit
    # can be answered by stale pixels; the entry's record (`provenance`) proves it is this key's, byte for byte.
    contents = [_read(path) for path, _ in files]
    key, owner = hashlib.sha256(repr(classes if channels == 3 else (classes, channels)).encode()), {}
    for (path, label), content in zip(files, contents):
        digest = hashlib.blake2b(content, digest_size=16).digest()
        first = owner.setdefault(digest, (path, label))
        if first[1] != label:
            raise UserError(f"{first[0]} and {path} are the same image under two classes ({classes[first[1]]}, "
                            f"{classes[label]}): keep it in the class it belongs to")
        key.update(os.fsencode(path.relative_to(split_dir)) + f"\0{label}\0".encode() + digest)
    labels = torch.tensor([label for _, label in files], dtype=torch.long)
    cache_file = cache_dir() / "decoded" / f"{key.hexdigest()[:24]}.pt"
    made_from = {"files": key.hexdigest(), "n_images": len(files)}
    cached = _cached_images(cache_file, made_from, labels)
    images = cached if cached is not None else _decode_images([p for p, _ in files], contents, channels, size)
    if cached is None:
        _save_cache((images, labels), cache_file, made_from)
    return ImageSet(images, labels, classes, f"image-folder:{split_dir}")


def _cached_images(path: Path, made_from: dict, labels: torch.Tensor) -> torch.Tensor | None:
    """The decoded images of a cache entry its record proves to be of these files, holding their labels; else None
    (a damaged entry or one of other files is said in one line, and decoded again)."""
    from .provenance import proven

    if not proven(path, made_from, "decoded-image cache", cache=True):
        return None
    try:
        images, cached_labels = torch.load(path)
    except Exception as e:  # its bytes are the recorded ones: torch cannot read what it wrote (another version)
        warn(f"decoded-image cache {path} cannot be read ({type(e).__name__}); decoding again")
        return None
    if tuple(images.shape[:1]) != (len(labels),) or images.dtype != torch.uint8 or not torch.equal(cached_labels,
                                                                                                 labels):
        warn(f"decoded-image cache {path} holds other images than its record says; decoding again")
        return None
    return images


def _as_viewed(im, path: Path, channels: int = 3) -> np.ndarray:
    """The pixels an image viewer shows, as 8-bit [H, W, channels] (`MODES`): EXIF orientation applied, 16-bit
    samples scaled (PIL's convert would clip them at 255), palettes and CMYK converted. Refused by name:
    transparency where the model takes no alpha channel (what shows through depends on the viewer) and
    floating-point samples (no agreed range)."""
    from PIL import Image, ImageOps

    im = ImageOps.exif_transpose(im)
    if im.mode == "F":
        raise UserError(f"image {path} has floating-point samples (mode F), which have no agreed range; save it as "
                        "8-bit RGB")
    if im.mode.startswith("I"):  # 16-bit greyscale (I;16*), or 32-bit integers holding 16-bit values (I)
        samples = np.asarray(im).astype(np.int64)
        if samples.min() < 0 or samples.max() > 65535:
            raise UserError(f"image {path} has samples outside 16 bits (mode {im.mode}); save it as 8-bit RGB")
        im = Image.fromarray(((samples * 255 + 32767) // 65535).astype(np.uint8))
    if im.has_transparency_data and channels != 4:
        rgba = im.convert("RGBA")
        if np.asarray(rgba)[..., 3].min() < 255:
            raise UserError(f"image {path} has transparent pixels, whose colour depends on the viewer's background; "
                            "flatten it onto a background and save it as RGB")
        im = rgba
    return np.asarray(im.convert(MODES[channels][0])).reshape(im.height, im.width, channels)


def _decode_images(paths: list[Path], contents: list[bytes], channels: int = 3,
                   size: tuple[int, int] | None = None) -> torch.Tensor:
    """Decode the bytes the cache key was made of as a viewer shows them (`_as_viewed`), all of `size` (height,
    width) or else of one size; one warning (on stderr) says how many were not already in the model's mode (8-bit
    RGB for 3 channels). An image of another size stops the decoding at once, before any warning."""
    import io

    from PIL import Image
    from rich.console import Console
    from rich.progress import track

    stderr = Console(stderr=True)  # stdout may be --json: progress and warnings never go there
    mode, named = MODES[channels]
    out, converted = (np.empty((len(paths), *size, channels), dtype=np.uint8) if size else None), 0
    for i, (path, content) in enumerate(track(list(zip(paths, contents)), description=f"decoding {len(paths)} images",
                                              transient=True, disable=len(paths) < 2000, console=stderr)):
        try:
            with Image.open(io.BytesIO(content)) as im:
                converted += im.mode != mode
                arr = _as_viewed(im, path, channels)
        except UserError:
            raise
        except Exception as e:
            raise UserError(f"cannot decode image {path}: {e}; remove or replace the file") from None
        if out is None:
            out = np.empty((len(paths), *arr.shape), dtype=np.uint8)
        if arr.shape != out.shape[1:]:
            other = f"the model takes {out.shape[2]}x{out.shape[1]} images" if size else \
                f"{paths[0]} is {out.shape[2]}x{out.shape[1]}"
            raise UserError(f"image {path} is {arr.shape[1]}x{arr.shape[0]} but {other}: every image must have the "
                            "size the model takes; resize them")
        out[i] = arr
    if converted:
        kinds = ("greyscale, palette, 16-bit, CMYK or opaque RGBA" if channels == 3 else
                 "colour, palette, 16-bit or CMYK" if channels == 1 else "RGB, greyscale, palette, 16-bit or CMYK")
        warn(f"{converted} of {len(paths)} images under {paths[0].parent.parent} were not 8-bit {named} ({kinds}) "
             f"and were converted to {named} as a viewer shows them")
    return torch.from_numpy(out.transpose(0, 3, 1, 2).copy())


def _save_cache(obj, path: Path, made_from: dict) -> None:
    """Keep the decoded tensors for next time, with their record; a cache that cannot be written costs only a
    re-decode (one warning)."""
    from .files import atomic_path
    from .provenance import write_record

    try:
        with atomic_path(path) as tmp:
            try:
                torch.save(obj, tmp)
            except RuntimeError as e:  # torch reports a full disk as "PytorchStreamWriter failed writing file"
                raise OSError(28, f"torch.save failed: {str(e).splitlines()[0]}") from None
        write_record(path, made_from)
    except UserError as e:
        warn(f"decoded images not cached: {e}")


@dataclass(frozen=True)
class EvalData:
    """Loaded once per command: the evaluation set and the calibration pool (the training split)."""

    test: ImageSet
    train: ImageSet

    @classmethod
    def load(cls, data_dir: Path, classes: tuple[str, ...] | None = None,
             shape: tuple[int, int, int] = (3, 32, 32)) -> "EvalData":
        """Both splits (image folders read as `classes` where given, as images of `shape`: the models' channels,
        height and width); test images found in the training split are counted in one warning."""
        read = {"classes": classes, "channels": shape[0], "size": tuple(shape[1:])}
        data = cls(load_split(data_dir, "test", **read), load_split(data_dir, "train", **read))
        leaked = shared_images(data.test, data.train)
        if leaked:
            warn(f"{leaked:,} of the {len(data.test):,} test images are also in the training split of {data_dir} "
                 "(pixel for pixel): calibration samples may contain test images")
        return data


def shared_images(a: ImageSet, b: ImageSet) -> int:
    """How many images of `a` appear, pixel for pixel, in `b`."""
    def digests(s: ImageSet) -> list[bytes]:
        return [hashlib.blake2b(row, digest_size=16).digest() for row in s.images.reshape(len(s), -1).numpy()]

    inside = set(digests(b))
    return sum(d in inside for d in digests(a))


def calibration_indices(labels: torch.Tensor, n: int, seed: int, classes: tuple[str, ...] | None = None) -> np.ndarray:
    """A stratified, seeded sample of `n` indices: n // classes per class, the remainder to random classes.
    `classes` names the labels in messages."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise UserError(f"--calibration-n must be a whole number, got {n!r}")
    if n < MIN_CALIBRATION:
        raise UserError(f"--calibration-n {n} is too small: use at least {MIN_CALIBRATION} images")
    if n > len(labels):
        raise UserError(f"--calibration-n {n} is larger than the training split ({len(labels)} images): use at most "
                        f"{len(labels)}")
    rng = np.random.default_rng(seed)
    labels = labels.numpy()
    classes_present = np.unique(labels)
    per_class = np.full(len(classes_present), n // len(classes_present))
    per_class[rng.choice(len(classes_present), n % len(classes_present), replace=False)] += 1
    chosen = []
    for c, k in zip(classes_present, per_class):
        members = np.flatnonzero(labels == c)
        if k > len(members):
            name = classes[c] if classes else f"class {c}"
            smallest = min(int((labels == other).sum()) for other in classes_present)
            raise UserError(f"--calibration-n {n} with seed {seed} needs {k} images of {name}, the training split has "
                            f"{len(members)}: use --calibration-n {smallest * len(classes_present)} or less, or add "
                            f"{name} images")
        chosen.append(rng.choice(members, k, replace=False))
    return np.sort(np.concatenate(chosen))


def calibration_set(train: ImageSet, n: int, seed: int) -> ImageSet:
    """Unaugmented calibration images drawn from the training split, never from the test split."""
    return train.subset(calibration_indices(train.labels, n, seed, train.classes))


def fetch_cifar10(root: Path) -> None:
    """Download the real CIFAR-10 python batches into `root` with torchvision (needs internet)."""
    from torchvision.datasets import CIFAR10

    try:
        CIFAR10(str(root), train=True, download=True)
        CIFAR10(str(root), train=False, download=True)
    except Exception as e:
        raise UserError(f"could not download CIFAR-10 into {root} ({e}); download cifar-10-python.tar.gz by hand "
                        f"and unpack it there") from None


def test_labels(root: Path, classes: tuple[str, ...] | None = None) -> np.ndarray:
    """The test split's labels without decoding an image, for views on a machine that has no label cache: each
    file's class folder in the order `load_split` reads them, or the labels of the CIFAR-10 test_batch."""
    import pickle

    root = Path(root).resolve()
    if detect_layout(root) == "image-folder":
        if not (root / "test").is_dir():
            raise UserError(f"{root / 'test'} is missing: {LAYOUT_HELP}")
        return np.array([label for _, label in _class_files(root / "test", tuple(classes or CIFAR10_CLASSES))],
                        dtype=np.int64)
    batch = (root if root.name == CIFAR_PYTHON_DIR else root / CIFAR_PYTHON_DIR) / "test_batch"
    try:
        with open(batch, "rb") as f:
            return np.array(pickle.load(f, encoding="latin1")["labels"], dtype=np.int64)
    except Exception as e:
        raise UserError(f"cannot read the labels in {batch}: {e}; re-download the batches with "
                        f"`quant-explorer data fetch {root}`") from None
