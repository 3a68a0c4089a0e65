"""User data: a folder of images, an .npz/.npy array, or a text file, validated into the dataset contract.

- Folder: every .png/.jpg/.jpeg below it (recursive, sorted by relative path), decoded with PIL; all must
  have the same size. Grayscale ("L") when every image is single-channel, else RGB. -> float32 k/255.
- .npy / .npz (array "x", else "arr_0", else the only array; optional labels "y"):
  * uint8 -> images, scaled by 1/255;
  * float (N, D) -> points, used as given (finite values required);
  * float (N, C, H, W) / (N, H, W, C) / (N, H, W) -> images, values must lie in [0, 1]
    (values in [0, 255] or [-1, 1] are rejected with the rescaling to apply).
  Channels-last (N, H, W, C) with C in {1, 3} and H, W > 4 is transposed to (N, C, H, W).
- Anything else (.txt, .text, no suffix...): UTF-8 text -> TextSplit (vocabulary = its characters).
- `class_folders=True` (conditional samples, `genbench eval --class-folders`): a folder with one subfolder per
  class, named by its label 0..K-1 (DIR/0/*.png, DIR/1/*.png, ...), images directly in each; the folder's label
  becomes each image's `y`. Items are ordered round-robin over the classes (the first image of every class,
  then the second, ... ; files sorted by name within a class), so the first n items stay balanced. Images
  directly in DIR or deeper down, a subfolder not named by a label 0..K-1, two folders for one label and an
  empty class folder are refused, naming the path.
The result is a DataSplit / TextSplit with split="user"; `min_items` (default 2) is checked.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from genbench.data.base import DataSplit, DatasetInfo, TextSplit
from genbench.errors import InvalidInputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ARRAY_SUFFIXES = (".npy", ".npz")


def load_user_data(path, *, min_items: int = 2, modality: Optional[str] = None, expect_shape: Optional[tuple] = None,
                   name: Optional[str] = None, class_folders: bool = False, num_classes: Optional[int] = None):
    """Load and validate user data. `modality` ("image" | "points" | "text") and `expect_shape` (shape of one
    item, e.g. (1, 28, 28)) are optional extra checks, e.g. that samples match the dataset they are scored
    against. `class_folders`: a folder per class (module docstring), labels 0..`num_classes`-1."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InvalidInputError(f"user data {p} does not exist")
    name = name or f"user:{p.name}"
    if class_folders:
        if not p.is_dir():
            raise InvalidInputError(f"{p}: class folders need a folder laid out as {p.name}/<class>/*.png (one "
                                    "subfolder per class label); for an .npz give the labels as 'y' instead")
        if not num_classes:
            raise InvalidInputError(f"{p}: class folders need a dataset with class labels to condition on")
        out = _load_class_folders(p, name, int(num_classes))
    elif p.is_dir():
        out = _load_image_folder(p, name)
    elif p.suffix.lower() in ARRAY_SUFFIXES:
        out = _load_array(p, name)
    elif p.suffix.lower() in IMAGE_SUFFIXES:
        raise InvalidInputError(f"{p} is a single image: give the folder that holds the images")
    else:
        out = _load_text(p, name)
    n = len(out.lines) if isinstance(out, TextSplit) else len(out)
    what = "non-empty lines" if isinstance(out, TextSplit) else "items"
    if n < min_items:
        raise InvalidInputError(f"{p}: {n} {what}, at least {min_items} needed")
    if modality is not None and out.info.modality != modality:
        raise InvalidInputError(f"{p}: holds {out.info.modality} data, but {modality} data is needed")
    if expect_shape is not None and not isinstance(out, TextSplit) and tuple(out.x.shape[1:]) != tuple(expect_shape):
        raise InvalidInputError(f"{p}: items have shape {tuple(out.x.shape[1:])}, expected {tuple(expect_shape)}")
    return out


def _image_info(name: str, shape: tuple) -> DatasetInfo:
    return DatasetInfo(name=name, modality="image", shape=tuple(int(s) for s in shape), value_range=(0.0, 1.0),
                       description="user-provided images")


def _load_image_folder(d: Path, name: str) -> DataSplit:
    files = sorted((f for f in d.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda f: f.relative_to(d).as_posix())
    if not files:
        raise InvalidInputError(f"{d}: no .png/.jpg/.jpeg images found (searched recursively)")
    x, mode = _read_images(files)
    return DataSplit(x, None, _image_info(name, x.shape[1:]), "user", source=f"user:{d}",
                     meta={"variant": "image-folder", "files": len(files), "mode": mode})


def _images_in(d: Path) -> list:
    return sorted((f for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES), key=lambda f: f.name)


def _load_class_folders(d: Path, name: str, num_classes: int) -> DataSplit:
    """DIR/<label>/*.png -> images with labels (module docstring)."""
    K = int(num_classes)
    layout = f"lay the samples out as {d}/<class>/*.png with <class> a label 0..{K - 1}"
    loose = _images_in(d)
    if loose:
        raise InvalidInputError(f"{loose[0]}: an image directly in the samples folder; with class folders every "
                                f"image goes in the folder of its class ({layout})")
    subs = sorted((s for s in d.iterdir() if s.is_dir()), key=lambda s: s.name)
    if not subs:
        raise InvalidInputError(f"{d}: no class subfolders; {layout}")
    by_label: dict = {}
    for s in subs:
        if not (s.name.isascii() and s.name.isdigit()) or int(s.name) >= K:
            raise InvalidInputError(f"{s}: folder name {s.name!r} is not a class label of the dataset (0..{K - 1}); "
                                    f"{layout}")
        c = int(s.name)
        if c in by_label:
            raise InvalidInputError(f"{s} and {by_label[c][0]}: two folders for class {c}; merge them")
        deeper = next((f for f in s.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                       and f.parent != s), None)
        if deeper is not None:
            raise InvalidInputError(f"{deeper}: an image below a class folder's subfolder; put each class's images "
                                    f"directly in {d}/<class>/")
        files = _images_in(s)
        if not files:
            raise InvalidInputError(f"{s}: class folder with no .png/.jpg/.jpeg images; remove it to score the "
                                    "other classes")
        by_label[c] = (s, files)
    order = []  # round-robin over the classes: the first n items stay balanced
    for j in range(max(len(f) for _, f in by_label.values())):
        order += [(c, fs[j]) for c, (_, fs) in sorted(by_label.items()) if j < len(fs)]
    x, mode = _read_images([f for _, f in order])
    y = torch.tensor([c for c, _ in order], dtype=torch.int64)
    return DataSplit(x, y, _image_info(name, x.shape[1:]), "user", source=f"user:{d}",
                     meta={"variant": "class-folders", "files": len(order), "mode": mode,
                           "per_class": {str(c): len(fs) for c, (_, fs) in sorted(by_label.items())}})


def _read_images(files: list) -> tuple:
    """Decode `files` (one size) into a float32 (N, C, H, W) tensor k/255, and the mode ("L" or "RGB")."""
    from PIL import Image, UnidentifiedImageError

    imgs, size0, gray = [], None, True
    for f in files:
        try:
            with Image.open(f) as im:
                im.load()
                im = im.copy()
        except (UnidentifiedImageError, OSError) as e:
            raise InvalidInputError(f"{f}: cannot be read as an image ({e})") from None
        if size0 is None:
            size0 = im.size
        elif im.size != size0:
            raise InvalidInputError(f"{f}: size {im.size[0]}x{im.size[1]} differs from {files[0].name}'s "
                                    f"{size0[0]}x{size0[1]}; resize all images to one size first")
        gray = gray and im.mode in ("L", "1", "I;16", "I", "LA")
        imgs.append(im)
    mode = "L" if gray else "RGB"
    arr = np.stack([np.asarray(im.convert(mode), dtype=np.uint8) for im in imgs])
    x = torch.from_numpy(arr)
    x = x.unsqueeze(1) if mode == "L" else x.permute(0, 3, 1, 2)
    x = x.contiguous().to(torch.float32).div_(255.0)
    return x, mode


def _pick_array(p: Path):
    try:
        if p.suffix.lower() == ".npy":
            with open(p, "rb") as f:
                _check_npy_header(f, p.stat().st_size, str(p))
            return np.load(p, allow_pickle=False), None
        with zipfile.ZipFile(p) as zf:  # the members' headers against their sizes, before any array is read
            for info in zf.infolist():
                if info.filename.endswith(".npy"):
                    with zf.open(info) as f:
                        _check_npy_header(f, info.file_size, f"{p} (array {info.filename[:-4]!r})")
        with np.load(p, allow_pickle=False) as z:
            keys = list(z.keys())
            if "x" in keys:
                key = "x"
            elif "arr_0" in keys:
                key = "arr_0"
            elif len(keys) == 1:
                key = keys[0]
            else:
                raise InvalidInputError(f"{p}: holds arrays {keys}; name the samples 'x' (labels, if any, 'y')")
            return z[key], (z["y"] if "y" in keys else None)
    except InvalidInputError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise InvalidInputError(f"{p}: cannot be read as a NumPy array file: it is truncated or damaged "
                                f"({type(e).__name__}: {e})") from None
    except MemoryError:
        raise InvalidInputError(f"{p}: the array does not fit in memory") from None


def _check_npy_header(f, size: int, where: str) -> None:
    """Read the .npy header from `f` and check that the shape x item size it claims fits in the `size` bytes of
    the file, so a damaged or hostile header cannot make NumPy allocate a huge array."""
    from numpy.lib import format as npy_format

    version = npy_format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = npy_format.read_array_header_1_0(f)
    else:
        shape, _, dtype = npy_format.read_array_header_2_0(f)
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize if not dtype.hasobject else 0
    have = size - f.tell()
    if need > have:
        raise InvalidInputError(f"{where}: the header says shape {tuple(shape)} of {dtype} ({_size(need)}), but the "
                                f"file holds {_size(max(have, 0))} of data: it is truncated or damaged")


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


def _load_array(p: Path, name: str) -> DataSplit:
    a, y = _pick_array(p)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise InvalidInputError(f"{p}: dtype {a.dtype} is not numeric")
    if a.ndim not in (2, 3, 4):
        raise InvalidInputError(f"{p}: array of shape {a.shape}; expected (N, D) points or (N, C, H, W) / "
                                f"(N, H, W, C) / (N, H, W) images")
    if a.size == 0:
        raise InvalidInputError(f"{p}: the array of shape {a.shape} holds no values (0 items): nothing to score")
    if y is not None and len(y) != len(a):
        raise InvalidInputError(f"{p}: {len(a)} samples but {len(y)} labels in 'y'")
    is_int = np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_
    if a.ndim == 2:
        if a.dtype == np.uint8:
            raise InvalidInputError(f"{p}: uint8 array of shape {a.shape}: flattened images? reshape to (N, C, H, W)")
        x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        if not torch.isfinite(x).all():
            raise InvalidInputError(f"{p}: contains NaN or infinite values")
        lo, hi = float(x.min()), float(x.max())
        info = DatasetInfo(name=name, modality="points", shape=(int(a.shape[1]),), value_range=(lo, hi),
                           description="user-provided points")
        return DataSplit(x, _labels(y), info, "user", source=f"user:{p}", meta={"variant": "array-points"})
    if a.ndim == 3:
        a = a[:, None]
    elif a.shape[-1] in (1, 3) and a.shape[1] not in (1, 3) and a.shape[1] > 4 and a.shape[2] > 4:
        a = np.transpose(a, (0, 3, 1, 2))
    if a.shape[1] not in (1, 3):
        raise InvalidInputError(f"{p}: images of shape {a.shape[1:]}: expected 1 or 3 channels in (N, C, H, W)")
    if a.dtype == np.uint8:
        x = torch.from_numpy(np.ascontiguousarray(a)).to(torch.float32).div_(255.0)
    else:
        if is_int:
            raise InvalidInputError(f"{p}: integer images must be uint8 (0..255), got {a.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        if not torch.isfinite(x).all():
            raise InvalidInputError(f"{p}: contains NaN or infinite values")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 and lo >= -1.0 and hi <= 1.0:
            raise InvalidInputError(f"{p}: values in [{lo:.3g}, {hi:.3g}] look like [-1, 1] images; "
                                    f"rescale to [0, 1] with (x + 1) / 2")
        if hi > 1.0 and lo >= 0.0 and hi <= 255.0:
            raise InvalidInputError(f"{p}: values in [{lo:.3g}, {hi:.3g}] look like 0..255 images; save them as "
                                    f"uint8 or divide by 255")
        if lo < 0.0 or hi > 1.0:
            raise InvalidInputError(f"{p}: image values must lie in [0, 1], got [{lo:.3g}, {hi:.3g}]")
    return DataSplit(x.contiguous(), _labels(y), _image_info(name, x.shape[1:]), "user", source=f"user:{p}",
                     meta={"variant": "array-images", "dtype": str(a.dtype)})


def _labels(y) -> Optional[torch.Tensor]:
    if y is None:
        return None
    if not np.issubdtype(y.dtype, np.integer):
        raise InvalidInputError(f"labels 'y' must be integers, got {y.dtype}")
    return torch.from_numpy(np.asarray(y, dtype=np.int64).reshape(-1))


def _load_text(p: Path, name: str) -> TextSplit:
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInputError(f"{p}: not UTF-8 text ({e}); give images as a folder, arrays as .npy/.npz") from None
    if not text.strip():
        raise InvalidInputError(f"{p}: the text file is empty")
    info = DatasetInfo(name=name, modality="text", shape=(), value_range=(0, 0), description="user-provided text")
    return TextSplit(text, sorted(set(text)), info, "user", source=f"user:{p}", meta={"variant": "text-file"})
