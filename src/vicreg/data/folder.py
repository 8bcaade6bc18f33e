"""A folder of images in torchvision's ImageFolder layout: decoded, resized and centre-cropped into memory,
or decoded on the fly when they would not fit (``FOLDER_IN_MEMORY_LIMIT``)."""

from __future__ import annotations

import os
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import DataConfig
from ..errors import first_line
from ..image_ops import resize_images
from .dataset import ImageDataset, Log, Split, make_dataset

FOLDER_IN_MEMORY_LIMIT = 2 * 1024**3  # decoded bytes above which an image folder is streamed
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


def decode_image(path: str | os.PathLike, size: int, grey: bool) -> np.ndarray:
    """Decode ``path`` to uint8 (C, size, size): shorter side resized to ``size`` (antialiased), centre crop."""
    from PIL import Image

    with Image.open(path) as im:
        im.draft("L" if grey else "RGB", (size, size))  # JPEG: decode at a reduced scale that is still >= size
        return image_array(im, size, grey)


def image_array(image, size: int, grey: bool) -> np.ndarray:
    """A PIL image -> uint8 (C, size, size): grey or RGB, the centred square resized to ``size``."""
    from PIL import Image

    im = image.convert("L" if grey else "RGB")
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) / 2.0, (h - side) / 2.0
    # crop box in source coordinates, then one antialiased (bilinear, widened on downscale) resample
    im = im.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))
    a = np.array(im, dtype=np.uint8)  # a writable copy
    return a[None] if grey else a.transpose(2, 0, 1)


def centre_crop_resize(image: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (C, H, W) -> uint8 (C, size, size): the centred square of side min(H, W), resized on the image's own
    device (:func:`vicreg.image_ops.resize_images`): what :func:`decode_image` does with PIL."""
    _, h, w = image.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = resize_images(image[None, :, top:top + side, left:left + side], size)[0]  # float in [0, 1]
    return square.mul_(255).round_().to(torch.uint8)


DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error)  # what PIL raises on a broken file


def cannot_decode(path: str, e: BaseException) -> ValueError:
    return ValueError(f"cannot decode {path} ({type(e).__name__}: {first_line(e, 120)}); fix or "
                      f"remove it, or set --data.skip_bad_images true to train without the files that fail")


class ImageFiles(Dataset):
    """Images decoded on the fly: item i -> (uint8 (C, size, size) tensor, int label). A file that fails to
    decode raises one line naming it; with ``skip_bad`` the next file of the list stands in for it (the batch
    keeps its size)."""

    def __init__(self, paths: list[str], labels: list[int], size: int, grey: bool, skip_bad: bool = False):
        self.paths, self.labels, self.size, self.grey = list(paths), list(labels), size, grey
        self.skip_bad = skip_bad

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        for j in range(i, i + min(len(self.paths), 100)):
            path = self.paths[j % len(self.paths)]
            try:
                return torch.from_numpy(np.ascontiguousarray(decode_image(path, self.size, self.grey))), \
                    int(self.labels[j % len(self.paths)])
            except DECODE_ERRORS as e:
                if not self.skip_bad:
                    raise cannot_decode(path, e) from None
        raise ValueError(f"{len(self.paths) if len(self.paths) < 100 else 100} files in a row from {self.paths[i]} "
                         f"cannot be decoded: is this an image folder?")


class EncodedImages(ImageFiles):
    """JPEG files read as bytes by the DataLoader's workers and decoded a batch at a time on the training device
    (``data.decode=device``): item i -> (uint8 1-D tensor of the file, int label). ``collate`` keeps a batch's
    files as a list; ``decode_batch`` turns it into uint8 (B, C, size, size) on the device."""

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from torchvision.io import read_file

        return read_file(self.paths[i]), int(self.labels[i])

    @staticmethod
    def collate(items: list) -> tuple[list[torch.Tensor], torch.Tensor]:
        return [x for x, _ in items], torch.tensor([int(y) for _, y in items], dtype=torch.int64)

    def decode_batch(self, files: list[torch.Tensor], device: torch.device) -> torch.Tensor:
        from torchvision.io import ImageReadMode, decode_jpeg

        mode = ImageReadMode.GRAY if self.grey else ImageReadMode.RGB
        try:
            images = decode_jpeg([f.cpu() for f in files], mode=mode, device=device)
        except RuntimeError:  # one bad file fails the batch: decode one by one, and drop or name the bad ones
            images = []
            for f in files:
                try:
                    images.append(decode_jpeg(f.cpu(), mode=mode, device=device))
                except RuntimeError as e:
                    if not self.skip_bad:
                        raise cannot_decode("a file of this batch", e) from None
            if not images:
                raise ValueError("no file of a batch could be decoded: is this a folder of JPEG images?") from None
            images += [images[k % len(images)] for k in range(len(files) - len(images))]  # stand-ins, same size
        return torch.stack([centre_crop_resize(im, self.size) for im in images])

    def image(self, i: int) -> torch.Tensor:
        """Image i decoded on the CPU: uint8 (C, size, size) (shapes, normalisation statistics)."""
        return self.decode_batch([self[i][0]], torch.device("cpu"))[0]

    def subset(self, indices: list[int]) -> "EncodedImages":
        return EncodedImages([self.paths[i] for i in indices], [self.labels[i] for i in indices], self.size,
                             self.grey, self.skip_bad)


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


def _is_grey(paths: list[str], log: Log, max_checked: int = 20000) -> tuple[bool, list[str]]:
    """(True when every image is stored grey, the files whose header cannot be read), from the headers. Big
    folders: a seeded sample of 2000 is read."""
    from PIL import Image

    def mode(p: str) -> str | None:
        try:
            with Image.open(p) as im:
                return im.mode
        except DECODE_ERRORS:
            return None

    check = paths
    if len(paths) > max_checked:
        rng = np.random.default_rng(0)
        check = [paths[i] for i in rng.choice(len(paths), 2000, replace=False)]
        log(f"folder: colour mode judged from a sample of {len(check)} of {len(paths)} images")
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        modes = list(pool.map(mode, check))
    return all(m in _GREY_MODES for m in modes if m is not None), [p for p, m in zip(check, modes) if m is None]


def _decode_all(paths: list[str], size: int, grey: bool) -> tuple[torch.Tensor, list[int]]:
    """uint8 (N, C, size, size) of every file, and the indices of those that failed (left black)."""
    from tqdm.auto import tqdm

    out = torch.zeros((len(paths), 1 if grey else 3, size, size), dtype=torch.uint8)
    arr = out.numpy()
    bad: list[int] = []

    def work(i: int) -> None:
        try:
            arr[i] = decode_image(paths[i], size, grey)
        except DECODE_ERRORS:
            bad.append(i)

    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:  # PIL releases the GIL while decoding
        it = pool.map(work, range(len(paths)))
        for _ in tqdm(it, total=len(paths), desc="decoding images", unit="img", disable=len(paths) <= 2000):
            pass
    return out, sorted(bad)


def _bad_files(root: Path, bad: list[str], cfg: DataConfig, log: Log) -> None:
    """Refuse a folder with files that cannot be decoded, listing them; or, with data.skip_bad_images, say
    that they are left out."""
    if not bad:
        return
    listed = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    if not cfg.skip_bad_images:
        raise ValueError(f"image folder {root}: {len(bad)} file(s) cannot be decoded: {listed}; fix or remove them, "
                         f"or set --data.skip_bad_images true to train without them")
    log(f"folder: leaving out {len(bad)} file(s) that cannot be decoded (data.skip_bad_images): {listed}")


def _without(paths: list[str], labels: list[int], bad: set[str]) -> tuple[list[str], list[int]]:
    if not bad:
        return paths, labels
    kept = [(p, y) for p, y in zip(paths, labels) if p not in bad]
    return [p for p, _ in kept], [y for _, y in kept]


def _kept(images: torch.Tensor, labels: list[int], bad: list[int], root: Path) -> Split:
    """A decoded split without the images that failed."""
    keep = torch.tensor(sorted(set(range(len(labels))) - set(bad)), dtype=torch.int64)
    if len(labels) and not len(keep):
        raise ValueError(f"image folder {root}: no image of a split could be decoded")
    return Split(torch.tensor(labels, dtype=torch.int64)[keep], images[keep] if bad else images)


def _decode_on_device(cfg: DataConfig, paths: list[str], log: Log) -> bool:
    """data.decode for a streamed folder: True to decode each batch on the training device."""
    jpeg = all(p.lower().endswith((".jpg", ".jpeg")) for p in paths)
    if cfg.decode == "device" and not jpeg:
        raise ValueError("data.decode=device decodes JPEG files only, and this folder has other images; use "
                         "data.decode=workers (or auto)")
    on_device = cfg.decode == "device" or (cfg.decode == "auto" and jpeg and torch.cuda.is_available())
    where = "read by the workers and decoded on the training device" if on_device else "decoded by the workers"
    log(f"folder: images {where} (data.decode={cfg.decode})")
    return on_device


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
    grey, bad = _is_grey(train_paths + test_paths, log)
    channels = 1 if grey else 3
    decoded = (len(train_paths) + len(test_paths)) * channels * size * size
    if decoded <= FOLDER_IN_MEMORY_LIMIT:  # decode everything now: every bad file is found, and listed at once
        (train_images, train_bad), (test_images, test_bad) = (_decode_all(train_paths, size, grey),
                                                              _decode_all(test_paths, size, grey))
        _bad_files(root, [train_paths[i] for i in train_bad] + [test_paths[i] for i in test_bad], cfg, log)
        train = _kept(train_images, train_labels, train_bad, root)
        test = _kept(test_images, test_labels, test_bad, root)
    else:
        log(f"folder: {decoded / 1e9:.1f} GB decoded would exceed {FOLDER_IN_MEMORY_LIMIT / 1e9:.1f} GB; images "
            f"are decoded on the fly (streamed)")
        _bad_files(root, bad, cfg, log)  # the headers read (a sample of a big folder); the rest fail when read
        train_paths, train_labels = _without(train_paths, train_labels, set(bad))
        test_paths, test_labels = _without(test_paths, test_labels, set(bad))
        files = EncodedImages if _decode_on_device(cfg, train_paths + test_paths, log) else ImageFiles
        train, test = (Split(torch.tensor(y, dtype=torch.int64), None, files(p, y, size, grey, cfg.skip_bad_images))
                       for p, y in ((train_paths, train_labels), (test_paths, test_labels)))
    return make_dataset("folder", classes, train, test, how, log)
