"""The report page: blocks of content rendered to Markdown and to one self-contained HTML file.

A :class:`Page` is a list of blocks (headings, paragraphs, lists, tables, figures and collapsible
sections). :meth:`Page.markdown` writes GitHub-flavoured Markdown (collapsible sections as
``<details>``); :meth:`Page.html` fills the jinja2 template ``templates/report.html.j2``: a table
of contents from the level-2 and level-3 headings, and every figure inlined as a palette PNG, so
the page needs nothing beside it. :func:`save_figure` writes a figure's PNG (palette-quantized,
for small pages) and SVG with fixed metadata, so the same figure gives the same bytes.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from accelsim.fileio import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PNG_DPI = 110
PNG_COLOURS = 128  # palette size: plots use a dozen colours plus anti-aliasing shades
SVG_SALT = "accelsim"


def use_agg() -> None:
    """Select matplotlib's non-interactive Agg backend: reports never open windows and work
    headless. The plots draw on bare Figures, never through pyplot; where pyplot is already in
    use (a notebook) its backend is left alone, as switching it would close the user's figures.
    """
    import sys

    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")


def save_figure(fig: Figure, folder: Path, stem: str) -> tuple[Path, Path]:
    """Write ``stem.png`` (palette-quantized) and ``stem.svg`` atomically, fixed metadata.

    SVG ids are salted with a constant and dates left out, so the bytes depend only on the figure
    (and the matplotlib and Pillow versions).
    """
    import matplotlib as mpl
    from PIL import Image

    paths = (folder / f"{stem}.png", folder / f"{stem}.svg")
    with mpl.rc_context({"svg.hashsalt": SVG_SALT, "svg.fonttype": "path"}):
        raw = io.BytesIO()
        fig.savefig(raw, format="png", dpi=PNG_DPI)
        svg = io.BytesIO()
        fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": "accelsim"})
    raw.seek(0)
    with Image.open(raw) as image:
        palette = image.convert("RGB").quantize(colors=PNG_COLOURS,
                                                method=Image.Quantize.MEDIANCUT,
                                                dither=Image.Dither.NONE)
        png = io.BytesIO()
        palette.save(png, format="png", optimize=True)
    atomic_write_bytes(paths[0], png.getvalue())
    atomic_write_bytes(paths[1], svg.getvalue())
    return paths


@dataclass
class Block:
    """One element of the page. ``kind``: heading, paragraph, list, table, figure, open (a
    collapsible section starts; ``text`` is its summary line) or close."""

    kind: str
    text: str = ""
    level: int = 2
    anchor: str = ""
    style: str = ""
    items: list[str] = field(default_factory=list)
    table: pd.DataFrame | None = None
    path: str = ""
    open: bool = False


def inline(text: str) -> str:
    """Markdown's inline ``**bold**`` and backticked code as escaped HTML."""
    escaped = html.escape(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)


def markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    rows = ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |"
            for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def _anchor(text: str) -> str:
    plain = re.sub(r"[*`]", "", text).lower()
    return re.sub(r"[^a-z0-9]+", "-", plain).strip("-") or "section"


class Page:
    """The report's content, rendered to Markdown and to self-contained HTML."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blocks: list[Block] = []
        self._anchors: set[str] = set()

    def heading(self, text: str, level: int = 2) -> None:
        anchor, n = _anchor(text), 2
        base = anchor
        while anchor in self._anchors:
            anchor, n = f"{base}-{n}", n + 1
        self._anchors.add(anchor)
        self.blocks.append(Block("heading", text, level=level, anchor=anchor))

    def paragraph(self, text: str, style: str = "") -> None:
        """A paragraph; ``style="caveat"`` highlights it."""
        self.blocks.append(Block("paragraph", text, style=style))

    def bullets(self, items: Sequence[str]) -> None:
        self.blocks.append(Block("list", items=list(items)))

    def table(self, frame: pd.DataFrame) -> None:
        self.blocks.append(Block("table", table=frame))

    def figure(self, relpath: str, caption: str) -> None:
        self.blocks.append(Block("figure", caption, path=relpath))

    @contextmanager
    def section(self, summary: str, *, open: bool = False) -> Iterator[None]:
        """A collapsible section (``<details>``) around what the ``with`` body adds."""
        self.blocks.append(Block("open", summary, open=open))
        yield
        self.blocks.append(Block("close"))

    def markdown(self) -> str:
        out: list[str] = []
        for block in self.blocks:
            if block.kind == "heading":
                out.append(f"{'#' * block.level} {block.text}")
            elif block.kind == "paragraph":
                out.append(f"> {block.text}" if block.style == "caveat" else block.text)
            elif block.kind == "list":
                out.append("\n".join(f"- {item}" for item in block.items))
            elif block.kind == "table":
                assert block.table is not None
                out.append(markdown_table(block.table))
            elif block.kind == "figure":
                out.append(f"![{block.text}]({block.path})\n\n*{block.text}*")
            elif block.kind == "open":
                out.append(f"<details{' open' if block.open else ''}><summary>"
                           f"{inline(block.text)}</summary>")
            else:
                out.append("</details>")
        return "\n\n".join(out) + "\n"

    def toc(self) -> list[dict[str, object]]:
        """The level-2 headings, each with its level-3 headings (``children``)."""
        entries: list[dict[str, object]] = []
        for block in self.blocks:
            if block.kind != "heading" or block.level not in (2, 3):
                continue
            entry = {"text": block.text, "anchor": block.anchor, "children": []}
            if block.level == 2 or not entries:
                entries.append(entry)
            else:
                children = entries[-1]["children"]
                assert isinstance(children, list)
                children.append(entry)
        return entries

    def html(self, title: str) -> str:
        import jinja2
        from markupsafe import Markup

        environment = jinja2.Environment(
            loader=jinja2.PackageLoader("accelsim", "templates"),
            autoescape=True, keep_trailing_newline=True, trim_blocks=True)
        environment.filters["inline"] = lambda text: Markup(inline(str(text)))
        blocks = []
        for block in self.blocks:
            shown: dict[str, object] = dict(block.__dict__)
            if block.kind == "table":
                assert block.table is not None
                shown["columns"] = [str(c) for c in block.table.columns]
                shown["rows"] = [[str(v) for v in row]
                                 for row in block.table.itertuples(index=False)]
            elif block.kind == "figure":
                data = base64.b64encode((self.root / block.path).read_bytes()).decode("ascii")
                shown["src"] = f"data:image/png;base64,{data}"
            blocks.append(shown)
        template = environment.get_template("report.html.j2")
        return template.render(title=title, blocks=blocks, toc=self.toc())
