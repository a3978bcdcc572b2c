"""Reading a standard address file (标准地址库 export, CSV) into rows for ``registry.addresses``.

Headers are matched as the inventory importer matches them (``normalise_header``: NFKC, lower case,
no blanks, no "(unit)" suffix); coordinate columns accept the same names as an inventory's
(经度 / lon / x ...). The encoding is detected as for any CSV (UTF-8, GBK ...).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from common.bilingual import Bilingual
from common.errors import InvalidInput
from importers.encoding import text_file_encoding
from importers.tabular import X_NAMES, Y_NAMES, normalise_header
from registry.addresses import AddressRow

# Normalised header names of each field; the first column matching wins.
_NAMES: dict[str, tuple[str, ...]] = {
    "address_id": (
        "地址编码",
        "地址代码",
        "地址id",
        "标准地址编码",
        "门牌编码",
        "address_id",
        "addressid",
        "id",
    ),
    "name": ("标准地址", "地址", "地址名称", "标准地址名称", "address", "name"),
    "x": X_NAMES,
    "y": Y_NAMES,
}
_LABELS = {
    "address_id": ("地址编码", "id"),
    "name": ("标准地址", "address"),
    "x": ("经度", "lon"),
    "y": ("纬度", "lat"),
}


def _columns(file: str, header: Sequence[str]) -> dict[str, int]:
    names = [normalise_header(h) for h in header]
    found: dict[str, int] = {}
    for field, wanted in _NAMES.items():
        index = next((i for i, n in enumerate(names) if n in wanted and i not in found.values()), None)
        if index is None:
            raise InvalidInput(
                Bilingual(
                    f"{file} 缺少 {_LABELS[field][0]} 列（表头为 地址编码、标准地址、经度、纬度）",
                    f"{file} has no {_LABELS[field][1]} column "
                    "(headers: id, address, lon, lat, or 地址编码, 标准地址, 经度, 纬度)",
                ),
                file=file,
                field=field,
            )
        found[field] = index
    return found


def read_address_csv(path: Path, encoding: str | None = None) -> tuple[list[AddressRow], dict[str, str]]:
    """The file's rows (row numbers as a spreadsheet shows them) and its header for each field."""
    file = path.name
    choice = text_file_encoding(path, encoding)
    try:
        with path.open("r", encoding=choice.encoding, newline="", errors="strict") as handle:
            records = list(csv.reader(handle))
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            Bilingual(f"{file} 不是 {choice.encoding} 编码", f"{file} is not {choice.encoding} text"),
            file=file,
        ) from exc
    if not records:
        raise InvalidInput(Bilingual(f"{file} 是空文件", f"{file} is empty"), file=file)
    header = [h.lstrip("\ufeff") for h in records[0]]
    columns = _columns(file, header)
    rows: list[AddressRow] = []
    for number, cells in enumerate(records[1:], start=2):
        if not any(c.strip() for c in cells):
            continue  # a blank line between rows is not a row

        def cell(field: str, cells: Sequence[str] = cells) -> str:
            index = columns[field]
            return cells[index] if index < len(cells) else ""

        rows.append(AddressRow(number, cell("address_id"), cell("name"), cell("x"), cell("y")))
    return rows, {field: header[index].strip() for field, index in columns.items()}
