"""``smartcode addresses``: the standard address register (标准地址库) that Open311's address_id names.

smartcode addresses import FILE.csv [--crs CRS] [--replace] [--encoding ENC] [--json]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli import context
from cli.output import emit, failures, readable_file

addresses_app = typer.Typer(
    help="标准地址库：Open311 的 address_id 所指的地址 / "
    "the standard address register behind Open311's address_id",
    no_args_is_help=True,
)


@addresses_app.command("import")
def import_command(
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV 文件，列：地址编码、标准地址、经度、纬度 / CSV file with columns id, address, lon, lat"
        ),
    ],
    crs: Annotated[
        str | None,
        typer.Option(
            help="文件的坐标系（默认 wgs84；gcj02、bd09、cgcs2000 等） / "
            "coordinate system of the file (default wgs84; gcj02, bd09, cgcs2000 ...)"
        ),
    ] = None,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="以文件为准：删除文件中没有的地址 / "
            "the file is the whole register: remove addresses it lacks",
        ),
    ] = False,
    encoding: Annotated[
        str | None,
        typer.Option(help="CSV 的文字编码（GBK、UTF-8 等） / text encoding of the CSV (GBK, UTF-8 ...)"),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="输出 JSON，供程序读取 / print JSON for machines")
    ] = False,
) -> None:
    """导入标准地址库（整批写入或不写） / load the standard address register (all rows or none)."""
    with failures():
        from importers.addresses import read_address_csv
        from registry.addresses import load_addresses

        rows, fields = read_address_csv(readable_file(file), encoding)
        with context.session() as session:
            summary = load_addresses(
                session,
                context.cli_actor(),
                rows,
                file=file.name,
                settings=context.settings(),
                crs=crs,
                replace=replace,
                fields=fields,
            )
        emit(summary, as_json)


def register(app: typer.Typer) -> None:
    """Add ``smartcode addresses`` to the main app."""
    app.add_typer(addresses_app, name="addresses")
