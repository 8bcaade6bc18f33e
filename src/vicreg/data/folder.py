"""A folder of images in torchvision's ImageFolder layout: decoded, resized and centre-cropped into memory,
or decoded on the fly when they would not fit (``FOLDER_IN_MEMORY_LIMIT``)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..augment import resize_images
from ..config import DataConfig
from .dataset import ImageDataset, Log, Split, make_dataset

FOLDER_IN_MEMORY_LIMIT = 2 * 1024**3  # decoded bytes above which an image folder is streamed
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


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
        a = np.array(im, dtype=np.uint8)  # a writable copy
    return a[None] if grey else a.transpose(2, 0, 1)


def centre_crop_resize(image: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (C, H, W) -> uint8 (C, size, size): the centred square of side min(H, W), resized on the image's own
    device (:func:`vicreg.augment.resize_images`): what :func:`decode_image` does with PIL."""
    _, h, w = image.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = resize_images(image[None, :, top:top + side, left:left + side], size)[0]  # float in [0, 1]
    return square.mul_(255).round_().to(torch.uint8)


class ImageFiles(Dataset):
    """Images decoded on the fly: item i -> (uint8 (C, size, size) tensor, int label)."""

    def __init__(self, paths: list[str], labels: list[int], size: int, grey: bool):
        self.paths, self.labels, self.size, self.grey = list(paths), list(labels), size, grey

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(np.ascontiguousarray(decode_image(self.paths[i], self.size, self.grey))), \
            int(self.labels[i])


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
        images = decode_jpeg([f.cpu() for f in files], mode=mode, device=device)
        return torch.stack([centre_crop_resize(im, self.size) for im in images])

    def image(self, i: int) -> torch.Tensor:
        """Image i decoded on the CPU: uint8 (C, size, size) (shapes, normalisation statistics)."""
        return self.decode_batch([self[i][0]], torch.device("cpu"))[0]

    def subset(self, indices: list[int]) -> "EncodedImages":
        return EncodedImages([self.paths[i] for i in indices], [self.labels[i] for i in indices], self.size,
                             self.grey)


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
    grey = _is_grey(train_paths + test_paths, log)
    channels = 1 if grey else 3
    decoded = (len(train_paths) + len(test_paths)) * channels * size * size
    if decoded > FOLDER_IN_MEMORY_LIMIT:
        log(f"folder: {decoded / 1e9:.1f} GB decoded would exceed {FOLDER_IN_MEMORY_LIMIT / 1e9:.1f} GB; images "
            f"are decoded on the fly (streamed)")

        files = EncodedImages if _decode_on_device(cfg, train_paths + test_paths, log) else ImageFiles

        def split(p: list[str], y: list[int]) -> Split:
            return Split(torch.tensor(y, dtype=torch.int64), None, files(p, y, size, grey))
    else:

        def split(p: list[str], y: list[int]) -> Split:
            return Split(torch.tensor(y, dtype=torch.int64), _decode_all(p, size, grey))

    return make_dataset("folder", classes, split(train_paths, train_labels), split(test_paths, test_labels), how, log)
