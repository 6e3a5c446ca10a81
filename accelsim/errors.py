"""Exceptions raised by the library. Only the CLI turns them into exit codes."""

from __future__ import annotations


class AccelsimError(Exception):
    """Base class of every error accelsim raises on purpose."""


class InputError(AccelsimError):
    """Bad user input (config, topology, trace, arguments): the CLI prints it on one line, exit 2.

    The message names the file and the field, e.g. ``hw.yaml: pe_array.rows: expected an integer``.
    """

    def __init__(self, message: str, *, path: str | None = None, field: str | None = None) -> None:
        self.message = message
        self.path = path
        self.field = field
        parts = [p for p in (path, field) if p]
        parts.append(message)
        super().__init__(": ".join(parts))


class SimulationError(AccelsimError):
    """A simulation could not be completed although the input was valid (exit 1)."""
