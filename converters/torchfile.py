"""Read a PyTorch ``state_dict`` checkpoint (.pth, the zip format of torch >= 1.6) into numpy arrays, without
PyTorch: the file is a zip holding a pickle of the dict plus one raw little-endian buffer per storage. Only the
pieces a state dict of float tensors uses are accepted; anything else in the pickle is refused, so an untrusted
checkpoint cannot run code (``torch.load`` without ``weights_only`` would).
"""
from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from edgesr.errors import DataError

_DTYPES = {"FloatStorage": np.float32, "HalfStorage": np.float16, "DoubleStorage": np.float64,
           "BFloat16Storage": None, "LongStorage": np.int64, "IntStorage": np.int32, "ByteStorage": np.uint8}


class _Storage:
    def __init__(self, dtype):
        self.dtype = dtype


def _rebuild_tensor(storage, offset, size, stride, *_):
    data, dtype = storage
    if not size:
        return data[offset:offset + 1].reshape(()).copy()
    itemsize = np.dtype(dtype).itemsize
    view = np.lib.stride_tricks.as_strided(data[offset:], shape=tuple(size),
                                           strides=tuple(s * itemsize for s in stride))
    return np.array(view)  # own the memory, C order


class _Unpickler(pickle.Unpickler):
    def __init__(self, fh, zf: zipfile.ZipFile, prefix: str):
        super().__init__(fh)
        self.zf, self.prefix = zf, prefix

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch" and name in _DTYPES and _DTYPES[name] is not None:
            return _Storage(_DTYPES[name])
        raise DataError(f"checkpoint holds {module}.{name}: not a plain state dict of tensors")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel)
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _Storage)):
            raise DataError("checkpoint: unexpected storage record")
        dtype, key = pid[1].dtype, str(pid[2])
        raw = self.zf.read(f"{self.prefix}/data/{key}")
        return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")), dtype


def read_state_dict(path) -> dict[str, np.ndarray]:
    """``{name: array}`` of a .pth state dict (a dict wrapping it under 'state_dict'/'params' is unwrapped)."""
    p = Path(path)
    try:
        zf = zipfile.ZipFile(p)
    except (OSError, zipfile.BadZipFile) as e:
        raise DataError(f"{p}: not a PyTorch zip checkpoint ({e})") from None
    with zf:
        pkl = [n for n in zf.namelist() if n.endswith("/data.pkl")]
        if len(pkl) != 1:
            raise DataError(f"{p}: no data.pkl inside: not a PyTorch checkpoint")
        try:
            with zf.open(pkl[0]) as fh:
                obj = _Unpickler(fh, zf, pkl[0].rsplit("/", 1)[0]).load()
        except (pickle.UnpicklingError, KeyError, ValueError, EOFError) as e:
            raise DataError(f"{p}: corrupt checkpoint ({e})") from None
    for key in ("state_dict", "params", "params_ema", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
        raise DataError(f"{p}: not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}
