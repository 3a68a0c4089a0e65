"""How genbench pins a file: `Member` (a file pinned by a content hash: of its bytes, its decompressed bytes, or
a TorchScript network's parameters), the parameter digest that names a network's weights whatever file wraps
them, and `check_file`, which every fetched or cached file passes before use (genbench/assets/sources.py finds
files, genbench/assets/core.py caches them).
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Member:
    """One file of an asset.

    `name` is the logical file name. With `content="decompressed"` the digest is of the decompressed bytes
    and the file may be stored as `name` or `name.gz`; with `content="file"` the digest is of the stored
    bytes of `name` exactly (used where only the publisher's checksum of the archive is known). With
    `content="params"` (a TorchScript network) the digest is `params_digest` of the submodule found at the
    first of the dotted paths `params_of`: the network's weights, whatever file wraps them; files whose
    sha256 is in `known_files` ((sha256, what it is) pairs) verify by their bytes without loading torch."""

    name: str
    digest: str
    size: Optional[int] = None  # size of the hashed bytes (params: of the known file)
    algo: str = "sha256"
    content: str = "decompressed"
    params_of: tuple[str, ...] = ()
    known_files: tuple[tuple[str, str], ...] = ()

    @property
    def stored_names(self) -> tuple[str, ...]:
        if self.content == "decompressed" and not self.name.endswith(".gz"):
            return (self.name, self.name + ".gz")
        return (self.name,)


PARAMS_DIGEST_VERSION = "genbench-params-v1"


def params_digest(module) -> str:
    """sha256 of a network's weights independent of names and wrappers: the tensors of `module.parameters()`
    then `module.buffers()` in the module's own (registration) order, each as "dtype shape" and its raw bytes
    (CPU, contiguous, native little-endian). Renaming or re-nesting the modules changes nothing; another value,
    dtype or shape, a missing or extra tensor, or two tensors swapped (e.g. a batch-norm mean and variance)
    changes it. The architecture's code (strides, padding, the forward) is not part of it."""
    import torch

    h = hashlib.sha256(PARAMS_DIGEST_VERSION.encode() + b"\n")
    for t in list(module.parameters()) + list(module.buffers()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{t.dtype} {tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def find_submodule(net, paths: Iterable[str]):
    """The submodule of `net` at the first dotted path of `paths` that exists ("" is `net` itself), else None."""
    for path in paths:
        m = net
        try:
            for part in [p for p in path.split(".") if p]:
                m = getattr(m, part)
        except AttributeError:
            continue
        return m
    return None


def load_torchscript(path: Path):
    """torch.jit.load on the CPU, in eval mode (torch is imported only here)."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated in favour of torch.export
        return torch.jit.load(str(path), map_location="cpu").eval()


def _refuse_code_on_load(path: Path) -> None:
    """ValueError unless `path` is a zip archive (TorchScript's format) whose compiled code defines no
    `__setstate__`: loading a TorchScript file runs no other code of the file (its unpickler builds objects from
    the archive's own classes), so a file that is not yet known to hold the pinned weights is deserialised only
    when nothing in it runs."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                if "/code/" in name and name.endswith(".py") and b"__setstate__" in z.read(name):
                    raise ValueError(f"a TorchScript file whose code runs while loading ({name} defines __setstate__): "
                                     "not loaded")
    except zipfile.BadZipFile:
        raise ValueError("not a TorchScript file (not a zip archive; a pickled state dict?)") from None


def torchscript_params_digest(path: Path, paths: Iterable[str]) -> tuple[str, int]:
    """(params_digest, parameter bytes) of the submodule at the first of `paths` in the TorchScript file `path`.
    Raises ValueError when the file is no TorchScript archive, would run code while loading (`__setstate__`), or
    has none of those submodules."""
    paths = tuple(paths)
    _refuse_code_on_load(path)
    try:
        net = load_torchscript(path)
    except Exception as e:  # noqa: BLE001 - a state dict, a truncated file...: say what it is not
        raise ValueError(f"not a TorchScript file ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})") from None
    trunk = find_submodule(net, paths)
    if trunk is None:
        raise ValueError(f"a TorchScript file without the network's submodule (looked for {', '.join(map(repr, paths))})")
    n = sum(t.numel() * t.element_size() for t in list(trunk.parameters()) + list(trunk.buffers()))
    return params_digest(trunk), n


def file_sha256(path: Path) -> str:
    """sha256 of a file's stored bytes (hex), read in 1 MiB chunks."""
    return hash_content(path, Member(path.name, "", content="file"))[0]


def hash_content(path: Path, member: Member) -> tuple[str, int]:
    """(hex digest, byte count) of the bytes `member` pins: decompressed for a `.gz` stored copy; for a
    `content="params"` member the weights' digest (`torchscript_params_digest`; ValueError if not loadable)."""
    if member.content == "params":
        return torchscript_params_digest(path, member.params_of)
    h = hashlib.new(member.algo)
    n = 0
    gz = member.content == "decompressed" and path.name.endswith(".gz") and not member.name.endswith(".gz")
    with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
        while True:
            b = f.read(_CHUNK)
            if not b:
                break
            h.update(b)
            n += len(b)
    return h.hexdigest(), n


def _check_params(path: Path, member: Member) -> Optional[str]:
    try:
        file_sha = file_sha256(path)
    except OSError as e:
        return f"unreadable ({type(e).__name__}: {e})"
    if any(file_sha == k for k, _ in member.known_files):
        return None
    known = "; ".join(f"{what}: file sha256 {k[:12]}..." for k, what in member.known_files)
    try:
        got, _ = torchscript_params_digest(path, member.params_of)
    except ValueError as e:
        return (f"file sha256 {file_sha[:12]}... is no known file ({known}) and the file is {e}; expected a "
                f"TorchScript network whose parameter hash is {member.digest[:12]}...")
    if got != member.digest:
        return (f"other weights: parameter hash {got[:12]}... (file sha256 {file_sha[:12]}...), expected parameter "
                f"hash {member.digest[:12]}... (known files: {known})")
    return None


def check_file(path: Path, member: Member) -> Optional[str]:
    """None when `path` holds `member`'s bytes (params: its weights), else why not."""
    if member.content == "params":
        return _check_params(path, member)
    try:
        digest, n = hash_content(path, member)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        return f"unreadable ({type(e).__name__}: {e})"
    if digest != member.digest:
        extra = f", {n} bytes" + (f" (expected {member.size})" if member.size and member.size != n else "")
        return f"{member.algo} mismatch: got {digest[:12]}..., expected {member.digest[:12]}...{extra}"
    return None
