"""Checkpoint files that are data, never code, and are used only when intact.

A checkpoint directory (`GenerativeModel.save`) holds:

- `config.json`: the model's name, config, dataset info and fit history;
- `weights.pt`: `torch.save({"modules": {name: state_dict}, "extra": extra_state()})`, loaded with
  `torch.load(weights_only=True)`: only tensors and plain values (numbers, strings, bytes, None, lists, tuples,
  dicts, sets, torch dtypes/sizes/devices) can come back, so an object whose unpickling would run code (a
  `__reduce__`) is refused instead of executed. NumPy arrays and scalars in a model's state are stored as raw
  bytes plus their dtype and shape (`encode_state` / `decode_state`), so they come back bit-identical;
- `checksums.json`: the sha256 of both files, written before the directory is renamed into place. PyTorch's zip
  reader does not check CRCs, so without it a same-size byte flip would load silently.

`read_verified` / `load_weights` raise `CheckpointError` when the manifest is missing (an older or foreign
checkpoint: unverifiable), when a digest differs, or when `weights.pt` holds anything but plain data. The runner
then deletes the checkpoint and trains the model again (checkpoints are caches).
"""

from __future__ import annotations

import io
import json
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genbench.errors import GenbenchError
from genbench.fileio import sha256_bytes, sha256_file

MANIFEST = "checksums.json"
CHECKED_FILES = ("config.json", "weights.pt")
MANIFEST_FORMAT = 1
_NDARRAY = "__genbench_ndarray__"  # marks an encoded NumPy array or scalar in a saved state
_PLAIN = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.Size, torch.device)
_ALLOWED = ("tensors, NumPy arrays and scalars (numeric or string dtypes), numbers, strings, bytes, None, "
            "and lists, tuples, sets and dicts of these")


class CheckpointError(GenbenchError):
    """A checkpoint cannot be used: files missing or not matching their recorded sha256, no manifest, or
    content that is not plain data. Checkpoints are caches: delete the directory and the model is retrained."""


class UnsafeStateError(GenbenchError):
    """A model's state holds an object that a checkpoint cannot store as plain data."""


# ---------------------------------------------------------------------------------------------- state codec


def _encode_ndarray(a: np.ndarray, scalar: bool, where: str) -> dict:
    if a.dtype.hasobject:
        raise UnsafeStateError(f"{where} is a NumPy array of Python objects (dtype object), which a checkpoint "
                               f"cannot store as plain data; store {_ALLOWED}")
    raw = np.frombuffer(np.ascontiguousarray(a).tobytes(), dtype=np.uint8).copy()
    return {_NDARRAY: {"descr": np.lib.format.dtype_to_descr(a.dtype), "shape": list(a.shape),
                       "bytes": torch.from_numpy(raw), "scalar": scalar}}


def _decode_ndarray(rec: dict) -> Any:
    dtype = np.lib.format.descr_to_dtype(rec["descr"])
    a = np.frombuffer(rec["bytes"].numpy().tobytes(), dtype=dtype).reshape(rec["shape"]).copy()
    return a[()] if rec["scalar"] else a


def encode_state(obj: Any, where: str = "state") -> Any:
    """`obj` with NumPy arrays/scalars replaced by tensors of their raw bytes (+ dtype and shape), ready for a
    `weights_only` load; `UnsafeStateError` (naming `where`, the path inside the state) for any other object."""
    if isinstance(obj, torch.Tensor):
        return obj if type(obj) in (torch.Tensor, torch.nn.Parameter) else obj.as_subclass(torch.Tensor)
    if isinstance(obj, np.ndarray):
        return _encode_ndarray(obj, False, where)
    if isinstance(obj, np.generic):  # before the plain types: np.float64 is a float subclass
        return _encode_ndarray(np.asarray(obj), True, where)
    if type(obj) in _PLAIN:
        return obj
    if type(obj) in (dict, OrderedDict):
        return type(obj)((k, encode_state(v, f"{where}[{k!r}]")) for k, v in obj.items())
    if type(obj) in (list, tuple, set):
        return type(obj)(encode_state(v, f"{where}[{i}]") for i, v in enumerate(obj))
    raise UnsafeStateError(f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}, which a checkpoint "
                           f"cannot store as plain data (it would have to be unpickled as code); store {_ALLOWED}")


def decode_state(obj: Any) -> Any:
    """Inverse of `encode_state`."""
    if type(obj) in (dict, OrderedDict):
        if len(obj) == 1 and _NDARRAY in obj:
            return _decode_ndarray(obj[_NDARRAY])
        return type(obj)((k, decode_state(v)) for k, v in obj.items())
    if type(obj) in (list, tuple, set):
        return type(obj)(decode_state(v) for v in obj)
    return obj


# ---------------------------------------------------------------------------------------------- files


def write_manifest(dirpath: Path) -> Path:
    """Record the sha256 of the checkpoint's files in `dirpath/checksums.json`."""
    digests = {name: sha256_file(dirpath / name) for name in CHECKED_FILES}
    path = dirpath / MANIFEST
    path.write_text(json.dumps({"format": MANIFEST_FORMAT, "sha256": digests}, indent=2))
    return path


def _manifest(dirpath: Path) -> dict:
    path = dirpath / MANIFEST
    if not path.exists():
        raise CheckpointError(f"checkpoint {dirpath} has no {MANIFEST} (saved by an older genbench, or not by "
                              "genbench), so its files cannot be verified; delete the directory and train the model "
                              "again (genbench run does this itself)")
    try:
        digests = json.loads(path.read_text())["sha256"]
        if not all(isinstance(digests.get(n), str) for n in CHECKED_FILES):
            raise ValueError("a file's digest is missing")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint {dirpath}: {MANIFEST} is damaged ({e}); delete the directory and train "
                              "the model again") from None
    return digests


def read_verified(dirpath: str | Path, name: str) -> bytes:
    """The bytes of `dirpath/name` (one of `CHECKED_FILES`) after checking them against the manifest."""
    dirpath = Path(dirpath)
    want = _manifest(dirpath)[name]
    try:
        data = (dirpath / name).read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {dirpath} has no {name}; delete the directory and train the model "
                              "again") from None
    got = sha256_bytes(data)
    if got != want:
        raise CheckpointError(f"checkpoint {dirpath / name} is corrupt: its sha256 {got[:12]}... does not match the "
                              f"recorded {want[:12]}...; delete the directory and train the model again")
    return data


def _unpickling_reason(e: Exception) -> str:
    """The line of torch's weights-only error that names the refused object (its first lines are generic)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    named = [ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln or "WeightsUnpickler" in ln]
    return (named or lines or [type(e).__name__])[0][:200]


def load_weights(dirpath: str | Path) -> dict:
    """The verified, decoded `weights.pt` of a checkpoint, loaded without unpickling anything but plain data."""
    dirpath = Path(dirpath)
    data = read_verified(dirpath, "weights.pt")
    try:
        blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"checkpoint {dirpath / 'weights.pt'} holds objects other than tensors and plain "
                              f"values, which genbench never unpickles (that could run code): {_unpickling_reason(e)}; "
                              "delete the directory and train the model again") from None
    if not isinstance(blob, dict) or not isinstance(blob.get("modules"), dict):
        raise CheckpointError(f"checkpoint {dirpath / 'weights.pt'} is not a genbench model checkpoint; delete the "
                              "directory and train the model again")
    return decode_state(blob)
