"""Checkpoints without pickle: tensors in an .npz (allow_pickle=False), structure in JSON.

A checkpoint is a nested structure of dicts, lists, tuples, scalars (int, float, bool, str, None)
and tensors / numpy arrays, e.g. ``{"step": 10, "model": model.state_dict(), "optimizer":
optimizer.state_dict(), "rng": generator.get_state()}``. :func:`save_checkpoint` writes it to
``PATH.npz`` + ``PATH.json`` atomically (the JSON, written last, is the commit marker);
:func:`load_checkpoint` restores it with tensors back on the requested device.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from accelsim.errors import InputError
from accelsim.fileio import atomic_write_bytes, atomic_write_text
from accelsim.inputs import load_json_object

FORMAT = "accelsim-checkpoint"
VERSION = 1
_TENSOR = "__tensor__"
_ARRAY = "__array__"
_TUPLE = "__tuple__"
_INT_KEYS = "__int_keys__"


def _flatten(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """JSON skeleton of ``value``; tensors and arrays go into ``arrays`` under a numbered key."""
    if isinstance(value, torch.Tensor):
        key = f"t{len(arrays)}"
        tensor = value.detach().cpu()
        if tensor.dtype == torch.bfloat16:
            raise InputError("bfloat16 tensors are not supported in checkpoints", field=key)
        arrays[key] = tensor.contiguous().numpy()
        return {_TENSOR: key}
    if isinstance(value, np.ndarray):
        key = f"t{len(arrays)}"
        arrays[key] = value
        return {_ARRAY: key}
    if isinstance(value, dict):
        int_keys = bool(value) and all(isinstance(k, int) for k in value)
        if not int_keys and not all(isinstance(k, str) for k in value):
            raise TypeError(f"checkpoint dict keys must be all str or all int: {list(value)[:5]}")
        body = {str(k): _flatten(v, arrays) for k, v in value.items()}
        return {_INT_KEYS: body} if int_keys else body
    if isinstance(value, (list, tuple)):
        items = [_flatten(v, arrays) for v in value]
        return {_TUPLE: items} if isinstance(value, tuple) else items
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint")


def _restore(skeleton: Any, arrays: Any, device: str) -> Any:
    if isinstance(skeleton, dict):
        if _TENSOR in skeleton:
            return torch.from_numpy(np.array(arrays[skeleton[_TENSOR]])).to(device)
        if _ARRAY in skeleton:
            return np.array(arrays[skeleton[_ARRAY]])
        if _TUPLE in skeleton:
            return tuple(_restore(v, arrays, device) for v in skeleton[_TUPLE])
        if _INT_KEYS in skeleton:
            return {int(k): _restore(v, arrays, device) for k, v in skeleton[_INT_KEYS].items()}
        return {k: _restore(v, arrays, device) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [_restore(v, arrays, device) for v in skeleton]
    return skeleton


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to PATH.npz and PATH.json, atomically, JSON last."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    skeleton = _flatten(state, arrays)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path.with_suffix(".npz"), buffer.getvalue())
    atomic_write_text(path.with_suffix(".json"), json.dumps(
        {"format": FORMAT, "version": VERSION, "state": skeleton}, sort_keys=True))


def checkpoint_exists(path: str | Path) -> bool:
    """Whether a complete checkpoint (its JSON commit marker) is at PATH."""
    return Path(path).with_suffix(".json").is_file()


def load_checkpoint(path: str | Path, device: str = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (never unpickles)."""
    path = Path(path)
    json_path, npz_path = path.with_suffix(".json"), path.with_suffix(".npz")
    try:
        header = load_json_object(json_path)
    except InputError as error:
        raise InputError(f"unreadable checkpoint ({error.message})", path=str(json_path)) from None
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise InputError(f"not an {FORMAT} v{VERSION} file", path=str(json_path))
    try:
        with np.load(npz_path, allow_pickle=False) as arrays:
            return _restore(header["state"], arrays, device)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"corrupt checkpoint data ({error})", path=str(npz_path)) from None
