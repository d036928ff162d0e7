"""File formats: uploads (CSV, NPZ) and their guards — nothing is unpickled, nothing is
inflated before its declared size is checked — and IDX, the format MNIST is published in."""

from __future__ import annotations

import csv
import gzip
import io
import math
import zipfile
from collections import Counter
from typing import NoReturn

import numpy as np

from netfit.spec import MAX_SAMPLE_VALUES, MAX_SAMPLES, MAX_VALUES
from netfit.suggest import did_you_mean

from .arrays import RawArrays, checked
from .errors import DataError, UnsupportedFile
from .labels import MAX_CLASSES

MISSING = {"", "na", "n/a", "nan", "null", "none", "?", "-"}

# A file is read as what its first bytes say it is, never by its name alone: a pickle or a
# torch checkpoint renamed .csv/.npz is refused, and nothing compressed is inflated blindly.
MAGIC = ((b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip"), (b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"),
         (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"\x93NUMPY", "npy"),
         (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))
PICKLE_PROTOCOLS = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
NPZ_LAYOUTS = ({"x", "y"}, {"x_train", "y_train"}, {"x_train", "y_train", "x_test", "y_test"},
               {"x_train", "y_train", "x_val", "y_val"}, {"x_train", "y_train", "x_val", "y_val", "x_test", "y_test"})
NPZ_LAYOUT_TEXT = "x, y or x_train, y_train (+ x_val, y_val: a validation set; + x_test, y_test: a test set)"
# an .npz is a zip: its members' declared sizes are checked before any is inflated
MAX_NPZ_BYTES = 512 * 2**20
# a CSV is parsed cell by cell in Python; bigger tables travel as .npz
MAX_CSV_CELLS = 10_000_000
NEVER_UNPICKLED = "netfit never unpickles uploads: save numeric arrays with numpy.savez('data.npz', x=..., y=...)"


def _content_kind(content: bytes) -> str | None:
    if content.startswith(PICKLE_PROTOCOLS):
        return "pickle"
    return next((kind for magic, kind in MAGIC if content.startswith(magic)), None)


def read_upload(content: bytes, filename: str, target: str | None = None) -> RawArrays:
    """A CSV (header row; `target` names the label column, default the last) or an NPZ."""
    kind, lower = _content_kind(content), filename.lower()
    if kind == "pickle":
        raise UnsupportedFile(f"'{filename}' is a Python pickle; {NEVER_UNPICKLED} or as a CSV file")
    if lower.endswith(".npz"):
        if target is not None:
            raise DataError("'target' names a CSV column; an NPZ file gives its labels in array 'y'")
        if kind != "zip":
            raise UnsupportedFile(f"'{filename}' is not an .npz (zip) archive but {kind or 'something else'}; "
                                  "save it with numpy.savez('data.npz', x=..., y=...)")
        return _read_npz(content, filename)
    if lower.endswith(".csv"):
        if kind is not None:
            raise UnsupportedFile(f"'{filename}' is {kind} data, not UTF-8 text; upload the plain CSV "
                                  "(netfit neither decompresses nor guesses formats)")
        return _read_csv(content, filename, target)
    raise UnsupportedFile(f"cannot tell the format of '{filename}': upload a .csv or a .npz file (uncompressed CSV)")


def _read_npz(content: bytes, filename: str) -> RawArrays:
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            arrays = _npz_arrays(archive, filename)
    except DataError:
        raise
    except (ValueError, OSError, EOFError, RuntimeError, NotImplementedError, zipfile.BadZipFile) as e:
        why = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise DataError(f"cannot read '{filename}': it is not a valid .npz file ({why})") from None
    classes = arrays.get("classes")
    if classes is not None and (classes.ndim != 1 or len(classes) > MAX_CLASSES):
        raise DataError(f"'{filename}': array 'classes' must list at most {MAX_CLASSES} class names, one per code")
    if "x" in arrays:
        return checked(arrays["x"], arrays["y"], classes=classes)
    return checked(*(arrays.get(k) for k in ("x_train", "y_train", "x_test", "y_test")), classes,
                   names=("array 'x_train'", "array 'y_train'", "array 'x_test'", "array 'y_test'"),
                   x_val=arrays.get("x_val"), y_val=arrays.get("y_val"), val_names=("array 'x_val'", "array 'y_val'"))


def _npz_arrays(archive: zipfile.ZipFile, filename: str) -> dict[str, np.ndarray]:
    members = archive.infolist()
    strays = [m.filename for m in members if not m.filename.endswith(".npy")]
    if strays:
        raise UnsupportedFile(f"'{filename}' holds {strays[:3]}, which are not numpy arrays (a torch checkpoint "
                              f"or a pickle?); {NEVER_UNPICKLED}")
    inflated = sum(m.file_size for m in members)
    if inflated > MAX_NPZ_BYTES:
        raise DataError(f"'{filename}' would decompress to {inflated:,} bytes, more than the limit of "
                        f"{MAX_NPZ_BYTES:,}; upload fewer samples or a smaller dtype (uint8 images)")
    keys = {m.filename[:-4] for m in members} - {"classes"}
    if keys not in NPZ_LAYOUTS:  # before reading any: a zip of a million members is read no further
        raise DataError(f"'{filename}' holds arrays {sorted(keys)[:10]}{_layout_hint(keys)}; "
                        f"expected {NPZ_LAYOUT_TEXT}")
    return {m.filename[:-4]: _read_npy(archive, m, filename) for m in members}


def _layout_hint(keys: set[str]) -> str:
    """What is missing or out of place, when the arrays are close to a layout."""
    if "x" in keys and keys & {"x_val", "y_val", "x_test", "y_test"}:
        return " (with a validation or test set, name the training arrays x_train, y_train, not x, y)"
    missing = sorted(min((layout - keys for layout in NPZ_LAYOUTS if keys < layout), key=len, default=set()))
    return f" (missing {', '.join(missing)})" if missing else ""


def _read_npy(archive: zipfile.ZipFile, member: zipfile.ZipInfo, filename: str) -> np.ndarray:
    """One array, its header checked before its data is inflated or memory is allocated for it."""
    name = f"array '{member.filename[:-4]}' of '{filename}'"
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    with archive.open(member) as f:
        version = np.lib.format.read_magic(f)
        if version not in readers:
            raise DataError(f"{name} uses .npy format {version}; save it with numpy.savez")
        shape, _, dtype = readers[version](f)
    if dtype.hasobject:
        raise DataError(f"{name} holds Python objects; {NEVER_UNPICKLED}")
    if math.prod(shape) * dtype.itemsize > member.file_size:
        raise DataError(f"{name} declares shape {list(shape)} but holds less data; the file is damaged")
    _check_size(shape, name)
    with archive.open(member) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def _check_size(shape: tuple[int, ...], name: str) -> None:
    """Samples, values per sample (features or pixels) and values in all, within the limits."""
    n, per = (shape[0], math.prod(shape[1:])) if shape else (1, 1)
    if n > MAX_SAMPLES:
        raise DataError(f"{name} has {n:,} samples, more than the limit of {MAX_SAMPLES:,}; upload fewer")
    if per > MAX_SAMPLE_VALUES:
        raise DataError(f"{name} has {per:,} values per sample (shape {list(shape[1:])}), more than the limit of "
                        f"{MAX_SAMPLE_VALUES:,}; downscale the images or select fewer features")
    if n * per > MAX_VALUES:
        raise DataError(f"{name} has {n * per:,} values, more than the limit of {MAX_VALUES:,}; "
                        "use fewer samples or features")


def _read_csv(content: bytes, filename: str, target: str | None) -> RawArrays:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"'{filename}' is not UTF-8 text (byte {e.start} is {content[e.start:e.start + 1]!r}); "
                        "save it as a plain UTF-8 CSV") from None
    try:
        header = [h.strip() for h in next(csv.reader(io.StringIO(text)), [])]
        lines = text.count("\n")  # counted before parsing: the parse holds every cell as a str
        if len(header) * lines > MAX_CSV_CELLS or lines > MAX_SAMPLES + 1:
            raise DataError(f"'{filename}' has about {lines:,} rows x {len(header):,} columns, more "
                            f"than {MAX_CSV_CELLS:,} cells or {MAX_SAMPLES:,} rows; upload big tables as .npz "
                            "(numpy.savez)")
        rows = [r for r in csv.reader(io.StringIO(text)) if r]
    except csv.Error as e:
        raise DataError(f"'{filename}' is not a readable CSV ({e}); check its quoting") from None
    if len(rows) < 2:
        raise DataError(f"'{filename}' needs a header row and at least one data row")
    if all(_number(h) is not None for h in header):
        raise DataError(f"'{filename}' starts with numbers; its first row must name the columns")
    repeated = sorted(h for h, count in Counter(header).items() if count > 1)
    if repeated:
        raise DataError(f"'{filename}' repeats the column name(s) {repeated}; give every column its own name")
    if target is None:
        col = len(header) - 1
    elif target in header:
        col = header.index(target)
    else:
        raise DataError(f"'{filename}' has no column '{target}'{_column_hint(target, header)}; "
                        f"its columns are {header[:50]}")
    if len(header) < 2:
        raise DataError(f"'{filename}' has one column; it needs feature columns and a target column")
    _check_size((len(rows) - 1, len(header) - 1), f"'{filename}'")
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(f"'{filename}' line {line} has {len(row)} fields but the header has {len(header)}")
    labels = [row[col].strip() for row in rows[1:]]
    try:  # numpy converts all cells at once; on failure, look for the first bad cell to name it
        x = np.array([row[:col] + row[col + 1:] for row in rows[1:]], dtype=np.float64)
        ok = np.isfinite(x).all() and not any(v.lower() in MISSING for v in labels)
    except ValueError:
        ok = False
    if not ok:
        _explain(rows, header, col, filename)
    return checked(x, _label_array(labels), names=(f"'{filename}'", f"'{filename}' column '{header[col]}'", "", ""))


def _column_hint(target: str, header: list[str]) -> str:
    """', but it has 'species' (names are case-sensitive)' or a did-you-mean, or ''."""
    same_case = [h for h in header if h.lower() == target.lower()]
    if same_case:
        return f", but it has '{same_case[0]}' (column names are case-sensitive): use target '{same_case[0]}'"
    guess = did_you_mean(target, header)
    return f" (did you mean '{guess}'?)" if guess else ""


def _explain(rows: list[list[str]], header: list[str], col: int, filename: str) -> NoReturn:
    for line, row in enumerate(rows[1:], start=2):
        for j, cell in enumerate(c.strip() for c in row):
            where = f"'{filename}' line {line}, column '{header[j]}'"
            if cell.lower() in MISSING:
                raise DataError(f"{where}: missing value; fill it or drop the row")
            v = _number(cell) if j != col else 0.0
            if v is None:
                raise DataError(f"{where}: '{cell[:50]}' is not a number; only the target column may hold text "
                                "(encode categories as numbers)")
            if not math.isfinite(v):
                raise DataError(f"{where}: {cell[:50]} is not finite; use finite numbers")
    raise DataError(f"'{filename}': its feature columns could not be read as numbers")


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _label_array(labels: list[str]) -> np.ndarray:
    """Integers stay integers (class labels), decimals become floats (targets), text stays text."""
    for kind, dtype in ((int, np.int64), (float, np.float64)):
        try:
            return np.array([kind(v) for v in labels], dtype=dtype)
        except (ValueError, OverflowError):
            pass
    return np.array(labels)


def npz_arrays(raw: RawArrays) -> dict[str, np.ndarray]:
    """The arrays of an .npz of this data set: x, y alone, else the train/val/test layout."""
    arrays = {"x": raw.x, "y": raw.y}
    if raw.x_test is not None or raw.x_val is not None:
        arrays = {"x_train": raw.x, "y_train": raw.y}
        for key in ("x_val", "y_val", "x_test", "y_test"):
            if getattr(raw, key) is not None:
                arrays[key] = getattr(raw, key)
    if raw.classes is not None:
        arrays["classes"] = np.array(raw.classes, dtype=str)
    return arrays


def to_npz_bytes(raw: RawArrays) -> bytes:
    arrays = npz_arrays(raw)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def from_npz_bytes(b: bytes) -> RawArrays:
    return _read_npz(b, "stored data set")



# IDX: two zero bytes, a type code, the number of dimensions, each size as a big-endian uint32,
# then the values, big-endian
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(content: bytes, name: str) -> np.ndarray:
    """An IDX array, gzip-compressed or not."""
    if content.startswith(b"\x1f\x8b"):
        try:
            content = gzip.decompress(content)
        except (OSError, EOFError) as e:
            raise DataError(f"{name} is not a readable gzip file ({e}); delete it to download it again") from None
    if len(content) < 4 or content[:2] != b"\0\0" or content[2] not in IDX_DTYPES:
        raise DataError(f"{name} is not an IDX file (it starts with {content[:4]!r})")
    ndim, dtype = content[3], np.dtype(IDX_DTYPES[content[2]])
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(content[4:header], dtype=">u4")) if len(content) >= header else None
    if shape is None or len(content) - header != math.prod(shape) * dtype.itemsize:
        raise DataError(f"{name}: its IDX header declares shape {list(shape or [])} but the file holds "
                        f"{len(content) - header:,} bytes of values; the file is damaged")
    _check_size(shape, name)
    return np.frombuffer(content, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))
