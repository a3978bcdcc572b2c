"""``smartcode resolve``, ``zones``, ``rules``, ``categories`` and ``resolutions``: ownership resolution."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any

import typer

from cli import context, i18n
from cli.output import emit, failures, readable_file, value

JsonOpt = Annotated[bool, typer.Option("--json", help="输出 JSON，供程序读取 / print JSON for machines")]

zones_app = typer.Typer(help="区域（街道、社区、网格、合同、试点） / zones with versioned boundaries.")
rules_app = typer.Typer(help="职责清单规则：区域 + 类型/类别 → 单位 / responsibility rules.")
categories_app = typer.Typer(help="案件类别及其设施类型 / complaint categories and the classes they concern.")
resolutions_app = typer.Typer(
    help="解析日志：每次答复及其查询 / the resolution log: every answer given, with its query."
)


def _conninfo() -> str:
    from registry.resolution import conninfo_from_url

    return conninfo_from_url(context.ready_url())


def _read_conninfo() -> str | None:
    """Where lookups read: the replica when ``SMARTCODE_DATABASE_READ_URL`` is set (else the primary)."""
    from registry.resolution import conninfo_from_url

    read_url = context.settings().database.read_url
    return conninfo_from_url(read_url) if read_url else None


def _time(text: str | None) -> dt.datetime | None:
    from registry.resolution import parse_time

    return parse_time(text, context.settings().area.timezone)


def render_answer(answer: dict[str, Any]) -> str:
    """A dispatcher-readable answer: verdict, parties, candidates, explanation lines."""
    from registry.messages import text

    lang = i18n.lang()
    status = text(lang, f"status.{answer['status']}")
    rule = text(lang, f"rule.{answer['rule']}")
    lines = [i18n.t("res.head", status=status, rule=rule, id=answer["id"])]
    pairs: list[tuple[str, Any]] = []
    asset = answer.get("asset")
    if asset:
        far = asset.get("distance_m")
        distance = i18n.t("res.distance", distance=far) if far is not None else ""
        pairs.append(("res.asset", f"{asset['code_display']}  {asset['class']['name']}{distance}"))
    pairs.extend((role, value(answer.get(role))) for role in ("owner", "maintainer", "supervisor"))
    lines.append(i18n.key_values(pairs))
    if answer.get("candidates") and answer["status"] == "ambiguous":
        lines.append(i18n.t("res.candidates"))
        for c in answer["candidates"]:
            if "code" in c:
                lines.append(
                    f"  {c['rank']}. {c['code_display']} {c['class']['name']} "
                    f"{i18n.t('res.candidate_m', distance=c['distance_m'])}  {value(c['owner'])}"
                )
            else:
                lines.append(f"  {c['rank']}. {value(c.get('unit'))}")
    lines.append(i18n.t("res.why"))
    lines.extend(f"  - {line}" for line in answer["explanation"])
    return "\n".join(lines)


def resolve(
    code: Annotated[
        str | None,
        typer.Option(
            "--code",
            help="扫描的智慧码（分隔符不限）或二维码网址 / a scanned code, any separators, or a QR URL",
        ),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help="位置 经度,纬度（或 --crs 坐标系中的 X,Y） / the location as LON,LAT (or X,Y in --crs)",
            metavar="LON,LAT",
        ),
    ] = None,
    crs: Annotated[
        str | None,
        typer.Option(
            help="坐标系：wgs84（默认）、gcj02、bd09、cgcs2000 或 EPSG:n / "
            "wgs84 (default), gcj02, bd09, cgcs2000 or EPSG:n"
        ),
    ] = None,
    class_: Annotated[
        list[str] | None,
        typer.Option(
            "--class", help="设施类型代码或名称（可重复） / component class code or name (repeatable)"
        ),
    ] = None,
    category: Annotated[
        str | None, typer.Option(help="案件类别，例如 井盖破损 / complaint category, e.g. 井盖破损")
    ] = None,
    time: Annotated[
        str | None,
        typer.Option(
            "--time", help="案件时间，ISO 8601（默认现在） / complaint time, ISO 8601 (default now)"
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """谁负责：按智慧码或按位置 / who is responsible: for a scanned code, or at a location."""
    with failures():
        from common.errors import InvalidInput
        from registry.resolution import LocationQuery, Resolver, run_lookup

        if (code is None) == (at is None):
            raise InvalidInput(i18n.t("arg.code_or_at"))
        resolver = Resolver(context.settings())
        actor = context.cli_actor().name
        if code is not None:
            answer, _ = run_lookup(
                _conninfo(),
                lambda conn, log: resolver.resolve_code(
                    conn, code, at=time, log=log, actor=actor, channel="cli"
                ),
                read_conninfo=_read_conninfo(),
            )
        else:
            assert at is not None
            parts = [p.strip() for p in at.replace(" ", ",").split(",") if p.strip()]
            if len(parts) != 2:
                raise InvalidInput(i18n.t("arg.at_form", at=at))
            try:
                x, y = float(parts[0]), float(parts[1])
            except ValueError as exc:
                raise InvalidInput(i18n.t("arg.at_numbers", at=at)) from exc
            query = LocationQuery(x=x, y=y, crs=crs, classes=class_ or [], category=category, at=time)
            answer, _ = run_lookup(
                _conninfo(),
                lambda conn, log: resolver.resolve_location(conn, query, log=log, actor=actor, channel="cli"),
                read_conninfo=_read_conninfo(),
            )
        emit(answer, as_json, render_answer)


@resolutions_app.command("show")
def resolution_show(
    log_id: Annotated[int, typer.Argument(help="答复的日志记录号 / the answer's log id")],
    as_json: JsonOpt = False,
) -> None:
    """查看记录的答复及查询人和时间 / show a logged answer with who asked and when."""
    with failures():
        from registry.resolution import run_sync
        from registry.resolution_log import get_resolution

        entry = run_sync(_conninfo(), lambda conn: get_resolution(conn, log_id))
        if as_json:
            emit(entry, True)
        else:
            typer.echo(
                i18n.t(
                    "res.asked",
                    at=i18n.local(entry["at"]),
                    actor=entry["actor"],
                    channel=entry["channel"],
                    query=entry["query"],
                )
            )
            typer.echo(render_answer(entry["answer"]))


@zones_app.command("import")
def zones_import(
    file: Annotated[
        Path,
        typer.Argument(
            help="GeoJSON、shapefile（.shp 或 .zip）或 GeoPackage / "
            "GeoJSON, shapefile (.shp or .zip) or GeoPackage"
        ),
    ],
    level: Annotated[
        str,
        typer.Option(
            help="级别：street 街道、community 社区、grid 网格、contract 合同片区或 pilot 试点 / "
            "street, community, grid, contract or pilot"
        ),
    ],
    name_field: Annotated[str, typer.Option(help="区域名称所在字段 / field holding the zone's name")],
    unit_field: Annotated[
        str | None, typer.Option(help="责任单位所在字段 / field naming the responsible unit")
    ] = None,
    code_field: Annotated[
        str | None, typer.Option(help="区域代码所在字段 / field holding the zone's code")
    ] = None,
    crs: Annotated[
        str | None,
        typer.Option(
            help="文件未声明或声明错误时的坐标系 / the file's CRS when it declares none or a wrong one"
        ),
    ] = None,
    layer: Annotated[
        str | None,
        typer.Option(help="GeoPackage 图层或 .zip 中的 shapefile / GeoPackage layer or shapefile in a .zip"),
    ] = None,
    valid_from: Annotated[
        str | None, typer.Option(help="新边界生效时间（ISO 8601） / when these boundaries start (ISO 8601)")
    ] = None,
    reason: Annotated[
        str | None, typer.Option(help="原因（记入审计日志） / why (kept in the audit log)")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="试运行：全部检查，不写入 / check everything, write nothing")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """导入多边形为区域：全部导入或不导入，无效多边形修复并报告 / import polygons as zones: all or nothing;
    invalid polygons are repaired and reported."""
    with failures():
        from gis.area import ServiceArea
        from importers import zone_files

        readable_file(file)
        s = context.settings()
        with context.session() as session:
            report = zone_files.import_zones(
                session,
                context.cli_actor(),
                file,
                level=level,
                name_field=name_field,
                unit_field=unit_field,
                code_field=code_field,
                crs=crs,
                layer=layer,
                valid_from=_time(valid_from),
                area=ServiceArea.from_settings(s),
                county=s.area.county_code,
                reason=reason,
            )
            if dry_run:
                session.rollback()  # every row was checked; nothing is kept
        data = report.as_dict() | ({"dry_run": True} if dry_run else {})
        emit(data, as_json, _render_report)


def _render_report(data: dict[str, Any]) -> str:
    pairs: list[tuple[str, Any]] = []
    details: list[str] = []
    for key, item in data.items():
        if isinstance(item, list):
            pairs.append((key, len(item)))
            if key in ("repaired", "units_created"):
                details.extend(f"  {i18n.t(key)}: {value(entry)}" for entry in item)
        else:
            pairs.append((key, value(i18n.pick(item) if isinstance(item, str) else item)))
    return "\n".join([i18n.key_values(pairs), *details])


@zones_app.command("list")
def zones_list(
    level: Annotated[str | None, typer.Option(help="只看此级别 / only this level")] = None,
    time: Annotated[
        str | None, typer.Option("--time", help="在此时间有效（默认现在） / valid at this time (default now)")
    ] = None,
    all_versions: Annotated[bool, typer.Option(help="所有边界版本 / every boundary version")] = False,
    as_json: JsonOpt = False,
) -> None:
    """列出现行（或 --time 时）的区域 / list zones valid now (or at --time)."""
    with failures():
        from registry import zones
        from registry.validity import Versions

        with context.session() as session:
            versions = Versions(at=_time(time), all_versions=all_versions, limit=100000)
            items, _ = zones.list_zones(session, level=level, versions=versions)
        emit(items, as_json, render_zones)


def render_zones(rows: list[dict[str, Any]]) -> str:
    """Zones as a table: level, name, code, responsible unit, validity in local time."""
    from registry.rule_chain import level_label

    if not rows:
        return i18n.t("zones_none")
    lang = i18n.lang()
    table = i18n.table(
        [i18n.t(k) for k in ("id", "level", "name", "zone_code", "unit", "valid_from", "valid_to")],
        [
            [
                z["id"],
                level_label(z["level"], lang),
                z["name"],
                z.get("code"),
                value(z["unit"]),
                i18n.local(z["valid_from"]) if z["valid_from"] else i18n.t("since_unknown"),
                i18n.local(z["valid_to"]) if z["valid_to"] else i18n.t("open_end"),
            ]
            for z in rows
        ],
        right=(0,),
    )
    return table + "\n" + i18n.times_note()


@rules_app.command("import")
def rules_import(
    file: Annotated[
        Path,
        typer.Argument(
            help="UTF-8 CSV，列为 zone,level,class,category,unit,priority / "
            "UTF-8 CSV with columns zone,level,class,category,unit,priority"
        ),
    ],
    reason: Annotated[
        str | None, typer.Option(help="原因（记入审计日志） / why (kept in the audit log)")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="试运行：检查每一行，不写入 / check every row, write nothing")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """从 CSV 导入职责清单规则：全部导入或不导入 / import responsibility rules from CSV: all rows or none."""
    with failures():
        from common.errors import InvalidInput
        from registry import rules

        readable_file(file)
        try:
            content = file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(i18n.t("rules.csv_unreadable", file=file.name, why=exc)) from exc
        with context.session() as session:
            report = rules.import_rules_csv(
                session,
                context.cli_actor(),
                content,
                county=context.settings().area.county_code,
                file=file.name,
                reason=reason,
            )
            if dry_run:
                session.rollback()  # every row was checked; nothing is kept
        emit(report.as_dict() | ({"dry_run": True} if dry_run else {}), as_json, _render_report)


@rules_app.command("list")
def rules_list(
    zone: Annotated[str | None, typer.Option(help="只看此区域的规则 / only rules of this zone")] = None,
    as_json: JsonOpt = False,
) -> None:
    """列出现行规则 / list the rules valid now."""
    with failures():
        from registry import rules
        from registry.validity import Versions

        with context.session() as session:
            items, _ = rules.list_rules(session, zone=zone, versions=Versions(limit=100000))
        emit(items, as_json, render_rules)


def render_rules(rows: list[dict[str, Any]]) -> str:
    """Rules as a table: zone, class, category, priority, unit ("*" for any)."""
    from registry.rule_chain import level_label

    if not rows:
        return i18n.t("rules_none")
    lang = i18n.lang()

    def cls(r: dict[str, Any]) -> str:
        c = r["class"]
        return f"{c.get('name', '')}（{c['code']}）".lstrip() if c else "*"

    return i18n.table(
        [i18n.t(k) for k in ("id", "level", "zone", "class", "category", "priority", "unit")],
        [
            [
                r["id"],
                level_label((r["zone"] or {}).get("level"), lang),
                (r["zone"] or {}).get("name", "*"),
                cls(r),
                r["category"] or "*",
                r["priority"],
                value(r["unit"]),
            ]
            for r in rows
        ],
        right=(0, 5),
    )


@categories_app.command("list")
def categories_list(as_json: JsonOpt = False) -> None:
    """列出案件类别及其设施类型 / list the complaint categories and their classes."""
    with failures():
        from registry import categories

        with context.session() as session:
            items = categories.list_categories(session)
        emit(
            items,
            as_json,
            lambda rows: i18n.table(
                [i18n.t(k) for k in ("category", "classes", "aliases")],
                [
                    [c["name"], "、".join(c["classes"]) or i18n.t("no_classes"), "、".join(c["aliases"])]
                    for c in rows
                ],
            ),
        )


@categories_app.command("set")
def categories_set(
    name: Annotated[
        str, typer.Argument(help="案件系统发送的类别名称 / the category as the case system sends it")
    ],
    class_: Annotated[
        list[str] | None,
        typer.Option("--class", help="设施类型代码或名称（可重复） / class code or name (repeatable)"),
    ] = None,
    alias: Annotated[
        list[str] | None, typer.Option(help="其他写法（可重复） / another spelling (repeatable)")
    ] = None,
    description: Annotated[str | None, typer.Option(help="含义说明 / what it means")] = None,
    reason: Annotated[
        str | None, typer.Option(help="原因（记入审计日志） / why (kept in the audit log)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """新建或替换案件类别 / create or replace a category."""
    with failures():
        from registry import categories

        with context.session() as session:
            view, outcome = categories.set_category(
                session,
                context.cli_actor(),
                categories.CategoryDef(
                    name=name,
                    classes=tuple(class_ or ()),
                    aliases=tuple(alias or ()),
                    description=description,
                ),
                reason=reason,
            )
        emit({**view, "outcome": outcome}, as_json)


@categories_app.command("remove")
def categories_remove(
    name: Annotated[str, typer.Argument(help="案件类别 / the category")],
    reason: Annotated[
        str | None, typer.Option(help="原因（记入审计日志） / why (kept in the audit log)")
    ] = None,
) -> None:
    """停用案件类别（为旧规则和日志保留） / deactivate a category (kept for old rules and log entries)."""
    with failures():
        from registry import categories

        with context.session() as session:
            categories.deactivate_category(session, context.cli_actor(), name, reason=reason)
        typer.echo(i18n.t("cat.removed", name=name))


@categories_app.command("load")
def categories_load(
    file: Annotated[
        Path | None,
        typer.Argument(
            help="TOML 文件（默认随附的 categories.toml） / TOML file (default: the shipped categories.toml)"
        ),
    ] = None,
    replace: Annotated[
        bool, typer.Option(help="覆盖已有的类别 / overwrite categories that already exist")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """从 TOML 文件载入案件类别：只载入缺少的，或加 --replace 全部 / load categories from a TOML file: the
    missing ones, or all with --replace."""
    with failures():
        from registry import categories

        if file is not None:
            readable_file(file)
        with context.session() as session:
            report = categories.import_categories(
                session, context.cli_actor(), file or categories.DEFAULTS_PATH, replace=replace
            )
        emit(report, as_json, _render_report)


def register(app: typer.Typer) -> None:
    """Add the resolution commands to the main ``smartcode`` app."""
    app.command("resolve")(resolve)
    app.add_typer(zones_app, name="zones")
    app.add_typer(rules_app, name="rules")
    app.add_typer(categories_app, name="categories")
    app.add_typer(resolutions_app, name="resolutions")
