"""Reading the files users give: text decoding, JSON, and strict, bounded YAML.

Every config, grid, recipe and topology file is read as bytes and decoded here, so a binary or
non-UTF-8 file gets one clear line instead of a decoding traceback. YAML is parsed with the safe
loader plus two rules of our own, checked before any value is built:

- a key given twice in one mapping (by what it means: ``1`` and ``0x1`` are one key) is an error
  (YAML's "last one wins" hides typos);
- a document may not hold more than :data:`MAX_YAML_NODES` values, counted as it is read and
  again with its aliases expanded ("billion laughs"), and an alias may not refer to itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from accelsim.errors import InputError
from accelsim.schema import short_key

MAX_TEXT_BYTES = 64 * 2**20  # a config, grid, recipe or topology file larger than this is refused
MAX_YAML_NODES = 100_000  # nodes of a YAML document, as read and with its aliases expanded
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _YamlRefused(yaml.YAMLError):
    """A document breaks one of our rules (duplicate key, alias expansion)."""

    def __init__(self, problem: str, line: int | None) -> None:
        super().__init__(problem)
        self.problem, self.line = problem, line


def _check_document(root: yaml.Node, scalar_key: Callable[[yaml.ScalarNode], Any]) -> None:
    """Refuse a composed document that repeats a key in a mapping, or whose aliases expand it
    beyond :data:`MAX_YAML_NODES` nodes or refer to the node containing them. Runs on the node
    graph, before any value is built (each node once: linear in the file)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _YamlRefused("an alias refers to the node that contains it (a recursive "
                               "structure)", node.start_mark.line + 1)
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            _check_keys(node, scalar_key)
            total += sum(size(k) + size(v) for k, v in node.value)
        active.discard(key)
        if total > MAX_YAML_NODES:
            raise _YamlRefused(f"aliases expand the document beyond {MAX_YAML_NODES:,} values "
                               "(an alias bomb?)", node.start_mark.line + 1)
        sizes[key] = total
        return total

    size(root)


def _check_keys(node: yaml.MappingNode, scalar_key: Callable[[yaml.ScalarNode], Any]) -> None:
    """A scalar key given twice in one mapping, by what it means (merge keys ``<<`` aside: what
    they merge may be overridden)."""
    first: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
            continue
        line, key = key_node.start_mark.line + 1, scalar_key(key_node)
        if key in first:
            raise _YamlRefused(f"duplicate key {short_key(key_node.value)!r} (first given at "
                               f"line {first[key]})", line)
        first[key] = line


class StrictLoader(yaml.SafeLoader):
    """The safe loader, refusing duplicate keys and documents that aliases blow up."""

    def compose_document(self) -> yaml.Node:
        self._composed = 0
        node = super().compose_document()
        _check_document(node, self._scalar_key)
        return node

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        """Count the nodes as they are composed: a huge file is refused before it is built."""
        self._composed = getattr(self, "_composed", 0) + 1
        if self._composed > MAX_YAML_NODES:
            raise _YamlRefused(f"more than {MAX_YAML_NODES:,} values: not a config, grid or "
                               "recipe", self.peek_event().start_mark.line + 1)
        return super().compose_node(parent, index)

    def _scalar_key(self, node: yaml.ScalarNode) -> Any:
        """What a scalar key means: ``1`` and ``0x1``, ``yes`` and ``true`` are one key."""
        if node.tag == "tag:yaml.org,2002:str":
            return node.value
        try:
            value = self.construct_object(node)
            hash(value)
        except (yaml.YAMLError, TypeError, ValueError, OverflowError):
            self.recursive_objects.pop(node, None)  # construct_object leaves it on failure
            return (node.tag, node.value)  # the constructor reports it when the value is built
        return value  # as the built mapping keys it: 1, 1.0 and true are one key


def parse_yaml(text: str, source: str, *, field: str | None = None) -> Any:
    """Parse one YAML document strictly; one-line InputError naming ``source`` (and the line)
    otherwise."""
    try:
        return yaml.load(text, Loader=StrictLoader)
    except _YamlRefused as error:
        raise InputError(error.problem, path=source,
                         field=field or (f"line {error.line}" if error.line else None)) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = field or (f"line {mark.line + 1}" if mark is not None else None)
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise InputError(f"invalid YAML: {problem}", path=source, field=where) from None
    except RecursionError:
        raise InputError("invalid YAML: nested too deeply", path=source, field=field) from None
    except (ValueError, TypeError, OverflowError) as error:  # a date or number out of range
        raise InputError(f"invalid YAML value ({' '.join(str(error).split())[:120]})",
                         path=source, field=field) from None


def read_text_file(path: str | Path, kind: str) -> str:
    """The UTF-8 text of ``path`` (a ``kind`` file: "YAML", "CSV"); one-line InputError if it
    is missing, unreadable, too large, binary or not UTF-8."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_TEXT_BYTES + 1)
    except FileNotFoundError:
        raise InputError("no such file", path=str(path)) from None
    except IsADirectoryError:
        raise InputError(f"is a directory, expected a {kind} file", path=str(path)) from None
    except OSError as error:
        raise InputError(f"cannot read ({error.strerror or error})", path=str(path)) from None
    if len(data) > MAX_TEXT_BYTES:
        raise InputError(f"larger than {MAX_TEXT_BYTES // 2**20} MiB: not a {kind} file "
                         "accelsim reads", path=str(path))
    hint = " (it looks gzip-compressed)" if data[:2] == b"\x1f\x8b" else ""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputError(f"not a text {kind} file: byte 0x{data[error.start]:02x} at offset "
                         f"{error.start} is not UTF-8{hint}", path=str(path)) from None
    if "\x00" in text:
        raise InputError(f"not a text {kind} file: it holds NUL bytes (a binary file?)",
                         path=str(path))
    return text


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML file whose top level is a mapping (empty file: error), read strictly."""
    data = parse_yaml(read_text_file(path, "YAML"), str(path))
    if not isinstance(data, dict):
        raise InputError("expected a YAML mapping at the top level", path=str(path))
    return data


def load_json_file(path: str | Path) -> Any:
    """A JSON file's value; one-line InputError naming the file if it is unreadable, not text
    or not JSON."""
    text = read_text_file(path, "JSON")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        raise InputError(f"invalid JSON ({' '.join(str(error).split())[:120]})",
                         path=str(path)) from None


def load_json_object(path: str | Path) -> dict[str, Any]:
    """A JSON file holding an object; one-line InputError naming the file otherwise."""
    data = load_json_file(path)
    if not isinstance(data, dict):
        raise InputError(f"expected a JSON object, got {type(data).__name__}", path=str(path))
    return data
