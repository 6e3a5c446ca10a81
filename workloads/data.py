"""Image datasets for the SSL workloads: IDX (Fashion-MNIST, MNIST), CIFAR pickles, image folders.

Every loader returns an :class:`ImageDataset` held in memory as a uint8 tensor; augmentation and
normalisation happen later on whole batches (``workloads.augment``). Specs name a dataset and,
optionally, where it lives::

    fashion-mnist                 Debian package dataset-fashion-mnist (the default location)
    fashion-mnist:PATH            a directory with the four IDX files (gzip or plain)
    mnist:PATH                    same layout; MNIST has no default location
    cifar10:PATH                  the binary version (data_batch_1..5.bin, test_batch.bin) or
                                  the python version (data_batch_1..5, test_batch)
    cifar100:PATH                 the binary version (train.bin, test.bin) or the python
                                  version (train, test); fine labels
    folder:PATH                   class subdirectories of PNG/JPEG images (ImageNet-100 style)
    synthetic[:n=512,classes=10,size=32,channels=3,seed=0]   class-structured random images

CIFAR's binary release is preferred where both are present: fixed-size records (a label byte,
CIFAR-100 a coarse and a fine one, then 3072 pixel bytes) that are read, never executed, and
whose size is checked. The python version's pickles are read with a restricted unpickler
(:func:`restricted_load`) that refuses every global outside builtin containers and numpy array
reconstruction, so a malicious file cannot run code either.
"""

from __future__ import annotations

import gzip
import pickle
import shutil
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from accelsim.errors import InputError
from accelsim.schema import did_you_mean

__all__ = [
    "DATASETS",
    "ImageDataset",
    "UnsafePickleError",
    "channel_stats",
    "load_cifar",
    "load_dataset",
    "load_folder",
    "load_idx_dataset",
    "read_idx",
    "restricted_load",
    "synthetic_dataset",
]

DATASETS = ("fashion-mnist", "mnist", "cifar10", "cifar100", "folder", "synthetic")
SPLITS = ("train", "test")

# Per-channel mean / std of the training split, in [0, 1] units (published values; the
# Fashion-MNIST pair is recomputed from the Debian package's files).
KNOWN_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}

FASHION_MNIST_DIRS = (
    "/usr/share/datasets/fashion-mnist",
    "/usr/share/dataset-fashion-mnist",
    "/usr/share/fashion-mnist",
)
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"


@dataclass
class ImageDataset:
    """Images and labels held in memory.

    Attributes:
        images: uint8 tensor (N, C, H, W), values 0..255.
        labels: int64 tensor (N,), values in [0, num_classes).
        num_classes: number of classes.
        name: dataset name and split, e.g. ``"cifar10/train"``.
        mean, std: per-channel normalisation constants in [0, 1] units (length C).
    """

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"{self.name}: images must be a uint8 (N, C, H, W) tensor, got "
                f"{self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"{self.name}: labels must be int64 (N,) with N = {self.images.shape[0]}, got "
                f"{self.labels.dtype} {tuple(self.labels.shape)}"
            )
        channels = self.images.shape[1]
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(f"{self.name}: mean and std need {channels} values each")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"{self.name}: std must be positive, got {self.std}")
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) in pixels."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    def subset(self, indices: torch.Tensor | slice | list[int]) -> ImageDataset:
        """A dataset of the selected samples (same classes and normalisation constants)."""
        return replace(self, images=self.images[indices], labels=self.labels[indices])

    def batches(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        drop_last: bool = True,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (uint8 images (B, C, H, W), int64 labels (B,)) batches for one epoch.

        With a generator the order is a random permutation drawn from it (deterministic for a
        seeded generator); without one the samples come in stored order (for evaluation).
        """
        if batch_size < 1:
            raise InputError(f"batch size must be >= 1, got {batch_size}", field="batch_size")
        n = len(self)
        order = None if generator is None else torch.randperm(n, generator=generator)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            if order is None:
                sl = slice(start, min(start + batch_size, n))
                yield self.images[sl], self.labels[sl]
            else:
                idx = order[start : start + batch_size]
                yield self.images[idx], self.labels[idx]


def channel_stats(
    images: torch.Tensor, chunk: int = 4096
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images (N, C, H, W), in [0, 1] units.

    Accumulates in float64 over chunks of ``chunk`` images; std is floored at 1/255.
    """
    n, c, h, w = images.shape
    if n == 0:
        raise InputError("cannot compute channel statistics of an empty dataset")
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, n, chunk):
        x = images[start : start + chunk].to(torch.float64).div_(255.0)
        total += x.sum(dim=(0, 2, 3))
        total_sq += x.square().sum(dim=(0, 2, 3))
    count = n * h * w
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(0.0).sqrt().clamp_min(1.0 / 255.0)
    return tuple(mean.tolist()), tuple(std.tolist())


# --------------------------------------------------------------------------------------- spec


def load_dataset(spec: str, split: str = "train", *, image_size: int = 64) -> ImageDataset:
    """Load a dataset from a spec ``NAME`` or ``NAME:PATH`` (see the module docstring).

    Args:
        spec: dataset spec.
        split: ``"train"`` or ``"test"``.
        image_size: side in pixels that ``folder`` images are resized / centre-cropped to.

    Raises:
        InputError: unknown name, missing or corrupt files (one line that says how to fix it).
    """
    name, sep, arg = spec.partition(":")
    name = name.strip().lower()
    path = arg.strip() if sep else None
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; expected one of {list(SPLITS)}", path=spec)
    if name not in DATASETS:
        raise InputError(f"unknown dataset{_did_you_mean(name, DATASETS)}", path=spec)
    if sep and not path:
        raise InputError("empty PATH after ':'", path=spec)
    if name == "fashion-mnist":
        directory = Path(path) if path else _fashion_mnist_default()
        return load_idx_dataset(directory, split, name=name)
    if name == "mnist":
        if path is None:
            raise InputError(
                "no default location; give mnist:PATH, a directory with "
                "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
                "t10k-labels-idx1-ubyte (gzip or plain) from the MNIST site",
                path="mnist",
            )
        return load_idx_dataset(Path(path), split, name=name)
    if name in ("cifar10", "cifar100"):
        if path is None:
            files = ("data_batch_1..5.bin and test_batch.bin" if name == "cifar10"
                     else "train.bin and test.bin")
            raise InputError(
                f"no default location; download the CIFAR binary (or python) version, extract "
                f"it and give {name}:PATH, the directory with {files} (or the python files)",
                path=name,
            )
        return load_cifar(Path(path), split, name=name)
    if name == "folder":
        if path is None:
            raise InputError(
                "give folder:PATH, a directory of class subdirectories (or train/ and val/ "
                "directories of class subdirectories) holding PNG/JPEG images",
                path="folder",
            )
        return load_folder(Path(path), split, image_size=image_size)
    return synthetic_dataset(split=split, **_synthetic_params(path or "", spec))


def _did_you_mean(name: str, options: tuple[str, ...] | list[str]) -> str:
    return f" {name!r}{did_you_mean(name, options)}; expected one of {list(options)}"


# ----------------------------------------------------------------------------------------- IDX

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _fashion_mnist_default() -> Path:
    """The directory of the Debian package's IDX files; ``dpkg -L`` is asked only if needed."""
    for d in FASHION_MNIST_DIRS:
        if _find_idx(Path(d), IDX_FILES["train"][0]) is not None:
            return Path(d)
    dpkg = shutil.which("dpkg")
    if dpkg is not None:
        try:
            out = subprocess.run(
                [dpkg, "-L", FASHION_MNIST_PACKAGE], capture_output=True, text=True, timeout=10
            ).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        for line in out.splitlines():
            p = Path(line.strip())
            if p.name.startswith(IDX_FILES["train"][0]) and p.is_file():
                return p.parent
    raise InputError(
        f"no IDX files in {FASHION_MNIST_DIRS[0]}; install the Debian package: "
        f"apt-get install {FASHION_MNIST_PACKAGE}, or give fashion-mnist:PATH",
        path="fashion-mnist",
    )


def _find_idx(directory: Path, stem: str) -> Path | None:
    """``stem`` or its variants (``.gz``, ``train-images.idx3-ubyte``) inside ``directory``."""
    dotted = stem.replace("-idx", ".idx")
    for base in (stem, dotted):
        for suffix in ("", ".gz"):
            p = directory / f"{base}{suffix}"
            if p.is_file():
                return p
    return None


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzip or plain) into a uint8 array of its shape.

    Raises:
        InputError: not IDX, an element type other than ubyte, truncated or trailing bytes.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(f"cannot read: {exc}", path=str(path)) from exc
    if len(raw) < 4:
        raise InputError("truncated IDX file (no header)", path=str(path))
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or ndim == 0:
        raise InputError(
            f"bad IDX magic 0x{raw[:4].hex()}; expected 0x000008NN (NN = number of dimensions)",
            path=str(path),
        )
    if dtype_code != 0x08:
        raise InputError(
            f"IDX element type 0x{dtype_code:02x} not supported; expected 0x08 (unsigned byte)",
            path=str(path),
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise InputError("truncated IDX file (short header)", path=str(path))
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "trailing bytes in"
        raise InputError(
            f"{what} IDX file: {len(raw)} bytes, expected {expected} for shape {shape}",
            path=str(path),
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_idx_dataset(directory: Path, split: str, *, name: str = "mnist") -> ImageDataset:
    """Load a split of an MNIST-layout IDX directory (10 classes, 1 x 28 x 28 or any H x W)."""
    if not directory.is_dir():
        hint = (
            f"; install the Debian package: apt-get install {FASHION_MNIST_PACKAGE}, "
            "or give fashion-mnist:PATH"
            if name == "fashion-mnist"
            else f"; give {name}:PATH, a directory with the IDX files"
        )
        raise InputError(f"no such directory: {directory}{hint}", path=name)
    image_stem, label_stem = IDX_FILES[split]
    image_path = _find_idx(directory, image_stem)
    label_path = _find_idx(directory, label_stem)
    if image_path is None or label_path is None:
        missing = image_stem if image_path is None else label_stem
        raise InputError(
            f"no IDX files in {directory} ({missing}[.gz] missing); give {name}:PATH, a directory "
            f"with {image_stem} and {label_stem} (gzip or plain)",
            path=name,
        )
    images = read_idx(image_path)
    labels = read_idx(label_path)
    if images.ndim != 3:
        raise InputError(
            f"expected 3 dimensions (N, H, W), got {images.shape}", path=str(image_path)
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise InputError(
            f"expected {images.shape[0]} labels (one per image), got shape {labels.shape}",
            path=str(label_path),
        )
    if labels.size and labels.max() >= 10:
        raise InputError(f"label {int(labels.max())} out of range 0..9", path=str(label_path))
    mean, std = KNOWN_STATS[name]
    return ImageDataset(
        images=torch.from_numpy(images.copy()).unsqueeze(1),
        labels=torch.from_numpy(labels.astype(np.int64)),
        num_classes=10,
        name=f"{name}/{split}",
        mean=mean,
        std=std,
    )


# --------------------------------------------------------------------------------------- CIFAR

# The only globals a CIFAR pickle may name: builtin containers and scalars, and numpy's array
# reconstruction (numpy 1.x and 2.x module names; ``_frombuffer`` is what protocol 5 uses;
# ``_codecs.encode`` is how protocol 2 writes bytes from Python 3).
_SAFE_BUILTINS = frozenset(
    {
        "dict",
        "list",
        "tuple",
        "set",
        "frozenset",
        "str",
        "bytes",
        "bytearray",
        "int",
        "float",
        "bool",
        "complex",
    }
)


def _numpy_global(module: str, name: str) -> Any:
    if (module, name) in {("numpy", "ndarray"), ("numpy", "dtype")}:
        return getattr(np, name)
    if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        try:
            from numpy._core.multiarray import _reconstruct  # numpy >= 2
        except ImportError:  # pragma: no cover - numpy 1.x
            from numpy.core.multiarray import _reconstruct
        return _reconstruct
    if name == "_frombuffer" and module in ("numpy.core.numeric", "numpy._core.numeric"):
        try:
            from numpy._core.numeric import _frombuffer
        except ImportError:  # pragma: no cover - numpy 1.x
            from numpy.core.numeric import _frombuffer
        return _frombuffer
    return None


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names a global outside the allow-list of :func:`restricted_load`."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS:
            return getattr(__import__("builtins"), name)
        if module == "_codecs" and name == "encode":
            import _codecs

            return _codecs.encode
        obj = _numpy_global(module, name) if module.startswith("numpy") else None
        if obj is None:
            raise UnsafePickleError(
                f"refusing to load global {module}.{name}: only builtin containers and numpy "
                "arrays are allowed in a dataset pickle"
            )
        return obj


def restricted_load(stream: BinaryIO) -> Any:
    """Unpickle ``stream`` allowing only builtin containers/scalars and numpy arrays.

    Python 2 strings come back as bytes (``encoding="bytes"``), as CIFAR's files need.
    Raises :class:`UnsafePickleError` (an ``UnpicklingError``) for any other global.
    """
    return _RestrictedUnpickler(stream, encoding="bytes").load()


CIFAR_PIXELS = 3 * 32 * 32
_CIFAR_LAYOUTS = {  # name -> (binary subdirectory, python subdirectory)
    "cifar10": ("cifar-10-batches-bin", "cifar-10-batches-py"),
    "cifar100": ("cifar-100-binary", "cifar-100-python"),
}


def _cifar_dir(directory: Path, name: str) -> tuple[Path, bool]:
    """The directory holding the CIFAR files and whether they are the binary version."""
    if not directory.is_dir():
        raise InputError(
            f"no such directory: {directory}; download the CIFAR binary (or python) version, "
            f"extract it and give {name}:PATH",
            path=name,
        )
    marker = "data_batch_1" if name == "cifar10" else "train"
    binary_sub, python_sub = _CIFAR_LAYOUTS[name]
    for where, binary in ((directory, True), (directory / binary_sub, True),
                          (directory, False), (directory / python_sub, False)):
        if (where / (marker + (".bin" if binary else ""))).is_file():
            return where, binary
    raise InputError(
        f"no {marker}.bin or {marker} in {directory}; give {name}:PATH, the extracted binary "
        f"or python version directory",
        path=name,
    )


def _read_cifar_binary(path: Path, label_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """Records of ``label_bytes`` label bytes (the last is the label used) and 3072 pixels."""
    if not path.is_file():
        raise InputError("missing CIFAR batch file", path=str(path))
    raw = np.fromfile(path, dtype=np.uint8)
    record = label_bytes + CIFAR_PIXELS
    if raw.size == 0 or raw.size % record:
        raise InputError(f"{raw.size} bytes is not a whole number of {record}-byte CIFAR "
                         f"records (truncated or not the binary version)", path=str(path))
    rows = raw.reshape(-1, record)
    return (rows[:, label_bytes:].reshape(-1, 3, 32, 32),
            rows[:, label_bytes - 1].astype(np.int64))


def _read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise InputError("missing CIFAR batch file", path=str(path))
    try:
        with path.open("rb") as f:
            obj = restricted_load(f)
    except UnsafePickleError as exc:
        raise InputError(f"unsafe pickle refused: {exc}", path=str(path)) from exc
    except (
        pickle.UnpicklingError,
        EOFError,
        RecursionError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        struct.error,
        OSError,
    ) as exc:
        raise InputError(
            f"corrupt CIFAR pickle: {type(exc).__name__}: {exc}", path=str(path)
        ) from exc
    if not isinstance(obj, dict):
        raise InputError(f"expected a dict, got {type(obj).__name__}", path=str(path))
    entries = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    if "data" not in entries or label_key not in entries:
        raise InputError(
            f"expected keys 'data' and {label_key!r}, got {sorted(map(str, entries))}",
            path=str(path),
        )
    data = entries["data"]
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or (data.shape[1] != 3 * 32 * 32)
    ):
        shape = getattr(data, "shape", None)
        raise InputError(f"'data' must be a uint8 (N, 3072) array, got {shape}", path=str(path))
    try:
        labels = np.asarray(entries[label_key], dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{label_key!r} is not a list of integers", path=str(path)) from exc
    if labels.shape != (data.shape[0],):
        raise InputError(
            f"{label_key!r} has shape {labels.shape}, expected ({data.shape[0]},)", path=str(path)
        )
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar(directory: Path, split: str, *, name: str = "cifar10") -> ImageDataset:
    """Load CIFAR-10 / CIFAR-100 (fine labels) from ``directory``: the binary release where it
    is there, else the python version's pickles."""
    directory, binary = _cifar_dir(directory, name)
    if name == "cifar10":
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        label_key, num_classes, label_bytes = "labels", 10, 1
    else:
        files = [split]
        label_key, num_classes, label_bytes = "fine_labels", 100, 2
    if binary:
        parts = [_read_cifar_binary(directory / f"{f}.bin", label_bytes) for f in files]
    else:
        parts = [_read_cifar_batch(directory / f, label_key) for f in files]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise InputError(
            f"labels out of range 0..{num_classes - 1} (min {labels.min()}, max {labels.max()})",
            path=str(directory),
        )
    mean, std = KNOWN_STATS[name]
    return ImageDataset(
        images=torch.from_numpy(np.ascontiguousarray(images)),
        labels=torch.from_numpy(labels),
        num_classes=num_classes,
        name=f"{name}/{split}",
        mean=mean,
        std=std,
    )


# -------------------------------------------------------------------------------------- folder

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
_SPLIT_DIRS = {"train": ("train",), "test": ("val", "test")}


def _class_dirs(root: Path) -> list[Path]:
    return sorted(
        d
        for d in root.iterdir()
        if d.is_dir() and any(f.suffix.lower() in IMAGE_SUFFIXES for f in d.iterdir())
    )


def load_folder(root: Path, split: str, *, image_size: int = 64) -> ImageDataset:
    """Load an image-folder dataset: ``root/CLASS/*.png|jpg`` or ``root/{train,val}/CLASS/...``.

    If ``root/train`` (for the test split ``root/val`` or ``root/test``) exists it is used,
    otherwise ``root`` itself holds the class directories (train split only). Classes are the
    sorted directory names. Images are converted to RGB, centre-cropped to a square and resized
    (bilinear) to ``image_size`` x ``image_size`` pixels; the normalisation constants are computed
    from the loaded images.
    """
    if image_size < 1:
        raise InputError(f"image size must be >= 1, got {image_size}", field="image_size")
    try:
        from PIL import Image, ImageOps, UnidentifiedImageError
    except ImportError as exc:
        raise InputError(
            "folder datasets need Pillow to decode PNG/JPEG: pip install pillow", path="folder"
        ) from exc
    if not root.is_dir():
        raise InputError(f"no such directory: {root}", path="folder")
    base = next((root / d for d in _SPLIT_DIRS[split] if (root / d).is_dir()), None)
    if base is None:
        if split == "test":
            raise InputError(
                f"no val/ or test/ directory in {root} for the test split", path="folder"
            )
        base = root
    classes = _class_dirs(base)
    if not classes:
        raise InputError(f"no class directories with PNG/JPEG images in {base}", path="folder")
    files: list[tuple[Path, int]] = []
    for label, d in enumerate(classes):
        files += [(f, label) for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    images = np.empty((len(files), 3, image_size, image_size), dtype=np.uint8)
    for i, (f, _) in enumerate(files):
        try:
            with Image.open(f) as img:
                img.draft("RGB", (image_size, image_size))  # fast JPEG down-scaled decode
                rgb = ImageOps.fit(
                    img.convert("RGB"), (image_size, image_size), Image.Resampling.BILINEAR
                )
                images[i] = np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise InputError(f"cannot decode image: {exc}", path=str(f)) from exc
    tensor = torch.from_numpy(images)
    mean, std = channel_stats(tensor)
    return ImageDataset(
        images=tensor,
        labels=torch.tensor([label for _, label in files], dtype=torch.int64),
        num_classes=len(classes),
        name=f"folder/{split}",
        mean=mean,
        std=std,
    )


# ----------------------------------------------------------------------------------- synthetic

_SYNTHETIC_KEYS = {
    "n": "n",
    "classes": "num_classes",
    "size": "size",
    "channels": "channels",
    "seed": "seed",
}


_SYNTHETIC_LIMITS = {"n": 10_000_000, "classes": 10_000, "size": 1024, "channels": 64,
                     "seed": 2**32 - 1}
_SYNTHETIC_MAX_BYTES = 2**28  # one split's uint8 images (its float32 temporaries are ~12x that)


def _synthetic_params(arg: str, spec: str) -> dict[str, int]:
    """Parse ``n=512,classes=10,...`` into keyword arguments of :func:`synthetic_dataset`."""
    params: dict[str, int] = {}
    for item in filter(None, (s.strip() for s in arg.split(","))):
        key, _, value = (t.strip() for t in item.partition("="))
        if key not in _SYNTHETIC_KEYS:
            raise InputError(
                f"unknown parameter{_did_you_mean(key, list(_SYNTHETIC_KEYS))}", path=spec
            )
        if not (value.isascii() and value.isdigit()):
            raise InputError(f"{key}: expected a non-negative integer, got {value!r}", path=spec)
        number, limit = int(value), _SYNTHETIC_LIMITS[key]
        if number > limit:
            raise InputError(f"{key}: {number} is out of range (must be <= {limit})", path=spec)
        params[_SYNTHETIC_KEYS[key]] = number
    images = params.get("n", 512) * params.get("channels", 3) * params.get("size", 32) ** 2
    if images > _SYNTHETIC_MAX_BYTES:
        raise InputError(f"n x channels x size^2 = {images:,} bytes of images, more than "
                         f"{_SYNTHETIC_MAX_BYTES // 2**20} MiB", path=spec)
    return params


def synthetic_dataset(
    n: int = 512,
    num_classes: int = 10,
    size: int = 32,
    channels: int = 3,
    seed: int = 0,
    split: str = "train",
    noise: float = 0.15,
) -> ImageDataset:
    """Deterministic class-structured random images (for tests and smoke runs).

    Each class has a smooth random prototype (a 4 x 4 random colour grid upsampled bilinearly to
    ``size`` x ``size``); a sample is its class prototype with a random contrast (0.7-1.3),
    brightness offset (+-0.1) and Gaussian pixel noise (std ``noise``, [0, 1] units). Prototypes
    depend on ``seed`` only, so the train and test splits share classes but not samples. Labels
    are balanced (``n`` rounded robin over the classes, then shuffled).
    """
    if n < 1 or num_classes < 1 or size < 1 or channels < 1:
        raise InputError(
            f"synthetic: n, classes, size and channels must be >= 1 "
            f"(got {n}, {num_classes}, {size}, {channels})"
        )
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    g_proto = torch.Generator().manual_seed(3 * seed)
    g = torch.Generator().manual_seed(3 * seed + (1 if split == "train" else 2))
    coarse = torch.rand(num_classes, channels, 4, 4, generator=g_proto)
    protos = torch.nn.functional.interpolate(
        coarse, size=(size, size), mode="bilinear", align_corners=False
    )
    labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]
    contrast = 0.7 + 0.6 * torch.rand(n, 1, 1, 1, generator=g)
    offset = 0.2 * torch.rand(n, 1, 1, 1, generator=g) - 0.1
    pixels = torch.randn(n, channels, size, size, generator=g) * noise
    x = (protos[labels] - 0.5) * contrast + 0.5 + offset + pixels
    images = (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    mean, std = channel_stats(images)
    return ImageDataset(
        images=images,
        labels=labels.to(torch.int64),
        num_classes=num_classes,
        name=f"synthetic/{split}",
        mean=mean,
        std=std,
    )
