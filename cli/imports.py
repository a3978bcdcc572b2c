"""``smartcode import``: load an inventory file as one batch; list, show and roll back batches.

smartcode import FILE [--profile NAME | --mapping FILE] [--zone NAME] [--crs CRS]
                      [--class CLASS] [--create-units] [--dry-run] [--strict] [--report PATH]
smartcode import list
smartcode import show BATCH_ID
smartcode import rollback BATCH_ID
smartcode mapping suggest FILE [--output PROFILE.toml]
smartcode units alias add UNIT ALIAS
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from cli import context, i18n
from cli.output import emit, failures, readable_file, value

_ACTIONS = ("rollback", "show", "list")


def import_command(
    target: Annotated[
        str,
        typer.Argument(
            help="台账文件，或 list | show 批次号 | rollback 批次号 / "
            "the inventory file, or: list | show ID | rollback ID"
        ),
    ],
    batch: Annotated[
        str | None, typer.Argument(help="show、rollback 的批次号 / batch number for show / rollback")
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            help="内置映射方案（默认 szcg：数字城管） / built-in mapping profile (default szcg: 数字城管)"
        ),
    ] = None,
    mapping: Annotated[
        Path | None, typer.Option(help="映射方案文件（TOML） / mapping profile file (TOML)")
    ] = None,
    zone: Annotated[
        str | None,
        typer.Option(
            help="限定在此区域：区域外的行被拒绝 / restrict to this zone: rows outside it are rejected"
        ),
    ] = None,
    crs: Annotated[
        str | None,
        typer.Option(
            help="文件的坐标系（EPSG:4547、gcj02 等） / coordinate system of the file (EPSG:4547, gcj02 ...)"
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="试运行：全部检查，不写入 / check everything, write nothing")
    ] = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="有任一行被拒绝就拒绝整批 / refuse the whole batch if any row is rejected"
        ),
    ] = False,
    report: Annotated[
        Path | None, typer.Option(help="把 JSON 报告写入此文件 / write the JSON report to this file")
    ] = None,
    layer: Annotated[
        str | None,
        typer.Option(
            help="GeoPackage 图层、zip 中的 shapefile 或 Excel 工作表 / "
            "GeoPackage layer, shapefile in a zip, Excel sheet"
        ),
    ] = None,
    encoding: Annotated[
        str | None,
        typer.Option(
            help="DBF 或 CSV 的文字编码（GBK、UTF-8 等） / text encoding of a DBF or CSV (GBK, UTF-8 ...)"
        ),
    ] = None,
    source_system: Annotated[
        str | None,
        typer.Option(
            help="文件原编号的来源系统（默认映射方案名） / "
            "scope of the file's source ids (default: the profile name)"
        ),
    ] = None,
    class_: Annotated[
        str | None,
        typer.Option(
            "--class",
            help="每一行的设施类型，代码或名称（单一类型的文件） / "
            "the class of every row, code or name (a file of one class)",
        ),
    ] = None,
    create_units: Annotated[
        bool,
        typer.Option(
            "--create-units",
            help="与已登记单位相近的也新建（管理员） / "
            "also create units close to registered ones (administrators)",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="输出 JSON，供程序读取 / print JSON for machines")
    ] = False,
) -> None:
    """导入台账（整批写入或不写），列出/查看/回滚批次 / import a file as one batch; list, show, roll back."""
    with failures():
        if target in _ACTIONS and not Path(target).is_file():
            _batch_action(target, batch, as_json)
            return
        if batch is not None:
            raise typer.BadParameter(i18n.t("arg.unexpected", value=repr(batch)))
        if profile and mapping:
            raise typer.BadParameter(i18n.t("arg.profile_or_mapping"))
        _import(
            Path(target),
            profile=profile,
            mapping=mapping,
            zone=zone,
            crs=crs,
            dry_run=dry_run,
            strict=strict,
            report_path=report,
            layer=layer,
            encoding=encoding,
            source_system=source_system,
            class_=class_,
            create_units=create_units,
            as_json=as_json,
        )


def _import(path: Path, *, report_path: Path | None, as_json: bool, mapping: Path | None, **kw: Any) -> None:
    from importers.pipeline import ImportOptions, ImportRefused, run_import
    from importers.progress import TerminalProgress

    readable_file(path)
    if mapping is not None:
        readable_file(mapping)
    options = ImportOptions(mapping=str(mapping) if mapping else None, **kw)
    progress = TerminalProgress(lang=i18n.lang())
    try:
        result = run_import(
            context.engine(), path, context.cli_actor(), context.settings(), options, progress=progress
        )
    except ImportRefused as exc:
        progress.close()
        if report_path is not None and exc.report is not None:
            _write(report_path, exc.report)
        if exc.report is not None:
            emit(_summary(exc.report), as_json, render)
        raise
    progress.close()
    data = result.as_dict()
    if report_path is not None:
        _write(report_path, data)
    emit(data if as_json else _summary(data), as_json, render)


def _write(path: Path, data: dict[str, Any]) -> None:
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str) + b"\n")


def _summary(data: dict[str, Any]) -> dict[str, Any]:
    return {key: data[key] for key in data if key != "problems"} | {"problems": data["problems"][:20]}


def render(data: dict[str, Any]) -> str:
    """The human summary of an import report."""
    counts = {"read": 0, "created": 0, "updated": 0, "unchanged": 0, "rejected": 0, **data["counts"]}
    lines = [i18n.t("rep.warning", text=i18n.pick(w)) for w in data.get("warnings") or ()]
    lines += [
        f"{data['file']}: {i18n.status(data['status'])}"
        + (i18n.t("rep.dry") if data.get("dry_run") and data["status"] != "dry_run" else "")
        + (i18n.t("rep.batch", id=data["batch_id"]) if data.get("batch_id") else ""),
        i18n.t("rep.counts", **counts),
    ]
    crs = data.get("crs") or {}
    if crs.get("used"):
        origin = _word("origin", crs.get("origin"))
        strength = _word("str", crs.get("strength", "?"))
        lines.append(
            i18n.t("rep.crs", used=crs["used"], origin=origin)
            + f" {i18n.t('rep.strength', strength=strength)}"
            + (f": {i18n.pick(crs['note'])}" if crs.get("note") else "")
        )
    columns = data.get("columns") or {}
    for m in columns.get("mapped") or ():
        label = i18n.t(m["field"]) if i18n.has(m["field"]) else m["field"]
        how = _word("how", m["how"])
        lines.append(i18n.t("rep.column", column=m["column"], label=label, field=m["field"], how=how))
    if columns.get("coordinates"):
        lines.append(i18n.t("rep.coordinates", **columns["coordinates"]))
    if columns.get("ignored"):
        lines.append(i18n.t("rep.ignored", names=i18n.t("list_sep").join(columns["ignored"])))
    for name, close in (data.get("units_held") or {}).items():
        lines.append(i18n.t("rep.held", name=name, close=i18n.t("list_sep").join(close)))
    would = data["status"] in (
        "dry_run",
        "refused",
        "rejected",
    )  # nothing was written: say what would have been
    if data.get("units_created"):
        names = "、".join(data["units_created"])
        lines.append(i18n.t("rep.units_would" if would else "rep.units", names=names))
    if data.get("codes_allocated"):
        codes = ", ".join(f"{k} x{v}" for k, v in data["codes_allocated"].items())
        lines.append(i18n.t("rep.codes_would" if would else "rep.codes", codes=codes))
    for note in data.get("notes") or ():
        lines.append(i18n.t("rep.note", note=i18n.pick(note)))
    problems = data.get("problems") or []
    if problems:
        total = data.get("problems_total", len(problems))
        lines.append(i18n.t("rep.problems", total=total, shown=len(problems)))
        for p in problems:
            shown = f" [{p['value']}]" if p.get("value") else ""
            field = f" {p['field']}" if p.get("field") else ""
            reason = i18n.pick(p["reason"])
            lines.append(i18n.t("rep.problem", row=p["row"], field=field, reason=reason, value=shown))
    return "\n".join(lines)


def _word(kind: str, value: Any) -> str:
    """A machine word of the report (a CRS origin, a strength, how a column was matched) as read."""
    key = f"{kind}.{value}"
    return i18n.t(key) if i18n.has(key) else str(value)


_COUNT_KEYS = ("read", "created", "updated", "unchanged", "rejected")


def render_batches(rows: list[dict[str, Any]]) -> str:
    """Import batches as a table: number, status, local start time, file, counts."""
    if not rows:
        return i18n.t("batches_none")
    table = i18n.table(
        [i18n.t(k) for k in ("id", "status", "started_at", "file", *_COUNT_KEYS)],
        [
            [
                b["id"],
                i18n.status(b["status"]),
                i18n.local(b["started_at"]),
                b["file"],
                *(f"{(b['counts'] or {}).get(k, 0):,}" for k in _COUNT_KEYS),
            ]
            for b in rows
        ],
        right=(0, 4, 5, 6, 7, 8),
    )
    return table + "\n" + i18n.times_note()


_BATCH_FIELDS = (
    "status",
    "file",
    "format",
    "profile",
    "zone",
    "actor",
    "started_at",
    "finished_at",
    "size",
    "sha256",
    "error",
    "rolled_back_at",
    "rolled_back_by",
)


def render_batch(view: dict[str, Any]) -> str:
    """One batch: its facts as labelled lines, then the summary of its report."""
    pairs: list[tuple[str, Any]] = [("id", view["id"])]
    for key in _BATCH_FIELDS:
        if view.get(key) is None:
            continue
        item = view[key]
        shown = i18n.status(item) if key == "status" else i18n.pick(item) if key == "error" else value(item)
        pairs.append(("error_text" if key == "error" else key, shown))
    counts = view.get("counts") or {}
    pairs.extend((k, f"{counts.get(k, 0):,}") for k in _COUNT_KEYS)
    lines = [i18n.key_values(pairs)]
    report = view.get("report")
    if isinstance(report, dict) and "counts" in report and "status" in report:
        lines += ["", render(_summary({"problems": [], "file": view["file"], **report}))]
    lines.append(i18n.times_note())
    return "\n".join(lines)


def _batch_action(action: str, batch: str | None, as_json: bool) -> None:
    from importers import batches

    if action == "list":
        with context.session() as session:
            rows = [batches.batch_view(session, b, with_report=False) for b in batches.list_batches(session)]
        emit(rows, as_json, render_batches)
        return
    if batch is None or not batch.isdigit():
        raise typer.BadParameter(i18n.t("arg.batch_number", action=action))
    with context.session() as session:
        if action == "show":
            data = batches.batch_view(session, batches.get_batch(session, int(batch)))
            emit(data, as_json, render_batch)
            return
        data = batches.rollback_batch(session, int(batch), context.cli_actor())
    emit(data, as_json)


mapping_app = typer.Typer(
    help="列映射方案 / mapping profiles: which column feeds which field", no_args_is_help=True
)
units_app = typer.Typer(help="单位 / units", no_args_is_help=True)
alias_app = typer.Typer(
    help="单位别名：已登记单位名称的其他写法 / unit aliases: other spellings of a registered unit's name",
    no_args_is_help=True,
)
units_app.add_typer(alias_app, name="alias")


@mapping_app.command("suggest")
def mapping_suggest(
    file: Annotated[Path, typer.Argument(help="台账文件 / the inventory file")],
    output: Annotated[
        Path | None,
        typer.Option(help="映射方案写到此处（默认显示） / write the profile here (default: print it)"),
    ] = None,
    layer: Annotated[
        str | None, typer.Option(help="GeoPackage 图层或 Excel 工作表 / GeoPackage layer or Excel sheet")
    ] = None,
    encoding: Annotated[
        str | None, typer.Option(help="DBF 或 CSV 的文字编码 / text encoding of a DBF or CSV")
    ] = None,
) -> None:
    """按列名为文件生成映射方案草稿（TOML） / write a starter mapping profile (TOML) for a file from its
    column names."""
    from importers.headers import suggest_for_file

    with failures():
        text = suggest_for_file(file, layer=layer, encoding=encoding)
        if output is None:
            typer.echo(text, nl=False)
        else:
            output.write_text(text, encoding="utf-8")
            typer.echo(i18n.t("wrote", path=output))


@alias_app.command("add")
def alias_add(
    unit: Annotated[
        str,
        typer.Argument(
            help="已登记的单位：名称、别名或编号 / the registered unit: its name, an alias or its id"
        ),
    ],
    alias: Annotated[
        str, typer.Argument(help="台账中的另一种写法 / the other spelling, as ledgers write it")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="输出 JSON，供程序读取 / print JSON for machines")
    ] = False,
) -> None:
    """为单位添加别名：导入中写作该别名的即匹配此单位 / add an alias to a unit: imports naming the alias then
    match that unit."""
    from registry.units import add_alias, unit_view

    with failures(), context.session() as session:
        found = add_alias(session, unit, alias, context.cli_actor())
        data = unit_view(found)
    shown = i18n.t("alias.added", name=data["name"], aliases=i18n.t("list_sep").join(data["aliases"]))
    emit(data if as_json else shown, as_json)


def register(app: typer.Typer) -> None:
    """Add ``smartcode import``, ``smartcode mapping`` and ``smartcode units`` to the main app."""
    app.command("import")(import_command)
    app.add_typer(mapping_app, name="mapping")
    app.add_typer(units_app, name="units")
