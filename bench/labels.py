"""Benchmark: N signed labels as one PDF (A4 sheets, 3 x 8), against a plain one-label-at-a-time baseline.

For each N (default 1,000 and 10,000), in a fresh child process each so that peak RSS is the run's own:

* ``smartcode``: ``qr.sheets.write_pdf`` -- the URLs signed with ``qr.signing``, QR masks chosen with
  numpy (``qr.matrix``), one font subset for the run, labels drawn straight onto the sheets;
* ``baseline``: what one writes first -- per label, ``qrcode``'s own ``make(fit=True)`` (it scores its
  eight masks in Python), a fresh one-page PDF with every dark module its own rectangle, then all
  pages concatenated into one PDF (pypdfium2). The font is registered once (a subset per label would
  only make the baseline slower).

Prints each run's seconds, labels per second, peak RSS and output size, and the ratio baseline /
smartcode per N. The database is not involved: selecting and recording 10,000 labels is one query and
one multi-row INSERT each (see docs/labels.md).

    .venv/bin/python bench/labels.py                  # N = 1,000 and 10,000
    .venv/bin/python bench/labels.py --sizes 2000     # a quick run
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ["路灯", "上水井盖", "污水井盖", "雨水井盖", "电力井盖", "通讯井盖", "消防栓", "配电箱"]
OWNERS = [
    ("深圳供电局有限公司", "95598"),
    ("深圳市水务集团有限公司", "0755-82137777"),
    ("中国电信股份有限公司深圳分公司", "10000"),
    ("深圳市坪山区城市照明管理所", "0755-84661234"),
]


def _labels(n: int, key_dir: Path) -> list:  # type: ignore[type-arg]
    sys.path.insert(0, str(ROOT))
    from qr.sheets import LabelContent
    from qr.signing import label_url, load_keys
    from registry.codes import SmartCode

    keys = load_keys(key_dir / "label-keys")
    out = []
    for i in range(n):
        code = SmartCode("440310", f"{1 + i % 6:02d}{1 + i % 17:02d}", i % 1_000_000)
        owner, phone = OWNERS[i % len(OWNERS)]
        out.append(
            LabelContent(
                url=label_url(str(code), keys, "http://127.0.0.1:8000"),
                printed_code=code.formatted,
                class_name=CLASSES[i % len(CLASSES)],
                owner=owner,
                phone=phone,
            )
        )
    return out


def _baseline(labels: list, out_path: Path) -> None:  # type: ignore[type-arg]
    import pypdfium2 as pdfium
    import qrcode
    from qrcode.constants import ERROR_CORRECT_Q
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    from reportlab.pdfgen.canvas import Canvas

    from qr.fonts import truetype_subset
    from qr.sheets import _chars

    mm = 72 / 25.4
    pdfmetrics.registerFont(TTFont("BaselineCJK", io.BytesIO(truetype_subset(_chars(labels)))))
    merged = pdfium.PdfDocument.new()
    for label in labels:
        symbol = qrcode.QRCode(error_correction=ERROR_CORRECT_Q, border=2)
        symbol.add_data(label.url)
        symbol.make(fit=True)
        matrix = symbol.get_matrix()
        buffer = io.BytesIO()
        canvas = Canvas(buffer, pagesize=(70 * mm, 37 * mm))
        module = 30 * mm / len(matrix)
        for row, line in enumerate(matrix):
            for column, dark in enumerate(line):
                if dark:
                    canvas.rect(
                        2 * mm + column * module,
                        35 * mm - (row + 1) * module,
                        module,
                        module,
                        stroke=0,
                        fill=1,
                    )
        canvas.setFont("BaselineCJK", 9)
        for number, text in enumerate(("扫码报事", label.class_name, label.owner, f"电话 {label.phone}")):
            canvas.drawString(34 * mm, (31 - 7 * number) * mm, text)
        canvas.drawString(2 * mm, 1.5 * mm, label.printed_code)
        canvas.save()
        merged.import_pages(pdfium.PdfDocument(buffer.getvalue()))
    merged.save(str(out_path))


def child(kind: str, n: int) -> None:
    """Run one case and print its figures as JSON (called in a fresh process)."""
    sys.path.insert(0, str(ROOT))
    from qr.sheets import Layout, write_pdf

    with tempfile.TemporaryDirectory(prefix="smartcode-bench-labels-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        labels = _labels(n, work)
        out = work / f"{kind}.pdf"
        if kind == "smartcode":
            write_pdf(labels, Layout.sheet(3, 8), str(out))
        else:
            _baseline(labels, out)
        seconds = time.perf_counter() - started
        size = out.stat().st_size
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {"kind": kind, "n": n, "seconds": seconds, "peak_rss_mb": peak_kb / 1024, "pdf_mb": size / 1e6}
        )
    )


def main() -> None:
    """Run every case in its own process and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,10000", help="label counts, comma-separated")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    results: dict[tuple[str, int], dict[str, float]] = {}
    print(f"{'case':<10} {'labels':>7} {'seconds':>8} {'labels/s':>9} {'peak RSS MB':>12} {'PDF MB':>7}")
    for n in (int(s) for s in args.sizes.split(",")):
        for kind in ("smartcode", "baseline"):
            done = subprocess.run(
                [sys.executable, __file__, "--child", kind, str(n)],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            row = json.loads(done.stdout.strip().splitlines()[-1])
            results[(kind, n)] = row
            print(
                f"{kind:<10} {n:>7} {row['seconds']:>8.1f} {n / row['seconds']:>9.0f} "
                f"{row['peak_rss_mb']:>12.0f} {row['pdf_mb']:>7.1f}",
                flush=True,
            )
        ratio = results[("baseline", n)]["seconds"] / results[("smartcode", n)]["seconds"]
        print(f"{'':<10} {n:>7} baseline / smartcode: {ratio:.1f}x", flush=True)


if __name__ == "__main__":
    main()
