"""``smartcode export``: the registry's assets as CSV, XLSX or GeoJSON, each 智慧码 beside its 原编号.

smartcode export [--output FILE] [--format csv|xlsx|geojson] [--class CODE ...] [--unit ID|NAME]
                 [--zone NAME] [--bbox MINLON,MINLAT,MAXLON,MAXLAT] [--batch ID] [--in-use/--all]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli import context, i18n
from cli.output import failures

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def export_command(
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="输出文件（默认标准输出；XLSX 必须写文件） / "
            "file to write (default: standard output; XLSX needs a file)",
        ),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="csv、xlsx 或 geojson（默认按文件名，否则 csv） / "
            "csv, xlsx or geojson (default: from the file name, else csv)",
        ),
    ] = None,
    class_: Annotated[
        list[str] | None,
        typer.Option(
            "--class", help="设施类型代码，例如 0118（可重复） / class code, e.g. 0118 (repeatable)"
        ),
    ] = None,
    unit: Annotated[
        str | None,
        typer.Option(
            help="单位编号或全称：其作为权属、养护或主管单位的设施 / "
            "unit id or exact name: its assets as owner, maintainer or supervisor"
        ),
    ] = None,
    zone: Annotated[
        str | None,
        typer.Option(help="现行区域名称：区域内的设施 / name of a zone valid now: the assets in it"),
    ] = None,
    bbox: Annotated[
        str | None,
        typer.Option(
            help="范围 最小经度,最小纬度,最大经度,最大纬度（WGS84） / "
            "min_lon,min_lat,max_lon,max_lat (WGS84)",
            metavar="BBOX",
        ),
    ] = None,
    batch: Annotated[
        int | None,
        typer.Option(help="最近由该导入批次写入的设施 / the assets last written by this import batch"),
    ] = None,
    in_use: Annotated[
        bool | None,
        typer.Option(
            "--in-use/--decommissioned", help="只要在用或已注销的设施 / only in-use / decommissioned assets"
        ),
    ] = None,
) -> None:
    """导出设施及其智慧码与原编号 / export assets with their smart codes and the utility's identifiers."""
    with failures():
        from common.errors import InvalidInput
        from registry import export
        from registry.assets import AssetFilter

        chosen = fmt or (output.suffix if output is not None and output.suffix else "csv")
        kind = export.check_format(chosen)
        if kind == "xlsx" and output is None:
            raise InvalidInput(i18n.t("export.xlsx_file"))
        if output is not None and output.parent and not output.parent.is_dir():
            raise InvalidInput(i18n.t("file.no_folder", path=output, folder=output.parent))
        with context.session() as session:
            flt = AssetFilter(
                class_codes=tuple(class_ or ()),
                unit_id=_unit_id(session, unit) if unit else None,
                bbox=_bbox(bbox) if bbox else None,
                in_use=in_use,
                zone=zone,
                batch_id=batch,
            )
            job = export.prepare(session, context.cli_actor(), flt, kind, context.settings().area.timezone)
            if output is None:
                count = export.write(session, job, sys.stdout.buffer)
                sys.stdout.buffer.flush()
                where = "-"
            else:
                partial = output.with_name(output.name + ".partial")
                with partial.open("wb") as out:
                    count = export.write(session, job, out)
                partial.replace(output)  # a failed export leaves no half-written file under the name
                where = str(output)
        typer.echo(i18n.t("export.done", count=count, path=where), err=True)


def _bbox(text: str) -> tuple[float, float, float, float]:
    from common.errors import InvalidInput

    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError as exc:
        raise InvalidInput(i18n.t("arg.bbox_numbers", text=text)) from exc
    if len(parts) != 4:
        raise InvalidInput(i18n.t("arg.bbox_form", text=text))
    return parts[0], parts[1], parts[2], parts[3]


def _unit_id(session: Session, text: str) -> int:
    from sqlalchemy import select

    from common.errors import NotFound
    from registry.models import Unit

    if text.isdigit():
        return int(text)
    found = session.scalars(select(Unit.id).where(Unit.name == text)).first()
    if found is None:
        raise NotFound(i18n.t("export.no_unit", name=text))
    return found


def register(app: typer.Typer) -> None:
    """Add ``smartcode export`` to the main app."""
    app.command("export")(export_command)
