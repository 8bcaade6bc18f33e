"""Datasets as uint8 tensors, and batches sliced from them on the training device.

Every dataset is loaded once into CPU ``uint8`` tensors of shape ``(N, C, H, W)`` (an
:class:`ImageDataset` of three :class:`Split` s). :class:`Batches` then either moves a split to the
device as one tensor and slices each batch out of it with a seeded permutation (no worker pool, no
per-image Python), or, for data too big for the device, streams it through a ``DataLoader``
following the very same order. The order of any epoch depends only on ``(seed, epoch)``, so a
resumed run sees exactly the batches it would have seen.

Where each dataset is looked for (``--data.data_dir DIR`` points at an existing copy; with
``--data.download true``, the default, a missing dataset is downloaded by torchvision into ``DIR``,
or into ``~/.cache/vicreg/data`` when no ``data_dir`` is given):

``digits``
    scikit-learn's bundled 8x8 digits (1797 images, offline); a stratified 75/25 split
    (``data.test_fraction``, ``data.split_seed``).
``fashion-mnist``, ``mnist``
    the IDX files ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
    ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]`` in ``DIR``, or in torchvision's
    ``DIR/FashionMNIST/raw`` / ``DIR/MNIST/raw``; for Fashion-MNIST then Debian's
    ``/usr/share/datasets/fashion-mnist`` (``apt-get install dataset-fashion-mnist``).
``cifar10``, ``cifar100``
    the python version (``cifar-10-batches-py/`` with ``data_batch_1..5``, ``test_batch``,
    ``batches.meta``; ``cifar-100-python/`` with ``train``, ``test``, ``meta``): ``DIR`` may be that
    folder itself or its parent.
``stl10``
    ``stl10_binary/`` (``train_X.bin``, ``train_y.bin``, ``test_X.bin``, ``test_y.bin``,
    ``unlabeled_X.bin``, ``class_names.txt``): ``DIR`` may be that folder or its parent. Training uses
    train + unlabeled (105 000 images, label -1 for the unlabeled ones); the k-NN bank is the 5000
    labelled training images.
``folder``
    ``DIR`` holds one sub-folder per class (torchvision's ImageFolder layout, searched recursively);
    if it has ``train/`` and ``test/`` (or ``val/``) sub-folders those are the splits, else a
    stratified split is drawn. Images are resized (shorter side) and centre-cropped to
    ``data.image_size`` (default 64), kept grey when every image is grey, else RGB. Up to about
    2 GB of decoded pixels are held in memory; beyond that images are decoded on the fly.

With no ``data_dir``, the default cache ``~/.cache/vicreg/data`` is searched as well, so a dataset
downloaded once is found again.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .config import DataConfig

__all__ = [
    "Split",
    "ImageDataset",
    "Batches",
    "load_dataset",
    "LOADERS",
    "DEFAULT_ROOT",
    "epoch_permutation",
    "read_idx",
    "ImageFiles",
]

Log = Callable[[str], None]

DEFAULT_ROOT = "~/.cache/vicreg/data"  # torchvision downloads land here when no data_dir is given
SYSTEM_DIRS = {"fashion-mnist": ["/usr/share/datasets/fashion-mnist"], "mnist": []}  # distribution packages
FOLDER_IN_MEMORY_LIMIT = 2 * 1024**3  # decoded bytes above which an image folder is streamed
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


# --------------------------------------------------------------------------------------------
# Containers
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Split:
    """One split: labels always, and either all images in memory or a ``source`` to stream from."""

    labels: torch.Tensor  # int64 (N,), CPU; -1 where unknown (unlabeled images)
    images: torch.Tensor | None  # uint8 (N, C, H, W), CPU, when held in memory
    source: Dataset | None = None  # when streamed: item i -> (uint8 (C, H, W) tensor, int label)
    # device copies made by Batches, shared by every Batches over this split (e.g. train and bank)
    _on_device: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.images is None and self.source is None:
            raise ValueError("a Split needs images or a source")
        n = len(self.labels)
        if self.images is not None and len(self.images) != n:
            raise ValueError(f"a Split has {len(self.images)} images but {n} labels")
        if self.images is None and len(self.source) != n:  # type: ignore[arg-type]
            raise ValueError(f"a Split's source has {len(self.source)} items but {n} labels")  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(eq=False)
class ImageDataset:
    name: str
    classes: list[str]
    channels: int
    image_size: int  # square: H == W
    train: Split  # images for self-supervised training (STL-10: train + unlabeled, label -1)
    train_labeled: Split  # labelled training images (k-NN bank, linear probe); `train` when all are labelled
    test: Split


def _in_memory(images: torch.Tensor | np.ndarray, labels) -> Split:
    images = torch.as_tensor(images)
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected uint8 (N, C, H, W) images, got {images.dtype} {tuple(images.shape)}")
    return Split(torch.as_tensor(np.asarray(labels), dtype=torch.int64).contiguous(), images.contiguous())


def _dataset(name: str, classes: list[str], train: Split, test: Split, where: str, log: Log,
             train_labeled: Split | None = None, note: str = "") -> ImageDataset:
    sample = train.images[0] if train.images is not None else train.source[0][0]  # type: ignore[index]
    c, h, w = sample.shape
    ds = ImageDataset(name, list(classes), c, h, train, train_labeled if train_labeled is not None else train, test)
    log(f"{name}: {len(train)} train{note} / {len(test)} test images, {c}x{h}x{w}, {len(classes)} classes, "
        f"from {where}")
    return ds


def _text(x) -> str:
    return x.decode("latin1") if isinstance(x, bytes) else str(x)


def _candidates(cfg: DataConfig, *subdirs: str) -> list[Path]:
    """data_dir (or the default cache when there is none), then each of its sub-folders."""
    root = Path(cfg.data_dir if cfg.data_dir is not None else DEFAULT_ROOT).expanduser()
    return [root] + [root / s for s in subdirs]


def _download_root(cfg: DataConfig) -> Path:
    root = Path(cfg.data_dir if cfg.data_dir is not None else DEFAULT_ROOT).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def _tv_download(name: str, factory: Callable[[str], object], root: Path, log: Log) -> None:
    """Run a torchvision dataset constructor with download=True; failures become one clear line."""
    log(f"{name}: not found locally, downloading with torchvision into {root}")
    try:
        factory(str(root))
    except Exception as e:  # network errors, checksum mismatches, full disk...
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise RuntimeError(f"downloading {name} into {root} failed ({type(e).__name__}: {first}); download it "
                           f"elsewhere and pass --data.data_dir, or see the vicreg.data docstring") from e


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
    return _dataset("digits", [str(i) for i in range(10)], _in_memory(images[tr], labels[tr]),
                    _in_memory(images[te], labels[te]), "scikit-learn (bundled)", log)


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
    dirs = _candidates(cfg, f"{tv_name}/raw") + [Path(d) for d in SYSTEM_DIRS.get(name, [])]

    def find() -> dict[str, Path] | None:
        for d in dirs:
            files = _find_files(d, IDX_FILES, gz=True)
            if files is not None:
                return files
        return None

    files = find()
    if files is None and cfg.download:
        import torchvision.datasets as tvd

        root = _download_root(cfg)
        cls = getattr(tvd, tv_name)
        _tv_download(name, lambda r: cls(r, train=False, download=True), root, log)
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
    train = _in_memory(arrays["train_images"][:, None], arrays["train_labels"])
    test = _in_memory(arrays["test_images"][:, None], arrays["test_labels"])
    return _dataset(name, classes, train, test, str(files["train_images"].parent), log)


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


def _unpickle(path: Path) -> dict:
    """A CIFAR pickle as a dict with str keys (Python 2 pickles read as torchvision does, latin1)."""
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
    except Exception as e:
        raise ValueError(f"corrupt CIFAR file {path}: {type(e).__name__}: {e}") from None
    if not isinstance(entry, dict):
        raise ValueError(f"corrupt CIFAR file {path}: expected a pickled dict, got {type(entry).__name__}")
    return {_text(k): v for k, v in entry.items()}


def _load_cifar(name: str, cfg: DataConfig, log: Log) -> ImageDataset:
    spec = CIFAR[name]
    names = {f: f for f in spec["train"] + spec["test"] + [spec["meta"]]}
    dirs = _candidates(cfg, spec["folder"])

    def find() -> Path | None:
        return next((d for d in dirs if _find_files(d, names, gz=False) is not None), None)

    folder = find()
    if folder is None and cfg.download:
        import torchvision.datasets as tvd

        root = _download_root(cfg)
        cls = getattr(tvd, spec["tv"])
        _tv_download(name, lambda r: cls(r, train=False, download=True), root, log)
        folder = root / spec["folder"] if _find_files(root / spec["folder"], names, gz=False) else None
    if folder is None:
        raise FileNotFoundError(
            f"{name} not found: looked for {spec['folder']}/ ({', '.join(names)}) in {', '.join(map(str, dirs))}; "
            f"get it with --data.download true, or point --data.data_dir at the extracted {spec['folder']} folder")

    def read(files: list[str]) -> Split:
        data, labels = [], []
        for fname in files:
            entry = _unpickle(folder / fname)
            if "data" not in entry or spec["label_key"] not in entry:
                raise ValueError(f"corrupt CIFAR file {folder / fname}: no 'data' / '{spec['label_key']}' entries")
            x = np.asarray(entry["data"], dtype=np.uint8)
            if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(x) != len(entry[spec["label_key"]]):
                raise ValueError(f"corrupt CIFAR file {folder / fname}: data of shape {x.shape}, "
                                 f"{len(entry[spec['label_key']])} labels")
            data.append(x.reshape(-1, 3, 32, 32))
            labels.extend(int(v) for v in entry[spec["label_key"]])
        return _in_memory(np.concatenate(data), labels)

    meta = _unpickle(folder / spec["meta"])
    classes = [_text(c) for c in meta[spec["names_key"]]]
    return _dataset(name, classes, read(spec["train"]), read(spec["test"]), str(folder), log)


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
    dirs = _candidates(cfg, "stl10_binary")
    folder = next((d for d in dirs if _find_files(d, STL10_FILES, gz=False) is not None), None)
    if folder is None and cfg.download:
        import torchvision.datasets as tvd

        root = _download_root(cfg)
        _tv_download("stl10", lambda r: tvd.STL10(r, split="test", download=True), root, log)
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
    return _dataset("stl10", classes, train, Split(y_test, test_images), str(folder), log, train_labeled=labeled,
                    note=f" ({n_train} labelled + {n_unl} unlabeled)")


# --------------------------------------------------------------------------------------------
# An image folder (ImageFolder layout)
# --------------------------------------------------------------------------------------------

_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


def decode_image(path: str | os.PathLike, size: int, grey: bool) -> np.ndarray:
    """Decode ``path`` to uint8 (C, size, size): shorter side resized to ``size`` (antialiased), centre crop."""
    from PIL import Image

    mode = "L" if grey else "RGB"
    with Image.open(path) as im:
        im.draft(mode, (size, size))  # JPEG: decode at a reduced scale that is still >= size
        im = im.convert(mode)
        w, h = im.size
        side = min(w, h)
        left, top = (w - side) / 2.0, (h - side) / 2.0
        # crop box in source coordinates, then one antialiased (bilinear, widened on downscale) resample
        im = im.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))
        a = np.asarray(im, dtype=np.uint8)
    return a[None] if grey else a.transpose(2, 0, 1)


class ImageFiles(Dataset):
    """Images decoded on the fly: item i -> (uint8 (C, size, size) tensor, int label)."""

    def __init__(self, paths: list[str], labels: list[int], size: int, grey: bool):
        self.paths, self.labels, self.size, self.grey = list(paths), list(labels), size, grey

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(np.ascontiguousarray(decode_image(self.paths[i], self.size, self.grey))), \
            int(self.labels[i])


def _list_images(root: Path) -> tuple[list[str], list[str], list[int]]:
    """ImageFolder listing: (class names, file paths, labels), sorted, searched recursively."""
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    paths, labels = [], []
    for label, cls in enumerate(classes):
        found = []
        for dirpath, dirnames, filenames in os.walk(root / cls, followlinks=True):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            found += [os.path.join(dirpath, f) for f in filenames if f.lower().endswith(IMG_EXTENSIONS)]
        found.sort()
        paths += found
        labels += [label] * len(found)
    return classes, paths, labels


def _is_grey(paths: list[str], log: Log, max_checked: int = 20000) -> bool:
    """True when every image is stored grey (header only). Big folders: a seeded sample of 2000 is read."""
    from PIL import Image

    def mode(p: str) -> str:
        with Image.open(p) as im:
            return im.mode

    check = paths
    if len(paths) > max_checked:
        rng = np.random.default_rng(0)
        check = [paths[i] for i in rng.choice(len(paths), 2000, replace=False)]
        log(f"folder: colour mode judged from a sample of {len(check)} of {len(paths)} images")
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        return all(m in _GREY_MODES for m in pool.map(mode, check))


def _decode_all(paths: list[str], size: int, grey: bool) -> torch.Tensor:
    from tqdm.auto import tqdm

    out = torch.empty((len(paths), 1 if grey else 3, size, size), dtype=torch.uint8)
    arr = out.numpy()

    def work(i: int) -> None:
        arr[i] = decode_image(paths[i], size, grey)

    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:  # PIL releases the GIL while decoding
        it = pool.map(work, range(len(paths)))
        for _ in tqdm(it, total=len(paths), desc="decoding images", unit="img", disable=len(paths) <= 2000):
            pass
    return out


def load_folder(cfg: DataConfig, log: Log = print) -> ImageDataset:
    if cfg.data_dir is None:
        raise ValueError("dataset 'folder' needs --data.data_dir pointing at a folder with one sub-folder per class")
    root = Path(cfg.data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} not found (--data.data_dir)")
    size = cfg.image_size or 64
    test_dir = next((root / s for s in ("test", "val") if (root / s).is_dir()), None)
    if (root / "train").is_dir() and test_dir is not None:
        classes, train_paths, train_labels = _list_images(root / "train")
        test_classes, test_paths, test_labels = _list_images(test_dir)
        extra = sorted(set(test_classes) - set(classes))
        if extra:
            raise ValueError(f"{test_dir} has classes missing from {root / 'train'}: {', '.join(extra)}")
        remap = [classes.index(c) for c in test_classes]
        test_labels = [remap[y] for y in test_labels]
        how = f"{root} (train/ and {test_dir.name}/)"
    else:
        classes, paths, labels = _list_images(root)
        if len(paths) < 2:
            raise ValueError(f"image folder {root}: found {len(paths)} images ({', '.join(IMG_EXTENSIONS)}) in "
                             f"{len(classes)} class sub-folders; expected one sub-folder of images per class")
        from sklearn.model_selection import train_test_split

        index = np.arange(len(paths))
        try:
            tr, te = train_test_split(index, test_size=cfg.test_fraction, stratify=labels,
                                      random_state=cfg.split_seed)
        except ValueError:  # a class with a single image, or fewer test images than classes
            log(f"folder: too few images per class for a stratified split; splitting {root} at random")
            tr, te = train_test_split(index, test_size=cfg.test_fraction, random_state=cfg.split_seed)
        train_paths, train_labels = [paths[i] for i in tr], [labels[i] for i in tr]
        test_paths, test_labels = [paths[i] for i in te], [labels[i] for i in te]
        how = f"{root} (split {1 - cfg.test_fraction:g}/{cfg.test_fraction:g}, seed {cfg.split_seed})"
    if not train_paths:
        raise ValueError(f"image folder {root}: no training images ({', '.join(IMG_EXTENSIONS)}) in class sub-folders")
    empty = [c for i, c in enumerate(classes) if i not in set(train_labels)]
    if empty:
        log(f"folder: no training images for classes {', '.join(empty)}")
    grey = _is_grey(train_paths + test_paths, log)
    channels = 1 if grey else 3
    decoded = (len(train_paths) + len(test_paths)) * channels * size * size
    if decoded > FOLDER_IN_MEMORY_LIMIT:
        log(f"folder: {decoded / 1e9:.1f} GB decoded would exceed {FOLDER_IN_MEMORY_LIMIT / 1e9:.1f} GB; images "
            f"are decoded on the fly (streamed)")

        def split(p: list[str], y: list[int]) -> Split:
            return Split(torch.tensor(y, dtype=torch.int64), None, ImageFiles(p, y, size, grey))
    else:

        def split(p: list[str], y: list[int]) -> Split:
            return Split(torch.tensor(y, dtype=torch.int64), _decode_all(p, size, grey))

    return _dataset("folder", classes, split(train_paths, train_labels), split(test_paths, test_labels), how, log)


# --------------------------------------------------------------------------------------------
# Video (vicreg.video imports this module, so it is imported when first used)
# --------------------------------------------------------------------------------------------


def _load_sprites(cfg: DataConfig, log: Log = print) -> ImageDataset:
    from .video import load_sprites_dataset

    return load_sprites_dataset(cfg, log)


def _load_moving_mnist(cfg: DataConfig, log: Log = print) -> ImageDataset:
    from .video import load_moving_mnist_dataset

    return load_moving_mnist_dataset(cfg, log)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

LOADERS: dict[str, Callable[[DataConfig, Log], ImageDataset]] = {
    "digits": load_digits,
    "fashion-mnist": load_fashion_mnist,
    "mnist": load_mnist,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "stl10": load_stl10,
    "folder": load_folder,
    "sprites": _load_sprites,
    "moving-mnist": _load_moving_mnist,
}


def load_dataset(cfg: DataConfig, log: Log = print) -> ImageDataset:
    """Load ``cfg.dataset`` into uint8 tensors (or a streamed source); logs one line saying what and from where."""
    loader = LOADERS.get(cfg.dataset)
    if loader is None:
        raise ValueError(f"unknown dataset {cfg.dataset!r} (known datasets: {', '.join(LOADERS)})")
    ds = loader(cfg, log)
    if cfg.limit_train is not None or cfg.limit_test is not None:
        same = ds.train_labeled is ds.train
        ds.train = _first(ds.train, cfg.limit_train)
        ds.train_labeled = ds.train if same else _first(ds.train_labeled, cfg.limit_train)
        ds.test = _first(ds.test, cfg.limit_test)
        log(f"using the first {len(ds.train)} training and {len(ds.test)} test images (data.limit_train/limit_test)")
    return ds


def _first(split: Split, n: int | None) -> Split:
    """The first ``n`` items of a split (all of them when n is None or larger)."""
    if n is None or n >= len(split):
        return split
    if split.images is not None:
        return Split(split.labels[:n], split.images[:n])
    return Split(split.labels[:n], None, torch.utils.data.Subset(split.source, range(n)))


def spread_subset(split: Split, n: int) -> Split:
    """``n`` items evenly spaced over a split (all of them when n >= len): a fixed sample that covers every
    class even when the split is sorted by class (image folders)."""
    if n >= len(split):
        return split
    idx = torch.linspace(0, len(split) - 1, n).round().long()
    if split.images is not None:
        return Split(split.labels[idx], split.images[idx])
    return Split(split.labels[idx], None, torch.utils.data.Subset(split.source, idx.tolist()))


# --------------------------------------------------------------------------------------------
# Batches on the device
# --------------------------------------------------------------------------------------------


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of ``n`` items in ``epoch``: a CPU randperm seeded from (seed, epoch) only."""
    state = np.random.SeedSequence([seed & 0xFFFFFFFFFFFFFFFF, epoch & 0xFFFFFFFFFFFFFFFF]).generate_state(1, np.uint64)
    g = torch.Generator()
    g.manual_seed(int(state[0]) >> 1)
    return torch.randperm(n, generator=g)


def _num_batches(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


class _EpochBatchSampler(Sampler[list[int]]):
    """Index lists of the batches ``start..`` of an epoch, in the (seed, epoch) order of Batches."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, drop_last: bool, seed: int):
        self.n, self.batch_size, self.shuffle, self.drop_last, self.seed = n, batch_size, shuffle, drop_last, seed
        self.epoch, self.start = 0, 0

    def __len__(self) -> int:
        return _num_batches(self.n, self.batch_size, self.drop_last) - self.start

    def __iter__(self) -> Iterator[list[int]]:
        order = epoch_permutation(self.n, self.seed, self.epoch) if self.shuffle else None
        b = self.batch_size
        for i in range(self.start, _num_batches(self.n, b, self.drop_last)):
            lo, hi = i * b, min(self.n, (i + 1) * b)
            yield order[lo:hi].tolist() if order is not None else list(range(lo, hi))


class _TensorSource(Dataset):
    """An in-memory split seen as a Dataset (placement "stream")."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


def _collate(items: list) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.stack([torch.as_tensor(x) for x, _ in items])
    return images, torch.tensor([int(y) for _, y in items], dtype=torch.int64)


def _device_key(device: torch.device) -> str:
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return str(device)


def _to_device(t: torch.Tensor, device: torch.device, chunk_bytes: int = 1 << 27) -> torch.Tensor:
    """Copy a CPU tensor to ``device``; on CUDA through pinned chunks with non_blocking copies."""
    if device.type != "cuda":
        return t.to(device)
    t = t.contiguous()
    out = torch.empty(t.shape, dtype=t.dtype, device=device)
    flat_src, flat_dst = t.view(-1), out.view(-1)
    step = max(1, chunk_bytes // max(1, t.element_size()))
    for i in range(0, flat_src.numel(), step):
        flat_dst[i:i + step].copy_(flat_src[i:i + step].pin_memory(), non_blocking=True)
    return out


class Batches:
    """An iterable of ``(uint8 images (B, C, H, W), int64 labels (B,))`` batches on ``device``.

    resident (``placement`` "device", or "auto" when it fits): the split is copied to the device
    once as one tensor and each batch is gathered from it with a slice of the epoch's permutation;
    streamed ("stream", splits without images in memory, or "auto" when the split does not fit in
    ``max_device_fraction`` of the free GPU memory): a DataLoader with ``num_workers`` persistent
    workers follows the same order. Shuffled orders depend only on ``(seed, epoch)``. Batches that are
    slices of a resident split (no shuffle) are views of it: do not modify them in place.
    """

    def __init__(self, split: Split, batch_size: int, device: torch.device | str, *, shuffle: bool,
                 drop_last: bool, placement: str = "auto", num_workers: int = 4, max_device_fraction: float = 0.5,
                 seed: int = 0, log: Log = print):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        if placement not in ("auto", "device", "stream"):
            raise ValueError(f"placement={placement!r} is not valid: expected one of 'auto', 'device', 'stream'")
        self.split, self.batch_size, self.device = split, batch_size, torch.device(device)
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self.resident = self._decide(placement, max_device_fraction, log)
        if self.resident:
            key = _device_key(self.device)
            if key not in split._on_device:
                if self.device.type == "cpu":
                    split._on_device[key] = (split.images, split.labels)
                else:
                    split._on_device[key] = (_to_device(split.images, self.device),  # type: ignore[arg-type]
                                             _to_device(split.labels, self.device))
            self._images, self._labels = split._on_device[key]
        else:
            self._sampler = _EpochBatchSampler(len(split), batch_size, shuffle, drop_last, seed)
            source = split.source if split.source is not None else _TensorSource(split.images, split.labels)
            self._loader = DataLoader(source, batch_sampler=self._sampler, num_workers=num_workers,
                                      collate_fn=_collate, pin_memory=self.device.type == "cuda",
                                      persistent_workers=num_workers > 0)

    def _decide(self, placement: str, fraction: float, log: Log) -> bool:
        split = self.split
        if split.images is None:
            if placement == "device":
                raise ValueError(f"placement 'device' needs the images in memory, but this split of {len(split)} "
                                 f"images is streamed from {type(split.source).__name__}; use placement auto or stream")
            return False
        if placement != "auto":
            return placement == "device"
        if self.device.type != "cuda" or _device_key(self.device) in split._on_device:
            return True
        nbytes = split.images.numel() * split.images.element_size() + split.labels.numel() * 8
        free, _ = torch.cuda.mem_get_info(self.device)
        if nbytes <= fraction * free:
            return True
        log(f"data: {len(split)} images ({nbytes / 1e9:.2f} GB) exceed {fraction:g} of the free GPU memory "
            f"({free / 1e9:.2f} GB): streaming them with a DataLoader")
        return False

    def __len__(self) -> int:
        return _num_batches(len(self.split), self.batch_size, self.drop_last)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield the batches ``start, start+1, ...`` of ``epoch`` (images uint8, labels int64, on the device).

        With shuffle, the order is :func:`epoch_permutation` ``(len(split), seed, epoch)``, so any
        epoch's order can be recomputed after a restart; without, the split's own order.
        """
        if not 0 <= start <= len(self):
            raise ValueError(f"start={start} is outside 0..{len(self)} batches")
        return self._resident(epoch, start) if self.resident else self._streamed(epoch, start)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch(0)

    def _resident(self, epoch: int, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, b = len(self.split), self.batch_size
        order = None
        if self.shuffle:
            order = epoch_permutation(n, self.seed, epoch)
            if self.device.type == "cuda":
                order = order.pin_memory().to(self.device, non_blocking=True)
            else:
                order = order.to(self.device)
        for i in range(start, len(self)):
            lo, hi = i * b, min(n, (i + 1) * b)
            if order is None:
                yield self._images[lo:hi], self._labels[lo:hi]
            else:
                idx = order[lo:hi]
                yield self._images.index_select(0, idx), self._labels.index_select(0, idx)

    def _streamed(self, epoch: int, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self._sampler.epoch, self._sampler.start = epoch, start
        for images, labels in self._loader:
            yield images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
