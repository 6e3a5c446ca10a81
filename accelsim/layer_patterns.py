"""Layer selection by glob patterns of layer names (``layer*.conv2``), shared by ``trace
synth`` and ``record``: which layers get gate or weight masks."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence


def parse_patterns(text: str) -> tuple[str, ...]:
    """``"layer*.conv2, fc"`` -> ``("layer*.conv2", "fc")`` (empty text: no patterns)."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def matches(name: str, patterns: Sequence[str]) -> bool:
    """Whether layer ``name`` matches one of ``patterns`` (``fnmatch``, case-sensitive)."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def unmatched_pattern(patterns: Sequence[str], names: Sequence[str]) -> str | None:
    """A one-line problem for the first of ``patterns`` that matches none of ``names``."""
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
            return f"pattern {pattern!r} matches no layer (layers: {shown})"
    return None


def grouped_conv_problem(name: str, groups: int, what: str) -> str:
    """Why a grouped conv cannot take ``what`` (gate / weight) masks."""
    return (f"layer {name!r} is a grouped conv (groups={groups}): accelsim replays no {what} "
            f"masks on grouped convolutions; leave it out of the layer patterns")
