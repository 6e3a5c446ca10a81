"""Click options shared by several commands (one definition each)."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from accelsim.schema import one_line, optional_inner

F = TypeVar("F", bound=Callable[..., object])


def schema_option_type(schema: type, name: str) -> click.ParamType | type:
    """The click type of field ``name`` of a schema (:mod:`accelsim.schema`): its choices or
    its range, so that an option and its recipe key accept the same values."""
    field = next(f for f in dataclasses.fields(schema) if f.name == name)
    tp, meta = typing.get_type_hints(schema)[name], field.metadata
    tp = optional_inner(tp) or tp
    if meta.get("choices"):
        return click.Choice(list(meta["choices"]))
    low = meta.get("gt") if meta.get("gt") is not None else meta.get("ge")
    high = meta.get("lt") if meta.get("lt") is not None else meta.get("le")
    if tp is int:
        return click.IntRange(low if meta.get("gt") is None else low + 1,
                              high if meta.get("lt") is None else high - 1)
    if tp is float:
        return click.FloatRange(low, high, min_open=meta.get("gt") is not None,
                                max_open=meta.get("lt") is not None)
    return tp


def echo_line(text: str) -> None:
    """Print ``text`` to stderr as exactly one line: control characters a user's input put in
    it (a newline in a file name or a YAML key) are shown escaped."""
    click.echo(one_line(text), err=True)


def out_dir_option(help_text: str, *, required: bool = True) -> Callable[[F], F]:
    """``--out DIR``: an output directory, checked writable or creatable when the command line
    is parsed, before any work (:func:`accelsim.fileio.check_output_dir`)."""
    def check(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
        if value is not None and not ctx.resilient_parsing:
            from accelsim.fileio import check_output_dir
            check_output_dir(value)
        return value

    return click.option("--out", "out_dir", required=required, callback=check,
                        type=_NonEmptyPath(file_okay=False, path_type=Path), help=help_text)


class _NonEmptyPath(click.Path):
    """click's Path, refusing ``""`` (which would mean the current directory)."""

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> object:
        if value == "":
            self.fail("is empty (give a directory; '.' for the current one)", param, ctx)
        return super().convert(value, param, ctx)


def hardware_options(hw_help: str = "Hardware YAML (see hw_configs/).",
                     set_example: str = "pe_array.rows=16") -> Callable[[F], F]:
    """``--hw FILE.yaml`` (required) and repeatable ``--set KEY=VALUE`` overrides."""
    def decorate(function: F) -> F:
        function = click.option(
            "--set", "overrides", multiple=True, metavar="KEY=VALUE",
            help=f"Override a hardware key, e.g. --set {set_example} (repeatable).")(function)
        return click.option("--hw", "hw_file", required=True,
                            type=click.Path(dir_okay=False, path_type=Path),
                            help=hw_help)(function)
    return decorate


def network_shape_options(function: F) -> F:
    """``--width``, ``--in-channels``, ``--image-size`` of a built-in network."""
    function = click.option("--image-size", type=click.IntRange(min=4), default=None,
                            help="Input height and width of a built-in network (pixels) "
                            "[default: 32 for the CIFAR ResNets, 224 for the ImageNet "
                            "ones].")(function)
    function = click.option("--in-channels", type=click.IntRange(min=1), default=3,
                            show_default=True, help="Input channels of a built-in network "
                            "(1 for Fashion-MNIST).")(function)
    return click.option("--width", type=click.FloatRange(min=0, min_open=True), default=1.0,
                        show_default=True, help="Width multiplier of a built-in network.")(function)
