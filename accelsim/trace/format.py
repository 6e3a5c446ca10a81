"""Low-level pieces of the trace format: names, bit packing, checksums, JSON values, atomic writes.

Nothing here knows about layers; ``manifest``, ``writer`` and ``reader`` build on it. The format is
described in ``docs/trace-format.md``.
"""

from __future__ import annotations

import json
import math
import os
import re

try:  # ISA-L: zlib's crc32 and inflate, bit for bit, faster than zlib's own
    from isal import isal_zlib as zlib_fast
except ImportError:  # pragma: no cover - isal is a dependency; plain zlib gives the same results
    import zlib as zlib_fast  # type: ignore[no-redef]
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from accelsim.errors import InputError
from accelsim.fileio import TMP_SUFFIX

FORMAT_NAME = "accelsim-trace"
FORMAT_VERSION = "1.5"
MANIFEST_NAME = "manifest.json"
STEPS_DIR = "steps"
CODEC = "zlib"
RAW_CODEC = "none"  # format 1.1: the packed bits stored as they are
CODECS: tuple[str, ...] = (CODEC, RAW_CODEC)
MASK_DTYPE = "bool"
MASK_KINDS: tuple[str, ...] = ("gate", "weight", "select")  # select: format 1.5

_VERSION = re.compile(r"^(\d+)\.(\d+)$")
_STEP_FILE = re.compile(r"^step-(\d+)\.(json|bin)$")


class TraceError(InputError):
    """A trace that cannot be written or read.

    The message is one line naming the trace directory and, where it applies, the step, layer,
    branch and mask kind: ``trace DIR: step 10, layer 'layer1.0.conv1', branch 2, gate mask:
    crc32 mismatch (corrupt mask)``. ``path`` is the trace directory, ``field`` the location inside.
    """

    def __init__(self, message: str, *, path: str | Path | None = None,
                 field: str | None = None) -> None:
        super().__init__(message, path=None if path is None else f"trace {path}", field=field)
        self.path = None if path is None else str(path)
        self.message = message


def parse_version(text: object) -> tuple[int, int] | None:
    """``"1.0"`` -> ``(1, 0)``; None when ``text`` is not ``MAJOR.MINOR``."""
    match = _VERSION.match(text) if isinstance(text, str) else None
    return (int(match.group(1)), int(match.group(2))) if match else None


READER_VERSION: tuple[int, int] = parse_version(FORMAT_VERSION)  # type: ignore[assignment]


def mask_where(step: int, layer: str, branch: int, kind: str) -> str:
    """Location of one mask in error messages: ``step 10, layer 'conv1', branch 2, gate mask``."""
    return f"step {step}, layer {layer!r}, branch {branch}, {kind} mask"


# ---------------------------------------------------------------------------------------------
# Step files
# ---------------------------------------------------------------------------------------------


def step_stem(step: int) -> str:
    """File stem of a step: ``step-00000010`` (at least 8 digits)."""
    return f"step-{step:08d}"


def step_json_path(root: Path, step: int) -> Path:
    """``root/steps/step-XXXXXXXX.json``, the commit marker of a step."""
    return root / STEPS_DIR / f"{step_stem(step)}.json"


def step_bin_path(root: Path, step: int) -> Path:
    """``root/steps/step-XXXXXXXX.bin``, the concatenated compressed mask payloads of a step."""
    return root / STEPS_DIR / f"{step_stem(step)}.bin"


def list_step_files(root: Path) -> tuple[list[int], list[int]]:
    """Steps that have a ``.json`` (complete) and steps that have a ``.bin``, both sorted.

    Temporary files (``*.tmp``) and unrelated names are ignored. A name that parses but is not the
    canonical spelling (``step-010.json``) is an error: two files could claim the same step.
    """
    folder = root / STEPS_DIR
    if not folder.is_dir():
        return [], []
    found: dict[str, list[int]] = {"json": [], "bin": []}
    try:
        entries = list(os.scandir(folder))
    except OSError as error:
        raise cannot_read(root, STEPS_DIR, error) from None
    for entry in entries:
        match = _STEP_FILE.match(entry.name)
        if not match:
            continue
        step = int(match.group(1))
        if entry.name != f"{step_stem(step)}.{match.group(2)}":
            raise TraceError(f"unexpected step file name {entry.name!r} (expected "
                             f"'{step_stem(step)}.{match.group(2)}')", path=root)
        found[match.group(2)].append(step)
    return sorted(found["json"]), sorted(found["bin"])


def is_step_file(name: str) -> bool:
    """Whether ``name`` is a step file or a temporary file of one (``step-*.tmp``)."""
    return bool(_STEP_FILE.match(name)) or (name.startswith("step-") and name.endswith(TMP_SUFFIX))


# ---------------------------------------------------------------------------------------------
# Masks: bit packing
# ---------------------------------------------------------------------------------------------


def mask_size(shape: Sequence[int]) -> int:
    """Number of mask elements (bits)."""
    return math.prod(shape)


def packed_size(shape: Sequence[int]) -> int:
    """Bytes of a packed mask: ceil(elements / 8)."""
    return (mask_size(shape) + 7) // 8


def pack_mask(mask: np.ndarray) -> bytes:
    """Bool mask (any shape) -> bytes: C-order elements, 8 per byte, first element in bit 0.

    Equals ``np.packbits(mask.ravel(order="C"), bitorder="little")``; the last byte is padded
    with zero bits.
    """
    return np.packbits(mask.ravel(order="C"), bitorder="little").tobytes()


def unpack_mask(packed: bytes, shape: Sequence[int]) -> np.ndarray:
    """Inverse of :func:`pack_mask`: a new bool array of ``shape``."""
    bits = np.unpackbits(np.frombuffer(packed, dtype=np.uint8), count=mask_size(shape),
                         bitorder="little")
    return bits.view(np.bool_).reshape(tuple(shape))


def popcount_words(words: np.ndarray) -> int:
    """Set bits of uint64 words (numpy's bitwise_count)."""
    return int(np.bitwise_count(words).sum())


def packed_ones(packed: np.ndarray, count: int,
                count_words: Callable[[np.ndarray], int] = popcount_words) -> int:
    """Set bits among the first ``count`` bits of packed uint8 bits (padding bits ignored):
    whole uint64 words by ``count_words`` (numpy's count by default; the replay passes
    :func:`accelsim.kernels.popcount_words`), the tail by numpy."""
    whole = count // 8
    words = whole // 8
    ones = int(count_words(packed[:words * 8].view(np.uint64))) if words else 0
    if whole > words * 8:
        ones += int(np.bitwise_count(packed[words * 8:whole]).sum(dtype=np.int64))
    if count % 8:
        ones += int(np.bitwise_count(packed[whole] & np.uint8((1 << (count % 8)) - 1)))
    return ones


def crc32(data: bytes) -> int:
    """CRC-32 (zlib's, as an unsigned 32-bit integer) of the packed bits."""
    return zlib_fast.crc32(data) & 0xFFFFFFFF


# ---------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------


def to_json_value(value: Any, where: str, *, nonfinite_to_null: bool = False) -> Any:
    """A copy of ``value`` made of JSON types only (dict with str keys, list, str, int, float,
    bool, None). Tuples become lists, numpy scalars and arrays Python values.

    Non-finite floats become None when ``nonfinite_to_null``, else they are an error (JSON has no
    NaN). Raises ValueError naming the dotted location ``where`` of an unsupported value.
    """
    if isinstance(value, np.generic | np.ndarray):
        value = value.tolist()
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        if nonfinite_to_null:
            return None
        raise ValueError(f"{where}: {value} is not a finite number")
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: keys must be strings, got {key!r}")
            out[key] = to_json_value(item, f"{where}.{key}", nonfinite_to_null=nonfinite_to_null)
        return out
    if isinstance(value, list | tuple):
        return [to_json_value(item, f"{where}[{i}]", nonfinite_to_null=nonfinite_to_null)
                for i, item in enumerate(value)]
    raise ValueError(f"{where}: a {type(value).__name__} cannot be stored in JSON")


def _is_flat(value: Any) -> bool:
    """A list or dict whose items are scalars or lists of scalars: written on one line."""
    items = value.values() if isinstance(value, dict) else value
    return all(not isinstance(item, dict | list)
               or (isinstance(item, list) and not any(isinstance(v, dict | list) for v in item))
               for item in items)


def _format_json(value: Any, indent: str) -> str:
    if not isinstance(value, dict | list) or not value or _is_flat(value):
        return json.dumps(value, allow_nan=False, ensure_ascii=False)
    inner = indent + "  "
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(key, ensure_ascii=False)}: {_format_json(item, inner)}"
                 for key, item in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    items = [f"{inner}{_format_json(item, inner)}" for item in value]
    return "[\n" + ",\n".join(items) + f"\n{indent}]"


def dumps_json(data: Any) -> bytes:
    """Strict (no NaN) UTF-8 JSON with a final newline, indented by 2 except that a container
    of scalars (and of lists of scalars), such as one mask entry, stays on one line."""
    return (_format_json(data, "") + "\n").encode()


def cannot_read(root: Path, where: str, error: OSError) -> TraceError:
    """The TraceError of a trace file the system refused to read: ``trace DIR: step 3:
    steps/step-00000003.bin: cannot read (Is a directory)``."""
    return TraceError(f"cannot read ({error.strerror or error})", path=root, field=where)


def load_json(path: Path, root: Path, name: str) -> dict[str, Any]:
    """Parse a JSON object from ``path``; TraceError (naming ``name``: the location and the
    file) if missing, unreadable or invalid."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise TraceError("missing", path=root, field=name) from None
    except OSError as error:
        raise cannot_read(root, name, error) from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise TraceError(f"invalid JSON ({error})", path=root, field=name) from None
    except RecursionError:
        raise TraceError("invalid JSON (nested too deeply)", path=root, field=name) from None
    if not isinstance(data, dict):
        raise TraceError(f"expected a JSON object, got {type(data).__name__}", path=root,
                         field=name)
    return data
