"""A label for the board's enclosure: a QR code of its enrolment and the same in words.

50 x 30 mm at 300 dpi, written as PNG (for a label printer's software) and as a one-page PDF
of exactly that size (for any printer). The QR code holds compact JSON::

    {"id":"tkg-air-0001","kind":"air","site":"takengon","enrolled":"2026-01-02"}

so a phone's camera reads the board id and where it belongs. The
QR code is made by ``segno`` (pure Python, no dependencies, standard-conformant encoding),
the label drawn and saved by Pillow, which writes both PNG and PDF.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Final

import segno
from PIL import Image, ImageDraw, ImageFont

from fleet.board.enrol import Enrolment

DPI: Final = 300
WIDTH_MM: Final = 50.0
HEIGHT_MM: Final = 30.0
MARGIN_MM: Final = 1.5


def _px(mm: float) -> int:
    return round(mm / 25.4 * DPI)


def qr_text(enrolment: Enrolment) -> str:
    """What the QR code holds: compact JSON, keys in a fixed order."""
    day = time.strftime("%Y-%m-%d", time.gmtime(enrolment.enrolled))
    fields = {"id": enrolment.board_id, "kind": enrolment.kind, "site": enrolment.site,
              "enrolled": day}  # fmt: skip
    return json.dumps(fields, separators=(",", ":"))


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def render(enrolment: Enrolment) -> Image.Image:
    """The label as a 1-bit image, 50 x 30 mm at 300 dpi."""
    width, height, margin = _px(WIDTH_MM), _px(HEIGHT_MM), _px(MARGIN_MM)
    label = Image.new("L", (width, height), 255)
    qr = segno.make(qr_text(enrolment), error="m", micro=False)
    side = height - 2 * margin
    modules = qr.symbol_size(scale=1, border=4)[0]
    scale = max(1, side // modules)
    buffer = io.BytesIO()
    qr.save(buffer, kind="png", scale=scale, border=4)
    buffer.seek(0)
    code = Image.open(buffer).convert("L")
    top = (height - code.height) // 2
    label.paste(code, (margin, top))
    draw = ImageDraw.Draw(label)
    left = margin + code.width + _px(1.0)
    room = width - left - margin
    day = time.strftime("%Y-%m-%d", time.gmtime(enrolment.enrolled))
    lines = [
        (enrolment.board_id, 40),
        (f"{enrolment.kind} · {enrolment.site}", 26),
        (f"gateway {enrolment.gateway_id}", 22),
        (f"enrolled {day}", 22),
    ]
    y = margin + _px(1.5)
    for text, size in lines:
        font = _font(size)
        while size > 10 and draw.textlength(text, font=font) > room:
            size -= 2
            font = _font(size)
        draw.text((left, y), text, fill=0, font=font)
        y += size + _px(1.2)
    return label.point(lambda v: 0 if v < 128 else 255, mode="1")


def write_label(enrolment: Enrolment, directory: Path) -> tuple[Path, Path]:
    """``<board id>.png`` and ``<board id>.pdf`` in ``directory``; their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    image = render(enrolment)
    png = directory / f"{enrolment.board_id}.png"
    pdf = directory / f"{enrolment.board_id}.pdf"
    image.save(png, dpi=(DPI, DPI))
    image.convert("L").save(pdf, "PDF", resolution=float(DPI))
    return png, pdf
