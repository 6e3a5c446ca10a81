"""Dataset loaders: IDX, CIFAR pickles (restricted unpickler), image folders, synthetic data."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

from accelsim.errors import InputError  # noqa: E402
from workloads import data  # noqa: E402
from workloads.data import (  # noqa: E402
    ImageDataset,
    UnsafePickleError,
    load_dataset,
    read_idx,
    restricted_load,
    synthetic_dataset,
)

# ------------------------------------------------------------------------------------ IDX


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(directory: Path, n_train: int = 12, n_test: int = 5, compress: bool = False):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, stem, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            raw = idx_bytes(arr)
            name = f"{stem}-{kind}-ubyte"
            if compress:
                (directory / f"{name}.gz").write_bytes(gzip.compress(raw))
            else:
                (directory / name).write_bytes(raw)
        arrays[split] = (images, labels)
    return arrays


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx_roundtrip(tmp_path: Path, compress: bool) -> None:
    arrays = write_mnist(tmp_path, compress=compress)
    for split in ("train", "test"):
        ds = load_dataset(f"mnist:{tmp_path}", split)
        images, labels = arrays[split]
        assert ds.images.dtype == torch.uint8 and ds.images.shape == (len(labels), 1, 28, 28)
        assert ds.labels.dtype == torch.int64
        assert np.array_equal(ds.images[:, 0].numpy(), images)
        assert np.array_equal(ds.labels.numpy(), labels)
        assert ds.num_classes == 10 and ds.name == f"mnist/{split}"
        assert ds.mean == (0.1307,) and len(ds.std) == 1


def test_fashion_mnist_with_path(tmp_path: Path) -> None:
    write_mnist(tmp_path, compress=True)
    ds = load_dataset(f"fashion-mnist:{tmp_path}", "test")
    assert len(ds) == 5 and ds.name == "fashion-mnist/test"


def test_idx_dotted_names(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    for f in tmp_path.iterdir():
        f.rename(tmp_path / f.name.replace("-idx", ".idx"))
    assert len(load_dataset(f"mnist:{tmp_path}")) == 12


def test_idx_bad_magic_names_file(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(b"\x12\x34" + bad.read_bytes()[2:])
    with pytest.raises(InputError, match=r"train-images-idx3-ubyte.*bad IDX magic"):
        load_dataset(f"mnist:{tmp_path}")


def test_idx_truncated_names_file(tmp_path: Path) -> None:
    write_mnist(tmp_path, compress=True)
    f = tmp_path / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(f.read_bytes())
    f.write_bytes(gzip.compress(raw[:-10]))
    with pytest.raises(InputError, match=r"train-images-idx3-ubyte\.gz.*truncated"):
        load_dataset(f"mnist:{tmp_path}")
    f.write_bytes(gzip.compress(raw)[:-20])  # a cut gzip stream
    with pytest.raises(InputError, match=r"train-images-idx3-ubyte\.gz"):
        read_idx(f)


def test_idx_label_count_mismatch(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(3, np.uint8)))
    with pytest.raises(InputError, match="expected 12 labels"):
        load_dataset(f"mnist:{tmp_path}")


def test_missing_files_say_how_to_get_them(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(InputError, match="no default location; give mnist:PATH"):
        load_dataset("mnist")
    with pytest.raises(InputError, match="no IDX files in"):
        load_dataset(f"mnist:{tmp_path}")
    monkeypatch.setattr(data, "FASHION_MNIST_DIRS", (str(tmp_path / "nowhere"),))
    monkeypatch.setattr(data.shutil, "which", lambda _: None)
    with pytest.raises(InputError) as err:
        load_dataset("fashion-mnist")
    msg = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "fashion-mnist:PATH" in msg
    assert "\n" not in msg
    with pytest.raises(InputError, match="cifar10:PATH"):
        load_dataset("cifar10")
    with pytest.raises(InputError, match="no such directory"):
        load_dataset(f"cifar100:{tmp_path / 'nope'}")


def test_unknown_name_and_split() -> None:
    with pytest.raises(InputError, match="did you mean 'cifar10'"):
        load_dataset("cifar-10")
    with pytest.raises(InputError, match="unknown split"):
        load_dataset("synthetic", "val")


def test_fashion_mnist_default_location() -> None:
    try:
        directory = data._fashion_mnist_default()
    except InputError:
        pytest.skip("Debian package dataset-fashion-mnist not installed")
    ds = load_dataset("fashion-mnist", "test")
    assert ds.images.shape == (10000, 1, 28, 28) and directory.is_dir()
    assert sorted(ds.labels.unique().tolist()) == list(range(10))


# ---------------------------------------------------------------------------------- CIFAR


def write_cifar(directory: Path, name: str, n: int = 4, protocol: int = 2) -> dict:
    rng = np.random.default_rng(1)
    files = (
        [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        if name == "cifar10"
        else ["train", "test"]
    )
    written = {}
    for i, f in enumerate(files):
        images = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10 if name == "cifar10" else 100, size=n)]
        # bytes keys: what Python 2 pickles (the real files) give with encoding="bytes"
        key = b"labels" if name == "cifar10" else b"fine_labels"
        entry = {b"batch_label": b"batch %d" % i, b"data": images, key: labels}
        if name == "cifar100":
            entry[b"coarse_labels"] = [v // 5 for v in labels]
        (directory / f).write_bytes(pickle.dumps(entry, protocol=protocol))
        written[f] = (images, labels)
    return written


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10(tmp_path: Path, protocol: int) -> None:
    written = write_cifar(tmp_path, "cifar10", protocol=protocol)
    train = load_dataset(f"cifar10:{tmp_path}", "train")
    test = load_dataset(f"cifar10:{tmp_path}", "test")
    assert train.images.shape == (20, 3, 32, 32) and test.images.shape == (4, 3, 32, 32)
    images, labels = written["data_batch_2"]
    assert np.array_equal(train.images[4:8].numpy(), images.reshape(4, 3, 32, 32))
    assert train.labels[4:8].tolist() == labels
    assert train.num_classes == 10 and len(train.mean) == 3


def test_cifar100_in_extracted_subdir(tmp_path: Path) -> None:
    sub = tmp_path / "cifar-100-python"
    sub.mkdir()
    written = write_cifar(sub, "cifar100", protocol=4)
    ds = load_dataset(f"cifar100:{tmp_path}", "test")
    assert ds.num_classes == 100 and ds.labels.tolist() == written["test"][1]


def write_cifar_binary(directory: Path, name: str, n: int = 3) -> dict:
    """The binary release: per record a label byte (CIFAR-100: coarse, then fine) and the
    3072 pixels, channel-major, as the official files store them."""
    rng = np.random.default_rng(2)
    files = ([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] if name == "cifar10"
             else ["train", "test"])
    written = {}
    for f in files:
        images = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        fine = rng.integers(0, 10 if name == "cifar10" else 100, size=n).astype(np.uint8)
        labels = [fine[:, None]] if name == "cifar10" else [(fine // 5)[:, None], fine[:, None]]
        (directory / f"{f}.bin").write_bytes(np.concatenate([*labels, images], axis=1).tobytes())
        written[f] = (images, fine.tolist())
    return written


@pytest.mark.parametrize("name, sub", [("cifar10", "cifar-10-batches-bin"),
                                       ("cifar100", "cifar-100-binary")])
def test_cifar_binary_release_is_preferred(tmp_path: Path, name: str, sub: str) -> None:
    where = tmp_path / sub
    where.mkdir()
    written = write_cifar_binary(where, name)
    write_cifar(tmp_path, name)  # the python version beside it is not read
    test = load_dataset(f"{name}:{tmp_path}", "test")
    key = "test_batch" if name == "cifar10" else "test"
    images, labels = written[key]
    assert np.array_equal(test.images.numpy(), images.reshape(-1, 3, 32, 32))
    assert test.labels.tolist() == labels  # the fine label for CIFAR-100
    if name == "cifar10":
        assert load_dataset(f"{name}:{tmp_path}", "train").images.shape == (15, 3, 32, 32)
    cut = where / f"{key}.bin"
    cut.write_bytes(cut.read_bytes()[:-7])
    with pytest.raises(InputError, match=r"\.bin.*not a whole number of .*-byte CIFAR records"):
        load_dataset(f"{name}:{tmp_path}", "test")


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    write_cifar(tmp_path, "cifar10")
    marker = tmp_path / "pwned"
    evil = {b"data": _Evil(marker), b"labels": []}
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(
        InputError,
        match=r"data_batch_3: unsafe pickle refused: refusing to load global (posix|os|nt)\.system",
    ):
        load_dataset(f"cifar10:{tmp_path}")
    assert not marker.exists()
    # builtins outside the containers are refused too
    payload = b"cbuiltins\neval\n(S'1+1'\ntR."
    with pytest.raises(UnsafePickleError, match=r"builtins\.eval"):
        restricted_load(__import__("io").BytesIO(payload))


def test_corrupt_cifar_pickle(tmp_path: Path) -> None:
    write_cifar(tmp_path, "cifar10")
    f = tmp_path / "test_batch"
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(InputError, match=r"test_batch.*corrupt CIFAR pickle"):
        load_dataset(f"cifar10:{tmp_path}", "test")
    f.write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(InputError, match=r"test_batch.*\(N, 3072\)"):
        load_dataset(f"cifar10:{tmp_path}", "test")


# --------------------------------------------------------------------------------- folder


def test_image_folder(tmp_path: Path) -> None:
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(2)
    for split, n in (("train", 3), ("val", 2)):
        for cls in ("n01", "n02"):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
                fmt, ext = ("PNG", "png") if i % 2 == 0 else ("JPEG", "JPEG")
                Image.fromarray(arr).save(d / f"img{i}.{ext}", format=fmt)
    (tmp_path / "train" / "n01" / "notes.txt").write_text("ignored")
    train = load_dataset(f"folder:{tmp_path}", "train", image_size=16)
    test = load_dataset(f"folder:{tmp_path}", "test", image_size=16)
    assert train.images.shape == (6, 3, 16, 16) and test.images.shape == (4, 3, 16, 16)
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1] and train.num_classes == 2
    # a flat layout (class directories directly under PATH) is the train split
    flat = load_dataset(f"folder:{tmp_path / 'train'}", image_size=8)
    assert flat.images.shape == (6, 3, 8, 8)
    (tmp_path / "train" / "n02" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"broken\.png.*cannot decode"):
        load_dataset(f"folder:{tmp_path}", image_size=8)
    with pytest.raises(InputError, match="no class directories"):
        load_dataset(f"folder:{tmp_path / 'train' / 'n01'}")


# ------------------------------------------------------------------------------ synthetic


def test_synthetic_is_deterministic_and_class_structured() -> None:
    a = load_dataset("synthetic:n=40,classes=4,size=8,channels=1,seed=3")
    b = synthetic_dataset(n=40, num_classes=4, size=8, channels=1, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.images.shape == (40, 1, 8, 8) and a.labels.bincount().tolist() == [10] * 4
    test = synthetic_dataset(n=40, num_classes=4, size=8, channels=1, seed=3, split="test")
    assert not torch.equal(test.images, a.images)
    # nearest class mean (from train) classifies the test split well: classes are structured
    x = a.images.float().flatten(1)
    means = torch.stack([x[a.labels == c].mean(0) for c in range(4)])
    pred = torch.cdist(test.images.float().flatten(1), means).argmin(1)
    assert (pred == test.labels).float().mean() > 0.9
    with pytest.raises(InputError, match="did you mean 'classes'"):
        load_dataset("synthetic:clases=3")
    with pytest.raises(InputError, match="non-negative integer"):
        load_dataset("synthetic:n=abc")


def test_batches_deterministic_and_complete() -> None:
    ds = synthetic_dataset(n=50, num_classes=5, size=4)
    epoch = list(ds.batches(16, torch.Generator().manual_seed(7)))
    again = list(ds.batches(16, torch.Generator().manual_seed(7)))
    assert len(epoch) == 3 and all(x.shape == (16, 3, 4, 4) for x, _ in epoch)
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        for a, b in zip(epoch, again, strict=True)
    )
    ordered = list(ds.batches(16, None, drop_last=False))
    assert [len(y) for _, y in ordered] == [16, 16, 16, 2]
    assert torch.equal(torch.cat([y for _, y in ordered]), ds.labels)
    with pytest.raises(InputError):
        next(ds.batches(0))


def test_dataset_validation() -> None:
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset(
            torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long), 2, "x", (0.5,), (0.5,)
        )
    with pytest.raises(ValueError, match="mean and std"):
        ImageDataset(
            torch.zeros(2, 3, 4, 4, dtype=torch.uint8),
            torch.zeros(2, dtype=torch.long),
            2,
            "x",
            (0.5,),
            (0.5,),
        )
