"""Loaders of the labelled image datasets: scikit-learn's digits, MNIST and Fashion-MNIST (IDX files),
CIFAR-10/100 (python pickles) and STL-10 (binary files). Where each is looked for: see :mod:`vicreg.data`."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import torch

from ..config import DataConfig
from .dataset import ImageDataset, Log, Split, in_memory, make_dataset
from .download import SYSTEM_DIRS, candidate_dirs, download_root, tv_download
from .safe_unpickle import latin1_text, unpickle_plain

# --------------------------------------------------------------------------------------------
# digits (scikit-learn, bundled)
# --------------------------------------------------------------------------------------------


def load_digits(cfg: DataConfig, log: Log = print) -> ImageDataset:
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    d = sk_digits()
    images = np.round(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None]  # (1797, 1, 8, 8)
    labels = d.target.astype(np.int64)
    tr, te = train_test_split(np.arange(len(labels)), test_size=cfg.test_fraction, stratify=labels,
                              random_state=cfg.split_seed)
    return make_dataset("digits", [str(i) for i in range(10)], in_memory(images[tr], labels[tr]),
                        in_memory(images[te], labels[te]), "scikit-learn (bundled)", log)


# --------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST (IDX files)
# --------------------------------------------------------------------------------------------

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MNIST_CLASSES = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six", "7 - seven",
                 "8 - eight", "9 - nine"]
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot"]


def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw) of unsigned bytes into a numpy uint8 array.

    The header is checked: two zero bytes, type code 0x08 (unsigned byte), the number of dimensions
    (``ndim`` when given), then one big-endian uint32 per dimension; the payload must have exactly
    the size they announce. Anything else raises ValueError naming the file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        if head == b"\x1f\x8b":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"corrupt IDX file {path}: cannot decompress ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"corrupt IDX file {path}: bad magic number {raw[:4].hex() or '(empty)'} "
                         f"(expected 000008{ndim or 1:02x})")
    if raw[2] != 0x08:
        raise ValueError(f"unsupported IDX file {path}: data type 0x{raw[2]:02x}, only unsigned bytes (0x08) are read")
    nd = raw[3]
    if ndim is not None and nd != ndim:
        raise ValueError(f"corrupt IDX file {path}: {nd} dimensions, expected {ndim}")
    if len(raw) < 4 + 4 * nd:
        raise ValueError(f"corrupt IDX file {path}: truncated header")
    shape = tuple(int(x) for x in np.frombuffer(raw, dtype=">u4", count=nd, offset=4))
    size = math.prod(shape)
    payload = len(raw) - 4 - 4 * nd
    if payload != size:
        raise ValueError(f"corrupt IDX file {path}: header says {shape} = {size} bytes, file holds {payload}")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * nd).reshape(shape).copy()  # writable


def _find_files(folder: Path, names: dict[str, str], gz: bool) -> dict[str, Path] | None:
    """Each name in ``folder`` (raw preferred, else ``.gz`` when ``gz``), or None if any is missing."""
    found = {}
    for key, name in names.items():
        for candidate in (folder / name, folder / (name + ".gz")) if gz else (folder / name,):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            return None
    return found


def _load_idx(name: str, cfg: DataConfig, log: Log) -> ImageDataset:
    tv_name = "FashionMNIST" if name == "fashion-mnist" else "MNIST"
    classes = FASHION_MNIST_CLASSES if name == "fashion-mnist" else MNIST_CLASSES
    dirs = candidate_dirs(cfg, f"{tv_name}/raw") + [Path(d) for d in SYSTEM_DIRS.get(name, [])]

    def find() -> dict[str, Path] | None:
        for d in dirs:
            files = _find_files(d, IDX_FILES, gz=True)
            if files is not None:
                return files
        return None

    files = find()
    if files is None and cfg.download:
        import torchvision.datasets as tvd

        root = download_root(cfg)
        cls = getattr(tvd, tv_name)
        tv_download(name, lambda r: cls(r, train=False, download=True), root, log)
        files = _find_files(root / tv_name / "raw", IDX_FILES, gz=True)
    if files is None:
        hint = "apt-get install dataset-fashion-mnist, or " if name == "fashion-mnist" else ""
        raise FileNotFoundError(
            f"{name} not found: looked for {IDX_FILES['train_images']}[.gz] etc. in {', '.join(map(str, dirs))}; "
            f"get it with {hint}--data.download true, or point --data.data_dir at a folder holding the IDX files")
    arrays = {k: read_idx(p, ndim=3 if k.endswith("images") else 1) for k, p in files.items()}
    for split in ("train", "test"):
        if len(arrays[f"{split}_images"]) != len(arrays[f"{split}_labels"]):
            raise ValueError(f"{name}: {len(arrays[f'{split}_images'])} {split} images but "
                             f"{len(arrays[f'{split}_labels'])} labels in {files[f'{split}_images'].parent}")
    train = in_memory(arrays["train_images"][:, None], arrays["train_labels"])
    test = in_memory(arrays["test_images"][:, None], arrays["test_labels"])
    return make_dataset(name, classes, train, test, str(files["train_images"].parent), log)


def load_fashion_mnist(cfg: DataConfig, log: Log = print) -> ImageDataset:
    return _load_idx("fashion-mnist", cfg, log)


def load_mnist(cfg: DataConfig, log: Log = print) -> ImageDataset:
    return _load_idx("mnist", cfg, log)


# --------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 (python pickle format)
# --------------------------------------------------------------------------------------------

CIFAR = {
    "cifar10": dict(folder="cifar-10-batches-py", train=[f"data_batch_{i}" for i in range(1, 6)], test=["test_batch"],
                    meta="batches.meta", label_key="labels", names_key="label_names", tv="CIFAR10"),
    "cifar100": dict(folder="cifar-100-python", train=["train"], test=["test"], meta="meta",
                     label_key="fine_labels", names_key="fine_label_names", tv="CIFAR100"),
}


def _load_cifar(name: str, cfg: DataConfig, log: Log) -> ImageDataset:
    spec = CIFAR[name]
    names = {f: f for f in spec["train"] + spec["test"] + [spec["meta"]]}
    dirs = candidate_dirs(cfg, spec["folder"])

    def find() -> Path | None:
        return next((d for d in dirs if _find_files(d, names, gz=False) is not None), None)

    folder = find()
    if folder is None and cfg.download:
        import torchvision.datasets as tvd

        root = download_root(cfg)
        cls = getattr(tvd, spec["tv"])
        tv_download(name, lambda r: cls(r, train=False, download=True), root, log)
        folder = root / spec["folder"] if _find_files(root / spec["folder"], names, gz=False) else None
    if folder is None:
        raise FileNotFoundError(
            f"{name} not found: looked for {spec['folder']}/ ({', '.join(names)}) in {', '.join(map(str, dirs))}; "
            f"get it with --data.download true, or point --data.data_dir at the extracted {spec['folder']} folder")

    def read(files: list[str]) -> Split:
        data, labels = [], []
        for fname in files:
            entry = unpickle_plain(folder / fname)
            if "data" not in entry or not isinstance(entry.get(spec["label_key"]), (list, tuple)):
                raise ValueError(f"corrupt CIFAR file {folder / fname}: no 'data' array and '{spec['label_key']}' list")
            given = entry[spec["label_key"]]
            if not isinstance(entry["data"], np.ndarray) or not all(isinstance(v, int) for v in given):
                raise ValueError(f"corrupt CIFAR file {folder / fname}: 'data' must be an array, the labels "
                                 f"integers")
            x = np.asarray(entry["data"], dtype=np.uint8)
            if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(x) != len(entry[spec["label_key"]]):
                raise ValueError(f"corrupt CIFAR file {folder / fname}: data of shape {x.shape}, "
                                 f"{len(entry[spec['label_key']])} labels")
            data.append(x.reshape(-1, 3, 32, 32))
            labels.extend(int(v) for v in entry[spec["label_key"]])
        return in_memory(np.concatenate(data), labels)

    meta = unpickle_plain(folder / spec["meta"])
    if not isinstance(meta.get(spec["names_key"]), (list, tuple)):
        raise ValueError(f"corrupt CIFAR file {folder / spec['meta']}: no list of class names under "
                         f"'{spec['names_key']}' (found keys: {', '.join(sorted(meta)) or 'none'})")
    classes = [latin1_text(c) for c in meta[spec["names_key"]]]
    return make_dataset(name, classes, read(spec["train"]), read(spec["test"]), str(folder), log)


def load_cifar10(cfg: DataConfig, log: Log = print) -> ImageDataset:
    return _load_cifar("cifar10", cfg, log)


def load_cifar100(cfg: DataConfig, log: Log = print) -> ImageDataset:
    return _load_cifar("cifar100", cfg, log)


# --------------------------------------------------------------------------------------------
# STL-10 (binary format)
# --------------------------------------------------------------------------------------------

STL10_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
STL10_FILES = {"train_X": "train_X.bin", "train_y": "train_y.bin", "test_X": "test_X.bin", "test_y": "test_y.bin"}
_STL_IMAGE = 3 * 96 * 96


def _stl_count(path: Path) -> int:
    size = path.stat().st_size
    if size % _STL_IMAGE:
        raise ValueError(f"corrupt STL-10 file {path}: {size} bytes is not a whole number of 3x96x96 images")
    return size // _STL_IMAGE


def _stl_read_into(path: Path, out: np.ndarray, chunk: int = 8192) -> None:
    """Fill ``out`` (n, 3, 96, 96) from a column-major STL-10 image file, a chunk at a time (memmap)."""
    if len(out) == 0:
        return
    mm = np.memmap(path, dtype=np.uint8, mode="r").reshape(-1, 3, 96, 96)
    for i in range(0, len(out), chunk):
        out[i:i + chunk] = mm[i:i + chunk].transpose(0, 1, 3, 2)  # stored column-major: swap H and W
    del mm


def _stl_labels(path: Path, n: int) -> np.ndarray:
    y = np.fromfile(path, dtype=np.uint8).astype(np.int64) - 1  # 1..10 -> 0..9
    if len(y) != n or (len(y) and (y.min() < 0 or y.max() > 9)):
        raise ValueError(f"corrupt STL-10 file {path}: {len(y)} labels in 1..10 expected {n}")
    return y


def load_stl10(cfg: DataConfig, log: Log = print) -> ImageDataset:
    dirs = candidate_dirs(cfg, "stl10_binary")
    folder = next((d for d in dirs if _find_files(d, STL10_FILES, gz=False) is not None), None)
    if folder is None and cfg.download:
        import torchvision.datasets as tvd

        root = download_root(cfg)
        tv_download("stl10", lambda r: tvd.STL10(r, split="test", download=True), root, log)
        folder = root / "stl10_binary" if _find_files(root / "stl10_binary", STL10_FILES, gz=False) else None
    if folder is None:
        raise FileNotFoundError(
            f"stl10 not found: looked for stl10_binary/ ({', '.join(STL10_FILES.values())}, unlabeled_X.bin) in "
            f"{', '.join(map(str, dirs))}; get it with --data.download true, or point --data.data_dir at stl10_binary")
    n_train, n_test = _stl_count(folder / "train_X.bin"), _stl_count(folder / "test_X.bin")
    unlabeled = folder / "unlabeled_X.bin"
    n_unl = _stl_count(unlabeled) if unlabeled.is_file() else 0
    if not unlabeled.is_file():
        log(f"stl10: no {unlabeled}; training on the {n_train} labelled images only")

    # one tensor for train + unlabeled; the labelled split is a view of its first n_train images
    train_images = torch.empty((n_train + n_unl, 3, 96, 96), dtype=torch.uint8)
    _stl_read_into(folder / "train_X.bin", train_images.numpy()[:n_train])
    _stl_read_into(unlabeled, train_images.numpy()[n_train:])
    test_images = torch.empty((n_test, 3, 96, 96), dtype=torch.uint8)
    _stl_read_into(folder / "test_X.bin", test_images.numpy())
    y_train = torch.from_numpy(_stl_labels(folder / "train_y.bin", n_train))
    y_test = torch.from_numpy(_stl_labels(folder / "test_y.bin", n_test))

    names_file = folder / "class_names.txt"
    classes = [ln.strip() for ln in names_file.read_text().splitlines() if ln.strip()] if names_file.is_file() \
        else list(STL10_CLASSES)
    labeled = Split(y_train, train_images[:n_train])
    if n_unl:
        train = Split(torch.cat([y_train, torch.full((n_unl,), -1, dtype=torch.int64)]), train_images)
    else:
        train = labeled
    return make_dataset("stl10", classes, train, Split(y_test, test_images), str(folder), log, train_labeled=labeled,
                        note=f" ({n_train} labelled + {n_unl} unlabeled)")


# --------------------------------------------------------------------------------------------
# An image folder (ImageFolder layout)
# --------------------------------------------------------------------------------------------
