"""A restricted unpickler for CIFAR's python-format batches: it builds numpy arrays of plain numbers and plain
Python values, and refuses anything else in one line, without running it.

What a CIFAR batch holds: a dict of numpy arrays, lists, strings and numbers. The unpickler never lets numpy
rebuild anything itself: the globals a numpy pickle names are replaced by the stand-ins below, which accept only
plain numeric dtypes and raw bytes and build each array with ``np.frombuffer``. Any other global (``os.system``,
``builtins.exec``, ...) and any structured or object dtype is refused, so a crafted file in the data directory can
neither run code nor make numpy read memory it names.
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path

import numpy as np

__all__ = ["latin1_text", "unpickle_plain"]


def latin1_text(x) -> str:
    """A key or name of a Python 2 pickle (bytes, latin1) or a str, as str."""
    return x.decode("latin1") if isinstance(x, bytes) else str(x)


_NUMERIC_KINDS = "biuf"


class _Dtype:
    """numpy.dtype(code, align, copy) and its state, as a pickle gives them: a plain numeric dtype only."""

    def __init__(self, code=None, align=False, copy=False):
        if not isinstance(code, str) or len(code) > 4 or not code[:1].isalpha():
            raise _Refused(f"a dtype {code!r}")
        try:
            kind = np.dtype(code).kind
        except TypeError:
            raise _Refused(f"a dtype {code!r}") from None
        if kind not in _NUMERIC_KINDS:
            raise _Refused(f"a dtype of kind {kind!r}")
        self.code, self.order = code, "="

    def __setstate__(self, state):  # (version, byte order, subarray, names, fields, elsize, alignment, flags)
        if not isinstance(state, tuple) or len(state) < 5 or state[1] not in ("<", ">", "|", "="):
            raise _Refused("a dtype state")
        if any(part is not None for part in state[2:5]):
            raise _Refused("a structured dtype")
        self.order = "=" if state[1] == "|" else state[1]

    def numpy(self) -> np.dtype:
        return np.dtype(self.code).newbyteorder(self.order)


class _Array:
    """An ndarray as _reconstruct and its state give it: (version,) shape, dtype, fortran order, raw bytes."""

    value = None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused("an array state")
        shape, dtype, fortran, raw = state[-4:]
        self.value = _frombuffer(raw, dtype, shape, "F" if fortran else "C")


def _reconstruct(cls, shape, typecode) -> _Array:
    return _Array()


def _frombuffer(raw, dtype, shape, order="C") -> np.ndarray:
    if not isinstance(dtype, _Dtype) or not isinstance(raw, (bytes, bytearray)) or order not in ("C", "F"):
        raise _Refused("an array that is not raw numeric bytes")
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise _Refused(f"an array shape {shape!r}")
    return np.frombuffer(bytes(raw), dtype.numpy()).reshape(shape, order=order).copy()


def _scalar(dtype, raw=None):
    return _frombuffer(raw, dtype, (1,))[0]


_CIFAR_GLOBALS = {
    ("numpy", "ndarray"): _Array, ("numpy", "dtype"): _Dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct, ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): _scalar, ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer, ("numpy._core.numeric", "_frombuffer"): _frombuffer,
}


class _Refused(pickle.UnpicklingError):
    """A pickle that names a global outside _CIFAR_GLOBALS, or an array that is not plain numbers."""


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) == ("_codecs", "encode"):  # bytes in protocol-2 pickles written by Python 3
            return codecs.encode
        if (module, name) in _CIFAR_GLOBALS:
            return _CIFAR_GLOBALS[(module, name)]
        raise _Refused(f"it asks for {module}.{name}")


def _arrays(x):
    """The unpickled value with every _Array stand-in replaced by its numpy array."""
    if isinstance(x, _Array):
        if x.value is None:
            raise _Refused("an array without data")
        return x.value
    if isinstance(x, dict):
        return {k: _arrays(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_arrays(v) for v in x)
    if isinstance(x, (_Dtype,)):
        raise _Refused("a bare dtype")
    return x


def unpickle_plain(path: Path) -> dict:
    """A CIFAR pickle as a dict with str keys (Python 2 pickles read as torchvision does, latin1), read by an
    unpickler that builds only numpy arrays and plain Python values: a file that asks for anything else is
    refused in one line, without running it."""
    try:
        with open(path, "rb") as f:
            entry = _arrays(_PlainUnpickler(f, encoding="latin1").load())
    except _Refused as e:
        raise ValueError(f"refused {path}: not a plain CIFAR batch ({e}; only numpy arrays, lists, strings and "
                         f"numbers are read, so that a crafted file cannot run code)") from None
    except Exception as e:
        raise ValueError(f"corrupt CIFAR file {path}: {type(e).__name__}: {e}") from None
    if not isinstance(entry, dict):
        raise ValueError(f"corrupt CIFAR file {path}: expected a pickled dict, got {type(entry).__name__}")
    return {latin1_text(k): v for k, v in entry.items()}
