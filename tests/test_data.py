"""Dataset loaders on tiny copies written in the real on-disk formats, and Batches (order, resume, streaming).

Nothing here downloads: torchvision's download is replaced by a fake where the download path is tested.
"""

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

import vicreg.data.download as download
import vicreg.data.folder as folder_loader
import vicreg.data.images as image_loaders
from vicreg.config import DataConfig
from vicreg.data import Batches, Split, epoch_permutation, load_dataset, read_idx, spread_subset
from vicreg.data.dataset import source_image
from vicreg.errors import DownloadFailed

CPU = torch.device("cpu")
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def quiet(_msg: str) -> None:
    pass


def cfg(**kw) -> DataConfig:
    kw.setdefault("download", False)
    return DataConfig(**kw)


# --------------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)
# --------------------------------------------------------------------------------------------


def write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    raw = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(raw)
    else:
        Path(path).write_bytes(raw)


def write_idx_set(folder: Path, gz: bool, seed: int = 0) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (7, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 7, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 3, dtype=np.uint8),
    }
    for name, arr in arrays.items():
        write_idx(folder / name, arr, gz)
    return arrays


def check_idx(ds, arrays) -> None:
    assert ds.channels == 1 and ds.image_size == 28 and len(ds.classes) == 10
    assert ds.train.images.dtype == torch.uint8 and ds.train.images.shape == (7, 1, 28, 28)
    assert torch.equal(ds.train.images[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert ds.train.labels.dtype == torch.int64
    assert ds.train.labels.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert torch.equal(ds.test.images[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"]))
    assert ds.test.labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert ds.train_labeled is ds.train


def test_fashion_mnist_gz_round_trip(tmp_path):
    arrays = write_idx_set(tmp_path, gz=True)
    lines = []
    ds = load_dataset(cfg(dataset="fashion-mnist", data_dir=str(tmp_path)), log=lines.append)
    check_idx(ds, arrays)
    assert ds.name == "fashion-mnist" and ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    assert len(lines) == 1 and "7 train / 3 test" in lines[0] and "1x28x28" in lines[0] and str(tmp_path) in lines[0]


def test_mnist_raw_in_torchvision_subfolder(tmp_path):
    arrays = write_idx_set(tmp_path / "MNIST" / "raw", gz=False, seed=1)
    ds = load_dataset(cfg(dataset="mnist", data_dir=str(tmp_path)), log=quiet)
    check_idx(ds, arrays)
    assert ds.classes[3] == "3 - three"


def test_idx_corrupt_files(tmp_path):
    good = np.arange(12, dtype=np.uint8).reshape(3, 2, 2)
    write_idx(tmp_path / "ok", good, gz=True)
    assert np.array_equal(read_idx(str(tmp_path / "ok") + ".gz", ndim=3), good)
    (tmp_path / "bad_magic").write_bytes(b"\x12\x34\x08\x03" + bytes(16))
    with pytest.raises(ValueError, match="corrupt IDX file.*bad_magic.*magic"):
        read_idx(tmp_path / "bad_magic")
    raw = (tmp_path / "ok.gz").read_bytes()
    (tmp_path / "truncated").write_bytes(gzip.decompress(raw)[:-3])
    with pytest.raises(ValueError, match="corrupt IDX file.*12 bytes, file holds 9"):
        read_idx(tmp_path / "truncated")
    (tmp_path / "not.gz").write_bytes(raw[:10])  # gzip magic, broken stream
    with pytest.raises(ValueError, match="corrupt IDX file"):
        read_idx(tmp_path / "not.gz")
    with pytest.raises(ValueError, match="3 dimensions, expected 1"):
        read_idx(str(tmp_path / "ok") + ".gz", ndim=1)

    # a whole dataset with one corrupt member
    arrays = write_idx_set(tmp_path / "set", gz=False)
    (tmp_path / "set" / "train-labels-idx1-ubyte").write_bytes(b"\xff" * 20)
    with pytest.raises(ValueError, match="corrupt IDX file.*train-labels-idx1-ubyte"):
        load_dataset(cfg(dataset="mnist", data_dir=str(tmp_path / "set")), log=quiet)
    assert arrays


def test_missing_datasets_name_where_they_looked(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    for name in ("mnist", "cifar10", "cifar100", "stl10"):
        with pytest.raises(FileNotFoundError, match=str(missing)):
            load_dataset(cfg(dataset=name, data_dir=str(missing)), log=quiet)
    monkeypatch.setitem(download.SYSTEM_DIRS, "fashion-mnist", [str(tmp_path / "system")])
    with pytest.raises(FileNotFoundError) as e:
        load_dataset(cfg(dataset="fashion-mnist", data_dir=str(missing)), log=quiet)
    msg = str(e.value)
    assert "\n" not in msg and str(missing) in msg and str(tmp_path / "system") in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "--data.download true" in msg
    with pytest.raises(FileNotFoundError, match="image folder"):
        load_dataset(cfg(dataset="folder", data_dir=str(missing)), log=quiet)


def test_download_goes_through_torchvision(tmp_path, monkeypatch):
    """download=True calls torchvision's dataset class (faked here: it writes the raw files) and reads them."""
    import torchvision.datasets as tvd

    calls = []

    class FakeMNIST:
        def __init__(self, root, train=True, download=False):
            calls.append((root, download))
            write_idx_set(Path(root) / "MNIST" / "raw", gz=True, seed=3)

    monkeypatch.setattr(tvd, "MNIST", FakeMNIST)
    ds = load_dataset(DataConfig(dataset="mnist", data_dir=str(tmp_path / "dl"), download=True), log=quiet)
    assert calls == [(str(tmp_path / "dl"), True)]
    check_idx(ds, write_idx_set(tmp_path / "again", gz=False, seed=3))

    class Offline:
        def __init__(self, root, train=True, download=False):
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nno network")

    monkeypatch.setattr(tvd, "MNIST", Offline)
    with pytest.raises(DownloadFailed, match="downloading mnist into .*off.* failed \\(RuntimeError: Error "
                       "downloading"):  # an OSError: the command says it in one line
        load_dataset(DataConfig(dataset="mnist", data_dir=str(tmp_path / "off"), download=True), log=quiet)


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason=f"{FASHION_DIR} absent (apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist(tmp_path):
    lines = []
    ds = load_dataset(cfg(dataset="fashion-mnist", data_dir=str(tmp_path)), log=lines.append)  # empty data_dir
    assert str(FASHION_DIR) in lines[0]
    assert len(ds.train) == 60000 and len(ds.test) == 10000
    assert ds.train.images.shape == (60000, 1, 28, 28) and ds.test.images.shape == (10000, 1, 28, 28)
    assert (ds.channels, ds.image_size) == (1, 28)
    assert torch.bincount(ds.train.labels).tolist() == [6000] * 10
    assert torch.bincount(ds.test.labels).tolist() == [1000] * 10
    assert ds.test.labels[:5].tolist() == [9, 2, 1, 1, 6]  # the first test items: ankle boot, pullover, ...


# --------------------------------------------------------------------------------------------
# CIFAR
# --------------------------------------------------------------------------------------------


def dump(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def test_cifar10_python_format(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    train_x, train_y = [], []
    for i in range(1, 6):  # bytes keys, as the real (Python 2) pickles load
        x = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, 2)]
        dump(folder / f"data_batch_{i}", {b"batch_label": b"training batch", b"data": x, b"labels": y})
        train_x.append(x)
        train_y += y
    test_x = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
    dump(folder / "test_batch", {b"data": test_x, b"labels": [4, 0, 9]})
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    dump(folder / "batches.meta", {b"label_names": names, b"num_vis": 3072})

    for data_dir in (tmp_path, folder):  # the parent or the extracted folder itself
        lines = []
        ds = load_dataset(cfg(dataset="cifar10", data_dir=str(data_dir)), log=lines.append)
        assert ds.train.images.shape == (10, 3, 32, 32) and ds.test.images.shape == (3, 3, 32, 32)
        assert torch.equal(ds.train.images, torch.from_numpy(np.concatenate(train_x).reshape(10, 3, 32, 32)))
        assert ds.train.labels.tolist() == train_y
        assert torch.equal(ds.test.images.reshape(3, -1), torch.from_numpy(test_x))
        assert ds.test.labels.tolist() == [4, 0, 9]
        assert ds.classes[1] == "automobile" and len(ds.classes) == 10 and ds.channels == 3 and ds.image_size == 32
        assert len(lines) == 1 and str(folder) in lines[0] and "10 train / 3 test" in lines[0]
    # pixel (c=0, h=0, w=1) is byte 1 of the row; (c=1, h=0, w=0) is byte 1024
    assert ds.train.images[0, 0, 0, 1] == train_x[0][0, 1] and ds.train.images[0, 1, 0, 0] == train_x[0][0, 1024]

    (folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="corrupt CIFAR file.*test_batch"):
        load_dataset(cfg(dataset="cifar10", data_dir=str(folder)), log=quiet)


def test_cifar100_python_format(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
    xt = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
    # str keys (a Python 3 pickle): accepted as well as bytes keys
    dump(folder / "train", {"data": x, "fine_labels": [99, 0, 42, 7], "coarse_labels": [19, 0, 1, 2]})
    dump(folder / "test", {"data": xt, "fine_labels": [5, 6], "coarse_labels": [0, 0]})
    dump(folder / "meta", {"fine_label_names": [f"fine{i}" for i in range(100)],
                           "coarse_label_names": [f"coarse{i}" for i in range(20)]})
    ds = load_dataset(cfg(dataset="cifar100", data_dir=str(tmp_path)), log=quiet)
    assert torch.equal(ds.train.images, torch.from_numpy(x.reshape(4, 3, 32, 32)))
    assert ds.train.labels.tolist() == [99, 0, 42, 7] and ds.test.labels.tolist() == [5, 6]
    assert len(ds.classes) == 100 and ds.classes[42] == "fine42"


class _Payload:
    """What a crafted pickle carries: code that runs when a plain pickle.load builds the object."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def _cifar10_files(folder: Path, protocol: int = 2, meta: dict | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    x = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": x, "labels": [1, 2]}, f, protocol=protocol)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta if meta is not None else {"label_names": [f"c{i}" for i in range(10)]}, f, protocol=protocol)


def test_cifar_batches_of_any_pickle_protocol_are_read(tmp_path):
    for protocol in (2, 4, 5):  # numpy arrays pickle differently from protocol 5 on (_frombuffer)
        _cifar10_files(tmp_path / f"p{protocol}" / "cifar-10-batches-py", protocol)
        ds = load_dataset(cfg(dataset="cifar10", data_dir=str(tmp_path / f"p{protocol}")), log=quiet)
        assert ds.train.images.shape == (10, 3, 32, 32) and ds.classes[9] == "c9"


def test_a_crafted_cifar_file_is_refused_without_running_its_payload(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _cifar10_files(folder)
    marker = tmp_path / "marker"
    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({"data": _Payload(marker), "labels": [1]}, f, protocol=2)
    with pytest.raises(ValueError, match=r"refused .*data_batch_3: not a plain CIFAR batch \(it asks for "
                                         r"(__builtin__|builtins).exec; only numpy arrays"):
        load_dataset(cfg(dataset="cifar10", data_dir=str(folder)), log=quiet)
    assert not marker.exists()  # the payload never ran
    with open(marker.parent / "check", "wb") as f:  # the same file under plain pickle.load would have run it
        pickle.dump(_Payload(marker), f)
    with open(marker.parent / "check", "rb") as f:
        pickle.load(f)
    assert marker.read_text() == "ran"


def test_a_cifar_file_that_forges_an_object_dtype_is_refused(tmp_path):
    """A structured dtype with an object field and its flags cleared would make numpy read a pointer from
    the file's bytes (found in review): the unpickler builds only plain numeric arrays."""
    import struct

    forged = np.dtype([("a", "O")])
    state = list(forged.__reduce__()[2])
    state[-1] = 0
    forged.__setstate__(tuple(state))
    target = "an object at an address the file names"

    class Forged:
        def __reduce__(self):
            from numpy._core.multiarray import _reconstruct

            return _reconstruct, (np.ndarray, (0,), b"b"), (1, (1,), forged, False, struct.pack("<Q", id(target)))

    folder = tmp_path / "cifar-10-batches-py"
    _cifar10_files(folder)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": Forged(), "labels": [0]}, f, protocol=2)
    with pytest.raises(ValueError, match=r"refused .*test_batch: not a plain CIFAR batch \(a dtype of kind 'V'"):
        load_dataset(cfg(dataset="cifar10", data_dir=str(folder)), log=quiet)
    for code in ("O", "V8", "U3", "M8[s]"):  # object, void, string and time dtypes are refused alike
        with open(folder / "test_batch", "wb") as f:
            pickle.dump({"data": np.zeros(2, dtype=code) if code != "O" else np.array([None, 1], dtype=object),
                         "labels": [0]}, f, protocol=2)
        with pytest.raises(ValueError, match="not a plain CIFAR batch"):
            load_dataset(cfg(dataset="cifar10", data_dir=str(folder)), log=quiet)


def test_a_cifar_meta_file_without_class_names_is_one_line(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _cifar10_files(folder, meta={"num_vis": 3072})
    with pytest.raises(ValueError, match=r"corrupt CIFAR file .*batches.meta: no list of class names under "
                                         r"'label_names' \(found keys: num_vis\)"):
        load_dataset(cfg(dataset="cifar10", data_dir=str(folder)), log=quiet)


# --------------------------------------------------------------------------------------------
# STL-10
# --------------------------------------------------------------------------------------------


def test_stl10_binary_orientation_and_unlabeled(tmp_path):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (3, 3, 96, 96), dtype=np.uint8)  # (N, C, H, W) as the model should see it
    train[0, :, 0, 10] = 255  # asymmetric: bright at row 0, column 10; dark at row 10, column 0
    train[0, :, 10, 0] = 0
    test = rng.integers(0, 256, (2, 3, 96, 96), dtype=np.uint8)
    unl = rng.integers(0, 256, (4, 3, 96, 96), dtype=np.uint8)

    def col_major(a):  # the file stores each channel column by column
        return np.ascontiguousarray(a.transpose(0, 1, 3, 2)).tobytes()

    (folder / "train_X.bin").write_bytes(col_major(train))
    (folder / "train_y.bin").write_bytes(bytes([1, 5, 10]))
    (folder / "test_X.bin").write_bytes(col_major(test))
    (folder / "test_y.bin").write_bytes(bytes([2, 3]))
    (folder / "unlabeled_X.bin").write_bytes(col_major(unl))
    (folder / "class_names.txt").write_text("\n".join(image_loaders.STL10_CLASSES) + "\n")

    lines = []
    ds = load_dataset(cfg(dataset="stl10", data_dir=str(tmp_path)), log=lines.append)
    assert ds.train.images.shape == (7, 3, 96, 96) and ds.image_size == 96 and ds.channels == 3
    assert ds.train.images[0, 0, 0, 10] == 255 and ds.train.images[0, 0, 10, 0] == 0
    assert torch.equal(ds.train.images, torch.from_numpy(np.concatenate([train, unl])))
    assert ds.train.labels.tolist() == [0, 4, 9, -1, -1, -1, -1]
    assert ds.train_labeled is not ds.train and len(ds.train_labeled) == 3
    assert torch.equal(ds.train_labeled.images, torch.from_numpy(train))
    assert ds.train_labeled.labels.tolist() == [0, 4, 9]
    assert torch.equal(ds.test.images, torch.from_numpy(test)) and ds.test.labels.tolist() == [1, 2]
    assert ds.classes == image_loaders.STL10_CLASSES
    assert len(lines) == 1 and "7 train (3 labelled + 4 unlabeled) / 2 test" in lines[0]

    (folder / "unlabeled_X.bin").write_bytes(b"\0" * 100)
    with pytest.raises(ValueError, match="unlabeled_X.bin.*not a whole number"):
        load_dataset(cfg(dataset="stl10", data_dir=str(folder)), log=quiet)


# --------------------------------------------------------------------------------------------
# Image folder
# --------------------------------------------------------------------------------------------

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def stripes(w: int = 42, h: int = 10) -> Image.Image:
    """Left third red, middle green, right third blue: the centre square crop (columns 16..26) is all green."""
    a = np.zeros((h, w, 3), dtype=np.uint8)
    a[:, : w // 3] = RED
    a[:, w // 3: 2 * w // 3] = GREEN
    a[:, 2 * w // 3:] = BLUE
    return Image.fromarray(a)


def solid(colour, size=(12, 16), mode="RGB") -> Image.Image:
    return Image.new(mode, size, colour)


def make_folder(root: Path, counts: dict[str, int], mode="RGB") -> None:
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True)
        for i in range(n):
            if mode == "L":
                solid(40 * i + (100 if cls == "dog" else 0), mode="L").save(root / cls / f"{i}.png")
            elif cls == "cat":
                stripes().save(root / cls / f"{i}.png")
            else:
                solid(BLUE).save(root / cls / f"{i}.PNG")
    (root / counts.__iter__().__next__() / "notes.txt").write_text("not an image")


def test_folder_stratified_split(tmp_path):
    make_folder(tmp_path, {"cat": 4, "dog": 4})
    lines = []
    ds = load_dataset(cfg(dataset="folder", data_dir=str(tmp_path), image_size=8), log=lines.append)
    assert ds.classes == ["cat", "dog"] and ds.channels == 3 and ds.image_size == 8
    assert len(ds.train) == 6 and len(ds.test) == 2
    assert ds.train.images.shape == (6, 3, 8, 8) and ds.train.images.dtype == torch.uint8
    assert torch.bincount(ds.train.labels).tolist() == [3, 3] and torch.bincount(ds.test.labels).tolist() == [1, 1]
    for split in (ds.train, ds.test):
        cats = split.images[split.labels == 0].float()  # the 42x10 stripes: centre crop is green
        dogs = split.images[split.labels == 1].float()
        assert (cats[:, 1] == 255).all() and cats[:, 0].max() < 1 and cats[:, 2].max() < 1
        assert (dogs[:, 2] == 255).all() and dogs[:, :2].max() < 1
    assert "6 train / 2 test" in lines[0] and "3x8x8" in lines[0] and str(tmp_path) in lines[0]
    # the same seed gives the same split; default size is 64
    ds2 = load_dataset(cfg(dataset="folder", data_dir=str(tmp_path)), log=quiet)
    assert ds2.train.labels.tolist() == ds.train.labels.tolist() and ds2.image_size == 64
    assert ds2.train.images.shape == (6, 3, 64, 64)


def test_folder_train_test_subfolders_and_grey(tmp_path):
    make_folder(tmp_path / "train", {"cat": 2, "dog": 3}, mode="L")
    make_folder(tmp_path / "val", {"dog": 1}, mode="L")  # val/ stands in for test/; fewer classes is fine
    ds = load_dataset(cfg(dataset="folder", data_dir=str(tmp_path), image_size=10), log=quiet)
    assert ds.classes == ["cat", "dog"] and ds.channels == 1
    assert ds.train.images.shape == (5, 1, 10, 10) and ds.test.images.shape == (1, 1, 10, 10)
    assert ds.train.labels.tolist() == [0, 0, 1, 1, 1] and ds.test.labels.tolist() == [1]
    assert ds.train.images[:, 0, 0, 0].tolist() == [0, 40, 100, 140, 180]  # solid grey levels kept exactly
    # one colour image makes the whole dataset RGB
    solid(GREEN).save(tmp_path / "val" / "dog" / "x.png")
    assert load_dataset(cfg(dataset="folder", data_dir=str(tmp_path), image_size=10), log=quiet).channels == 3


def test_folder_streamed_when_too_big(tmp_path, monkeypatch):
    make_folder(tmp_path, {"cat": 4, "dog": 4})
    in_memory = load_dataset(cfg(dataset="folder", data_dir=str(tmp_path), image_size=8), log=quiet)
    monkeypatch.setattr(folder_loader, "FOLDER_IN_MEMORY_LIMIT", 100)
    ds = load_dataset(cfg(dataset="folder", data_dir=str(tmp_path), image_size=8), log=quiet)
    assert ds.train.images is None and len(ds.train.source) == 6 and ds.image_size == 8 and ds.channels == 3
    image, label = ds.train.source[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 8, 8) and label == int(ds.train.labels[0])
    streamed = torch.stack([ds.train.source[i][0] for i in range(6)])
    assert torch.equal(streamed, in_memory.train.images)
    b = Batches(ds.train, 4, CPU, shuffle=False, drop_last=False, num_workers=0, log=quiet)
    assert not b.resident
    got = list(b.epoch(0))
    assert torch.equal(torch.cat([x for x, _ in got]), streamed) and [len(x) for x, _ in got] == [4, 2]
    with pytest.raises(ValueError, match="placement 'device'.*streamed"):
        Batches(ds.train, 4, CPU, shuffle=False, drop_last=False, placement="device", log=quiet)


def _spoil(root: Path) -> tuple[str, str]:
    """A text file named .jpg (its header fails) and a PNG cut in half (its header reads, its pixels fail)."""
    text = root / "cat" / "0.png"
    text.write_text("not an image at all")
    png = root / "dog" / "1.PNG"
    stripes().resize((64, 64)).save(png)  # big enough that half of it lacks pixel data
    png.write_bytes(png.read_bytes()[: len(png.read_bytes()) // 2])
    return str(text), str(png)


def test_a_folder_with_bad_files_lists_them_or_trains_without_them(tmp_path):
    make_folder(tmp_path, {"cat": 4, "dog": 4})
    text, png = _spoil(tmp_path)
    with pytest.raises(ValueError, match=r"image folder .*: 2 file\(s\) cannot be decoded: .*(0.png|1.PNG).*; fix or "
                                         r"remove them, or set --data.skip_bad_images true") as e:
        load_dataset(cfg(dataset="folder", data_dir=str(tmp_path), image_size=8), log=quiet)
    assert text in str(e.value) and "\n" not in str(e.value)
    lines = []
    ds = load_dataset(cfg(dataset="folder", data_dir=str(tmp_path), image_size=8, skip_bad_images=True),
                      log=lines.append)
    assert len(ds.train) + len(ds.test) == 6
    assert any("leaving out 2 file(s) that cannot be decoded" in line and text in line for line in lines)


def test_a_streamed_folder_names_a_bad_file_in_one_line_or_goes_on(tmp_path, monkeypatch):
    make_folder(tmp_path, {"cat": 4, "dog": 4})
    _, png = _spoil(tmp_path)
    (tmp_path / "cat" / "0.png").unlink()
    monkeypatch.setattr(folder_loader, "FOLDER_IN_MEMORY_LIMIT", 100)
    ds = load_dataset(cfg(dataset="folder", data_dir=str(tmp_path), image_size=8, test_fraction=0.5), log=quiet)
    split = ds.train if png in ds.train.source.paths else ds.test
    b = Batches(split, 4, CPU, shuffle=False, drop_last=False, num_workers=0, log=quiet)
    with pytest.raises(ValueError, match=f"cannot decode {png} \\(") as e:
        list(b.epoch(0))
    assert "\n" not in str(e.value)
    ds = load_dataset(cfg(dataset="folder", data_dir=str(tmp_path), image_size=8, test_fraction=0.5,
                          skip_bad_images=True), log=quiet)
    split = ds.train if png in ds.train.source.paths else ds.test
    got = list(Batches(split, 4, CPU, shuffle=False, drop_last=False, num_workers=0, log=quiet).epoch(0))
    assert sum(len(x) for x, _ in got) == len(split)  # the next file stands in: the batches keep their size


def test_an_error_in_a_loader_worker_comes_back_as_its_own_line():
    from vicreg.data.batches import _one_line_errors

    class Worker:  # how torch's DataLoader re-raises what a worker raised: the worker's traceback in the message
        def __iter__(self):
            yield 1
            raise ValueError("Caught ValueError in DataLoader worker process 0.\nOriginal Traceback (most recent "
                             "call last):\n  File \"x.py\", line 1\nValueError: cannot decode a.png (OSError: bad)")

    got = _one_line_errors(Worker())
    assert next(got) == 1
    with pytest.raises(ValueError) as e:
        next(got)
    assert str(e.value) == "cannot decode a.png (OSError: bad)"


@pytest.mark.parametrize("grey", [False, True])
def test_jpeg_folder_decoded_on_the_device_a_batch_at_a_time(tmp_path, monkeypatch, grey):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(5):  # smooth pictures of several sizes, so JPEG keeps them close to what was drawn
            h, w = 20 + 4 * i, 28 - 2 * i
            base = rng.integers(40, 215, size=3 if not grey else 1)
            ramp = np.linspace(0, 40, w)[None, :, None] + np.linspace(0, 20, h)[:, None, None]
            pixels = np.clip(base[None, None, :] + ramp, 0, 255).astype(np.uint8)
            image = Image.fromarray(pixels[..., 0] if grey else pixels, "L" if grey else "RGB")
            image.save(tmp_path / cls / f"{i}.jpg")
    monkeypatch.setattr(folder_loader, "FOLDER_IN_MEMORY_LIMIT", 100)  # streamed
    lines = []
    workers = load_dataset(cfg(dataset="folder", data_dir=str(tmp_path), image_size=12, decode="workers"),
                           log=lines.append)
    device = load_dataset(cfg(dataset="folder", data_dir=str(tmp_path), image_size=12, decode="device"),
                          log=lines.append)
    assert any("decoded on the training device (data.decode=device)" in line for line in lines)
    assert device.channels == (1 if grey else 3) and device.image_size == 12
    common = dict(shuffle=True, drop_last=True, num_workers=0, seed=1, log=quiet)
    for (a, ya), (b, yb) in zip(Batches(workers.train, 4, CPU, **common).epoch(0),
                                Batches(device.train, 4, CPU, **common).epoch(0)):
        assert b.dtype == torch.uint8 and b.shape == a.shape == (4, 1 if grey else 3, 12, 12)
        assert torch.equal(ya, yb)  # the same images in the same order
        # PIL and torchvision decode and resample a little differently: a few grey levels on smooth pictures
        assert (a.float() - b.float()).abs().mean() < 3.0
    assert len(spread_subset(device.test, 2).source) == 2 and source_image(device.train.source, 0).shape[0] in (1, 3)


def test_decoding_on_the_device_needs_jpeg_files(tmp_path, monkeypatch):
    make_folder(tmp_path, {"cat": 4, "dog": 4})  # PNG files
    monkeypatch.setattr(folder_loader, "FOLDER_IN_MEMORY_LIMIT", 100)
    with pytest.raises(ValueError, match="data.decode=device decodes JPEG files only"):
        load_dataset(cfg(dataset="folder", data_dir=str(tmp_path), image_size=8, decode="device"), log=quiet)


# --------------------------------------------------------------------------------------------
# digits, registry
# --------------------------------------------------------------------------------------------


def test_digits_split():
    from sklearn.datasets import load_digits

    lines = []
    ds = load_dataset(cfg(dataset="digits"), log=lines.append)
    assert len(ds.train) == 1347 and len(ds.test) == 450
    assert ds.train.images.shape == (1347, 1, 8, 8) and ds.train.images.dtype == torch.uint8
    assert ds.classes == [str(i) for i in range(10)] and ds.channels == 1 and ds.image_size == 8
    assert int(ds.train.images.max()) == 255 and int(ds.train.images.min()) == 0
    levels = set(np.round(np.arange(17) * 255 / 16).astype(int).tolist())
    assert set(ds.train.images.unique().tolist()) <= levels
    totals = np.bincount(load_digits().target)
    test_counts = torch.bincount(ds.test.labels, minlength=10).numpy()
    assert test_counts.sum() == 450 and np.all(np.abs(test_counts - 0.25 * totals) <= 1)  # stratified
    assert lines == ["digits: 1347 train / 450 test images, 1x8x8, 10 classes, from scikit-learn (bundled)"]
    other = load_dataset(cfg(dataset="digits", split_seed=1, test_fraction=0.5), log=quiet)
    assert len(other.test) == 899 and other.test.labels.tolist() != ds.test.labels[:899].tolist()


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet' .*digits, fashion-mnist, mnist, cifar10"):
        load_dataset(cfg(dataset="imagenet"), log=quiet)


# --------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------

N = 103


def numbered_split(n: int = N) -> Split:
    """Image i is filled with the value i, its label is i: batches can be read back exactly."""
    images = torch.arange(n, dtype=torch.uint8)[:, None, None, None].expand(n, 1, 2, 3).contiguous()
    return Split(torch.arange(n), images)


def collect(batches, epoch, start=0):
    out = [(x.clone(), y.clone()) for x, y in batches.epoch(epoch, start)]
    for x, y in out:
        assert x.dtype == torch.uint8 and y.dtype == torch.int64 and x.shape[1:] == (1, 2, 3)
        assert torch.equal(x[:, 0, 0, 0].long(), y)  # images travel with their labels
    return out


def order(batches_list):
    return torch.cat([y for _, y in batches_list]).tolist() if batches_list else []


def test_resident_shuffled_epoch_is_a_permutation():
    b = Batches(numbered_split(), 10, CPU, shuffle=True, drop_last=True, seed=3, log=quiet)
    assert b.resident and len(b) == 10
    got = collect(b, 0)
    assert [len(y) for _, y in got] == [10] * 10
    seen = order(got)
    assert len(set(seen)) == 100 and set(seen) <= set(range(N))  # each index at most once
    assert seen == epoch_permutation(N, 3, 0)[:100].tolist()
    assert seen != sorted(seen)

    full = Batches(numbered_split(), 10, CPU, shuffle=True, drop_last=False, seed=3, log=quiet)
    assert len(full) == 11
    got = collect(full, 0)
    assert [len(y) for _, y in got] == [10] * 10 + [3] and sorted(order(got)) == list(range(N))


def test_order_depends_on_seed_and_epoch_only():
    a = Batches(numbered_split(), 16, CPU, shuffle=True, drop_last=True, seed=7, log=quiet)
    b = Batches(numbered_split(), 16, CPU, shuffle=True, drop_last=True, seed=7, log=quiet)
    torch.manual_seed(123)  # the global RNG plays no part
    assert order(collect(a, 5)) == order(collect(b, 5))
    assert order(collect(a, 5)) != order(collect(a, 6))
    c = Batches(numbered_split(), 16, CPU, shuffle=True, drop_last=True, seed=8, log=quiet)
    assert order(collect(a, 5)) != order(collect(c, 5))
    assert torch.equal(epoch_permutation(50, 7, 5), epoch_permutation(50, 7, 5))


def test_start_skips_exactly_the_first_batches():
    b = Batches(numbered_split(), 10, CPU, shuffle=True, drop_last=False, seed=1, log=quiet)
    full = collect(b, 4)
    for start in (0, 1, 7, 10, 11):
        rest = collect(b, 4, start)
        assert len(rest) == 11 - start
        assert all(torch.equal(x, fx) and torch.equal(y, fy) for (x, y), (fx, fy) in zip(rest, full[start:]))
    with pytest.raises(ValueError, match=r"batches 12\.\.11 are outside 0\.\.11"):
        list(b.epoch(0, 12))


@pytest.mark.parametrize("placement", ["device", "stream"])
def test_stop_ends_before_a_batch_and_contiguous_runs_make_the_whole_epoch(placement):
    """What a data-parallel evaluation does: process r of w takes batches [n*r//w, n*(r+1)//w)."""
    b = Batches(numbered_split(), 10, CPU, shuffle=False, drop_last=False, placement=placement, num_workers=0,
                log=quiet)
    whole = order(collect(b, 0))
    for world in (2, 3, 12):  # 12 > 11 batches: a process with no batches
        runs = [order(list(b.epoch(0, len(b) * r // world, len(b) * (r + 1) // world))) for r in range(world)]
        assert sum(runs, []) == whole
    assert order(list(b.epoch(0, 2, 4))) == list(range(20, 40))
    with pytest.raises(ValueError, match=r"batches 3\.\.2 are outside"):
        b.epoch(0, 3, 2)


def test_unshuffled_batches_keep_the_split_order():
    b = Batches(numbered_split(), 25, CPU, shuffle=False, drop_last=False, log=quiet)
    got = collect(b, 9)
    assert order(got) == list(range(N)) and [len(y) for _, y in got] == [25, 25, 25, 25, 3]
    assert order(collect(b, 0, start=4)) == list(range(100, N))


@pytest.mark.parametrize("shuffle,drop_last", [(True, True), (True, False), (False, False)])
def test_streamed_matches_resident(shuffle, drop_last):
    split = numbered_split()
    resident = Batches(split, 8, CPU, shuffle=shuffle, drop_last=drop_last, seed=11, log=quiet)
    streamed = Batches(split, 8, CPU, shuffle=shuffle, drop_last=drop_last, seed=11, placement="stream",
                       num_workers=0, log=quiet)
    assert resident.resident and not streamed.resident and len(resident) == len(streamed)
    for epoch, start in ((0, 0), (3, 0), (3, 5)):
        r, s = collect(resident, epoch, start), collect(streamed, epoch, start)
        assert len(r) == len(s) == len(resident) - start
        assert all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(r, s))


class Numbered(Dataset):
    """A streamed-only source: item i -> (uint8 image filled with i, i)."""

    def __len__(self):
        return N

    def __getitem__(self, i):
        return torch.full((1, 2, 3), i, dtype=torch.uint8), i


def test_streamed_source_with_a_worker_resumes_mid_epoch():
    """A persistent worker: an epoch abandoned half-way, then a resumed one, give the right batches."""
    split = Split(torch.arange(N), None, Numbered())
    b = Batches(split, 10, CPU, shuffle=True, drop_last=True, seed=2, num_workers=1, log=quiet)
    assert not b.resident and len(b) == 10
    expected = epoch_permutation(N, 2, 1)[:100].tolist()
    first = b.epoch(1)
    for _ in range(3):
        next(first)  # abandoned after three batches, like an interrupted run
    assert order(collect(b, 1, start=3)) == expected[30:]
    assert order(collect(b, 1)) == expected


def test_placement_checks():
    split = numbered_split()
    with pytest.raises(ValueError, match="placement='gpu'"):
        Batches(split, 8, CPU, shuffle=False, drop_last=False, placement="gpu", log=quiet)
    assert Batches(split, 8, CPU, shuffle=False, drop_last=False, placement="device", log=quiet).resident
    with pytest.raises(ValueError, match="a Split has 3 images but 2 labels"):
        Split(torch.arange(2), torch.zeros(3, 1, 2, 2, dtype=torch.uint8))


@pytest.mark.cuda
def test_cuda_resident_and_auto_fallback():
    dev = torch.device("cuda")
    split = numbered_split()
    r = Batches(split, 10, dev, shuffle=True, drop_last=False, seed=4, log=quiet)
    assert r.resident
    cpu = collect(Batches(split, 10, CPU, shuffle=True, drop_last=False, seed=4, log=quiet), 2)
    gpu = [(x.cpu(), y.cpu()) for x, y in r.epoch(2)]
    assert all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(cpu, gpu))
    assert next(iter(r.epoch(0)))[0].device.type == "cuda"
    # a second Batches over the same split shares its device copy
    r2 = Batches(split, 5, dev, shuffle=False, drop_last=False, log=quiet)
    assert r2._images.data_ptr() == r._images.data_ptr()
    # too big for the allowed share of free memory: streamed, with the same order
    other = numbered_split()
    lines = []
    s = Batches(other, 10, dev, shuffle=True, drop_last=False, seed=4, max_device_fraction=1e-12, num_workers=0,
                log=lines.append)
    assert not s.resident and "streaming" in lines[0]
    got = [(x.cpu(), y.cpu()) for x, y in s.epoch(2)]
    assert all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(cpu, got))
    assert next(iter(s.epoch(0)))[0].device.type == "cuda"


def test_limit_train_and_test_take_the_first_images():
    from vicreg.config import DataConfig
    from vicreg.data import load_dataset

    full = load_dataset(DataConfig(dataset="digits"), log=lambda m: None)
    lines = []
    small = load_dataset(DataConfig(dataset="digits", limit_train=100, limit_test=30), log=lines.append)
    assert len(small.train) == 100 and len(small.test) == 30 and small.train_labeled is small.train
    assert torch.equal(small.train.images, full.train.images[:100])
    assert torch.equal(small.test.labels, full.test.labels[:30])
    assert any("first 100 training and 30 test images" in line for line in lines)


@pytest.mark.parametrize("placement", ["device", "stream"])
def test_shards_of_a_global_batch_concatenate_to_one_process_batch(placement):
    images = torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1)
    split = Split(torch.arange(50), images)
    common = dict(shuffle=True, drop_last=True, placement=placement, num_workers=0, seed=3, log=lambda m: None)
    whole = Batches(split, 12, "cpu", **common)
    shards = [Batches(split, 6, "cpu", shard=(r, 2), **common) for r in range(2)]
    assert len(whole) == len(shards[0]) == len(shards[1]) == 4  # 50 // 12: the last partial global batch dropped
    for epoch in (0, 1):
        for (x, y), (x0, y0), (x1, y1) in zip(whole.epoch(epoch, start=1), shards[0].epoch(epoch, start=1),
                                               shards[1].epoch(epoch, start=1)):
            assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)
    with pytest.raises(ValueError, match=r"shard=\(2, 2\) is not valid"):
        Batches(split, 6, "cpu", shard=(2, 2), **common)
