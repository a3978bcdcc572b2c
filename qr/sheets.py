"""Printing labels: A4 sheets (columns x rows) or one label a page for a label printer, as PDF, SVG or PNG.

Each label shows its QR code, 扫码报事, the class name, the owner, the phone to call and the code in its
printed form. The layout of one label is computed once per size; every format draws the same boxes.
PDF embeds a subset of the CJK font (see ``qr.fonts``); SVG names the installed font family; PNG is
drawn with it. Labels are drawn one at a time, so memory holds one QR symbol, not the whole run.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import BinaryIO, Literal
from xml.sax.saxutils import escape

import numpy as np
import numpy.typing as npt

from common.errors import InvalidInput
from qr.fonts import FAMILY, cjk_font, truetype_subset
from qr.matrix import Matrix, qr_matrix
from qr.pdf import PdfWriter

CALL_TO_ACTION = "扫码报事"
A4_MM = (210.0, 297.0)
_PT_PER_MM = 72 / 25.4
# Modules of light margin drawn around the symbol inside its box; the label's padding adds to it.
_QUIET_MODULES = 2
_ELLIPSIS = "…"
Format = Literal["pdf", "svg", "png"]
FORMATS: tuple[str, ...] = ("pdf", "svg", "png")


@dataclass(frozen=True, slots=True)
class LabelContent:
    """What one label shows; ``url`` is what its QR code encodes."""

    url: str
    printed_code: str
    class_name: str
    owner: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class Layout:
    """Where labels go on a page, in millimetres; labels fill rows left to right, top to bottom."""

    page_width: float
    page_height: float
    columns: int
    rows: int
    label_width: float
    label_height: float

    def __post_init__(self) -> None:
        if self.columns < 1 or self.rows < 1:
            raise InvalidInput("a sheet needs at least one column and one row", field="layout")
        if self.label_width < 20 or self.label_height < 12:
            raise InvalidInput(
                f"labels of {self.label_width:g}x{self.label_height:g} mm are too small: at least 20x12 mm",
                field="label_size",
            )
        if self.columns * self.label_width > self.page_width + 1e-6 or (
            self.rows * self.label_height > self.page_height + 1e-6
        ):
            raise InvalidInput(
                f"{self.columns}x{self.rows} labels of {self.label_width:g}x{self.label_height:g} mm do not "
                f"fit on a {self.page_width:g}x{self.page_height:g} mm page",
                field="layout",
            )

    @classmethod
    def sheet(cls, columns: int = 3, rows: int = 8, label_size: tuple[float, float] | None = None) -> Layout:
        """An A4 sheet of ``columns`` x ``rows`` labels; their size defaults to the page divided evenly."""
        width, height = label_size or (A4_MM[0] / max(columns, 1), A4_MM[1] / max(rows, 1))
        return cls(A4_MM[0], A4_MM[1], columns, rows, width, height)

    @classmethod
    def single(cls, width: float = 50.0, height: float = 30.0) -> Layout:
        """One label a page, the page the size of the label (for a label printer)."""
        return cls(width, height, 1, 1, width, height)

    @property
    def per_page(self) -> int:
        """Labels on one page."""
        return self.columns * self.rows

    def origin(self, slot: int) -> tuple[float, float]:
        """Top-left corner (mm from the page's top-left) of the ``slot``-th label on a page."""
        margin_x = (self.page_width - self.columns * self.label_width) / 2
        margin_y = (self.page_height - self.rows * self.label_height) / 2
        row, column = divmod(slot, self.columns)
        return margin_x + column * self.label_width, margin_y + row * self.label_height


# --- one label's geometry (mm from the label's top-left; text sizes in points) -----------------------


@dataclass(frozen=True)
class _TextBox:
    x: float
    baseline: float
    width: float
    size: float  # points
    min_size: float


@dataclass(frozen=True)
class _Geometry:
    qr_x: float
    qr_y: float
    qr_side: float
    lines: tuple[_TextBox, ...]  # call to action, class, owner, phone
    code: _TextBox


@lru_cache(maxsize=8)
def _geometry(width: float, height: float) -> _Geometry:
    pad = max(1.0, min(width, height) * 0.05)
    code_height = min(max(height * 0.12, 2.6), 5.0)
    side = min(height - 2 * pad - code_height, width * 0.55)
    text_x = pad + side + pad * 0.6
    text_width = width - text_x - pad
    line_pitch = side / 4
    size = min(line_pitch * 0.72 * _PT_PER_MM, 14.0)
    lines = tuple(
        _TextBox(
            text_x,
            pad + line_pitch * (i + 0.78),
            text_width,
            size * (1.15 if i == 0 else 1.0),
            max(size * 0.5, 4.0),
        )
        for i in range(4)
    )
    code_size = min(code_height * 0.8 * _PT_PER_MM, 12.0)
    code = _TextBox(
        pad, height - pad - code_height * 0.15, width - 2 * pad, code_size, max(code_size * 0.6, 4.0)
    )
    return _Geometry(pad, pad, side, lines, code)


@lru_cache(maxsize=1)
def _measure_font() -> object:
    from PIL import ImageFont

    font = cjk_font()
    return ImageFont.truetype(str(font.path), 100, index=font.index)


@lru_cache(maxsize=65536)
def _em_width(text: str) -> float:
    """Width of ``text`` in ems of the label font."""
    return float(_measure_font().getlength(text)) / 100  # type: ignore[attr-defined]


def _fit(text: str, box: _TextBox) -> tuple[str, float]:
    """``text`` at the largest size up to the box's that fits its width, shortened with … if need be."""
    width_mm = _em_width(text) * box.size / _PT_PER_MM
    if width_mm <= box.width:
        return text, box.size
    size = max(box.min_size, box.size * box.width / width_mm * 0.999)  # a hair under: rounding
    while text and _em_width(text) * size / _PT_PER_MM > box.width:
        text = text[:-2] + _ELLIPSIS if len(text) > 1 else ""
    return text, size


def _texts(label: LabelContent, geometry: _Geometry) -> list[tuple[_TextBox, str, float]]:
    action, class_line, owner_line, phone_line = geometry.lines
    placed = [(action, *_fit(CALL_TO_ACTION, action)), (class_line, *_fit(label.class_name, class_line))]
    if label.owner:
        placed.append((owner_line, *_fit(label.owner, owner_line)))
    if label.phone:
        # The number is the point of the label: drop the word 电话 and shrink further rather than cut it.
        small = replace(phone_line, min_size=3.5)
        text, size = _fit(f"电话 {label.phone}", phone_line)
        if text.endswith(_ELLIPSIS):
            text, size = _fit(label.phone, small)
        placed.append((phone_line, text, size))
    placed.append((geometry.code, *_fit(label.printed_code, geometry.code)))
    return placed


def _runs(matrix: Matrix) -> Iterator[tuple[int, int, int]]:
    """Horizontal runs of dark modules as (row, first column, length)."""
    padded = np.zeros((matrix.shape[0], matrix.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = matrix
    edges: npt.NDArray[np.int8] = np.diff(padded, axis=1)
    rows_start, cols_start = np.nonzero(edges == 1)
    _, cols_end = np.nonzero(edges == -1)
    for row, start, end in zip(rows_start.tolist(), cols_start.tolist(), cols_end.tolist(), strict=True):
        yield row, start, end - start


def _pages(labels: Sequence[LabelContent], layout: Layout) -> Iterator[Sequence[LabelContent]]:
    for first in range(0, len(labels), layout.per_page):
        yield labels[first : first + layout.per_page]


def _chars(labels: Iterable[LabelContent]) -> set[str]:
    chars = set(CALL_TO_ACTION + "电话" + _ELLIPSIS)
    for label in labels:
        chars.update(label.class_name, label.owner or "", label.phone or "", label.printed_code)
    return chars


# --- PDF -------------------------------------------------------------------------------------------


def write_pdf(labels: Sequence[LabelContent], layout: Layout, out: BinaryIO | str) -> int:
    """Write the labels as one PDF (the CJK font embedded as a subset); returns the number of pages.

    Pages go to ``out`` as they are drawn (``qr.pdf``): memory holds one page, not the document.
    """
    if not labels:
        raise InvalidInput("no labels to print: the selection matched no asset", field="selection")
    font = truetype_subset(_chars(labels))
    page_h = layout.page_height * _PT_PER_MM
    geometry = _geometry(layout.label_width, layout.label_height)
    with contextlib.ExitStack() as stack:
        stream = stack.enter_context(open(out, "wb")) if isinstance(out, str) else out
        writer = PdfWriter(stream, font, (layout.page_width * _PT_PER_MM, page_h), "smartcode labels")
        pages = 0
        for page in _pages(labels, layout):
            ops = []
            for slot, label in enumerate(page):
                left, top = layout.origin(slot)
                ops.append(_pdf_label(writer, label, geometry, left * _PT_PER_MM, page_h - top * _PT_PER_MM))
            writer.add_page("\n".join(ops))
            pages += 1
        writer.close()
    return pages


def _pdf_label(writer: PdfWriter, label: LabelContent, geometry: _Geometry, left: float, top: float) -> str:
    """The content-stream operators of one label whose top-left corner is at (left, top) points."""
    matrix = qr_matrix(label.url)
    n = matrix.shape[0]
    module = geometry.qr_side * _PT_PER_MM / (n + 2 * _QUIET_MODULES)
    x0 = left + geometry.qr_x * _PT_PER_MM + _QUIET_MODULES * module
    y0 = top - geometry.qr_y * _PT_PER_MM - _QUIET_MODULES * module
    # Module units from the symbol's top-left corner, y pointing down: a run is "col row len 1 re".
    ops = [f"q {_n(module)} 0 0 {_n(-module)} {_n(x0)} {_n(y0)} cm"]
    ops += [f"{column} {row} {length} 1 re" for row, column, length in _runs(matrix)]
    ops.append("f Q BT")
    for box, text, size in _texts(label, geometry):
        x, y = left + box.x * _PT_PER_MM, top - box.baseline * _PT_PER_MM
        ops.append(f"/F1 {_n(size)} Tf 1 0 0 1 {_n(x)} {_n(y)} Tm {writer.text(text)} Tj")
    ops.append("ET")
    return "\n".join(ops)


def _n(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


# --- SVG and PNG: one document per page --------------------------------------------------------------


def page_documents(
    labels: Sequence[LabelContent], layout: Layout, fmt: Format, *, dpi: int = 300
) -> Iterator[bytes]:
    """Each page as an SVG document or a PNG image (``dpi`` for PNG), in order."""
    if not labels:
        raise InvalidInput("no labels to print: the selection matched no asset", field="selection")
    render: Callable[[Sequence[LabelContent], Layout, int], bytes] = _svg_page if fmt == "svg" else _png_page
    for page in _pages(labels, layout):
        yield render(page, layout, dpi)


def _svg_page(page: Sequence[LabelContent], layout: Layout, _dpi: int) -> bytes:
    geometry = _geometry(layout.label_width, layout.label_height)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{layout.page_width:g}mm" '
        f'height="{layout.page_height:g}mm" viewBox="0 0 {layout.page_width:g} {layout.page_height:g}">',
        '<rect width="100%" height="100%" fill="#fff"/>',
        f'<g font-family="\'{FAMILY}\', sans-serif" fill="#000">',
    ]
    for slot, label in enumerate(page):
        left, top = layout.origin(slot)
        matrix = qr_matrix(label.url)
        module = geometry.qr_side / (matrix.shape[0] + 2 * _QUIET_MODULES)
        x0 = left + geometry.qr_x + _QUIET_MODULES * module
        y0 = top + geometry.qr_y + _QUIET_MODULES * module
        runs = "".join(f"M{c} {r}h{n}v1h-{n}z" for r, c, n in _runs(matrix))
        parts.append(
            f'<path transform="translate({x0:.3f} {y0:.3f}) scale({module:.5f})" d="{runs}" '
            'shape-rendering="crispEdges"/>'
        )
        for box, text, size in _texts(label, geometry):
            parts.append(
                f'<text x="{left + box.x:.2f}" y="{top + box.baseline:.2f}" '
                f'font-size="{size / _PT_PER_MM:.3f}">{escape(text)}</text>'
            )
    parts.append("</g></svg>")
    return "\n".join(parts).encode("utf-8")


def _png_page(page: Sequence[LabelContent], layout: Layout, dpi: int) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    px = dpi / 25.4
    image = Image.new("1", (round(layout.page_width * px), round(layout.page_height * px)), 1)
    draw = ImageDraw.Draw(image)
    geometry = _geometry(layout.label_width, layout.label_height)
    font = cjk_font()
    fonts: dict[int, ImageFont.FreeTypeFont] = {}
    for slot, label in enumerate(page):
        left, top = layout.origin(slot)
        matrix = qr_matrix(label.url)
        # Whole pixels per module keep every module the same width, which decoders like.
        module = max(1, int(geometry.qr_side * px / (matrix.shape[0] + 2 * _QUIET_MODULES)))
        x0 = round((left + geometry.qr_x) * px) + _QUIET_MODULES * module
        y0 = round((top + geometry.qr_y) * px) + _QUIET_MODULES * module
        for row, column, length in _runs(matrix):
            x, y = x0 + column * module, y0 + row * module
            draw.rectangle((x, y, x + length * module - 1, y + module - 1), fill=0)
        for box, text, size in _texts(label, geometry):
            size_px = max(1, round(size / _PT_PER_MM * px))
            if size_px not in fonts:
                fonts[size_px] = ImageFont.truetype(str(font.path), size_px, index=font.index)
            draw.text(
                ((left + box.x) * px, (top + box.baseline) * px),
                text,
                font=fonts[size_px],
                fill=0,
                anchor="ls",
            )
    out = io.BytesIO()
    image.save(out, format="PNG", dpi=(dpi, dpi), optimize=False)
    return out.getvalue()
