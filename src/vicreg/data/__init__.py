"""Data: datasets as uint8 tensors, video sequences, and batches sliced from them on the training device.

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

``sprites``
    generated, seeded: sequences of moving digits (or Fashion-MNIST images) with distractors and optional
    pushes (``data.video``, see :mod:`vicreg.data.sprites`); frames are the images, a sprite's class the label;
    with ``data.temporal_offset`` the two views are frames of one clip.
``moving-mnist``
    torchvision's ``MovingMNIST/mnist_test_seq.npy`` (10 000 sequences of 20 frames, 64x64, unlabelled);
    the last 10 % of the sequences are the test split.

With no ``data_dir``, the default cache ``~/.cache/vicreg/data`` is searched as well, so a dataset
downloaded once is found again.

Modules: ``dataset`` (the :class:`Split` and :class:`ImageDataset` containers), ``download`` (where files are
looked for, torchvision downloads), ``images`` (digits, MNIST, Fashion-MNIST, CIFAR, STL-10), ``safe_unpickle``
(CIFAR's restricted unpickler), ``folder`` (an image folder), ``sprites`` (the moving-sprite simulator and
generator), ``video`` (the sequences container, Moving MNIST, sequences as an image dataset), ``registry``
(name -> loader, :func:`load_dataset`), ``batches`` (:class:`Batches` on the device).
"""

from .batches import Batches, epoch_permutation
from .dataset import ImageDataset, Log, Split, spread_subset
from .download import DEFAULT_ROOT
from .folder import ImageFiles, decode_image, image_array
from .images import FASHION_MNIST_CLASSES, MNIST_CLASSES, read_idx
from .registry import LOADERS, load_dataset, native_size

__all__ = [
    "Split",
    "ImageDataset",
    "Log",
    "Batches",
    "load_dataset",
    "image_array",
    "native_size",
    "LOADERS",
    "DEFAULT_ROOT",
    "FASHION_MNIST_CLASSES",
    "MNIST_CLASSES",
    "epoch_permutation",
    "spread_subset",
    "read_idx",
    "decode_image",
    "ImageFiles",
]
