"""``smartcode demo``: load the synthetic 坪山 pilot (once) and optionally serve it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import typer

from cli import context, i18n
from cli.output import emit, failures
from cli.serving import serve_app
from registry.messages import text

BANNER = (
    "合成演示数据：虚构的深圳市坪山区（440310）试点，不是真实台账 / "
    "SYNTHETIC DEMO DATA: an invented 深圳市坪山区 (440310) pilot, not a real inventory"
)


def demo(
    seed: Annotated[
        int, typer.Option(help="合成试点数据的随机种子 / random seed of the synthetic pilot")
    ] = 440310,
    folder: Annotated[
        Path | None,
        typer.Option(
            help="演示文件写入目录（默认 <var>/demo） / where to write the demo files (default <var>/demo)"
        ),
    ] = None,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve", help="随后启动服务，同 smartcode serve / then serve the API, as `smartcode serve`"
        ),
    ] = False,
    host: Annotated[
        str | None, typer.Option(help="--serve 的监听地址 / address to listen on with --serve")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="--serve 的监听端口 / port to listen on with --serve")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="以 JSON 输出摘要 / print the summary as JSON")
    ] = False,
) -> None:
    """载入坪山试点演示数据（一次） / load the synthetic 坪山 pilot through the real importers, once.

    把区域、职责规则和台账（shapefile、GeoJSON、CSV、Excel）写入演示目录并导入；再次运行时发现
    已载入就不再载入；所建数据都标注为 合成演示数据 / writes zones, rules and inventories (shapefile,
    GeoJSON, CSV, Excel) to the demo folder and imports them; a second run finds the demo loaded and
    loads nothing. Everything it creates is labelled 合成演示数据 (synthetic).
    """
    with failures():
        from importers.demo.load import load_demo

        settings = context.settings()
        context.ready_url()  # start the embedded database if needed and migrate
        report = load_demo(context.engine(), settings, seed=seed, folder=folder)
        data = report.as_dict()
        bind_host, bind_port = host or settings.api.host, port or settings.api.port
        data["try"] = try_commands(data["examples"], f"http://{bind_host}:{bind_port}")
        emit(data, as_json, render)
    if serve:
        # The same code path as `smartcode serve`, so the demo serves exactly what production would.
        with failures():
            serve_app(host, port)


def try_commands(examples: list[dict[str, Any]], base_url: str) -> list[str]:
    """Commands a newcomer can paste to look the examples up (CLI and HTTP)."""
    commands: list[str] = []
    by_class = {e["class"]["code"]: e for e in examples}
    lamp = by_class.get("0118") or (examples[0] if examples else None)
    if lamp is not None:
        commands.append(f"smartcode show {lamp['code_display']}")
        commands.append(f"smartcode resolve --code {lamp['code_display']}")
        commands.append(f"curl '{base_url}/api/v1/resolve?code={lamp['code']}'")
    ownerless = [e for e in examples if e["class"]["code"] == "0114"]
    for example in ownerless:
        commands.append(
            f"smartcode resolve --at {example['lon']},{example['lat']} --category 井盖破损"
            f"    # {example['pilot'] or ''} 无主井盖"
        )
    if ownerless:
        # Location lookups need a token; `smartcode token` prints the administrator's.
        query = urlencode({"lon": ownerless[0]["lon"], "lat": ownerless[0]["lat"], "category": "井盖破损"})
        commands.append(
            f"curl -H \"Authorization: Bearer $(smartcode token)\" '{base_url}/api/v1/resolve?{query}'"
        )
    return commands


def render(data: dict[str, Any]) -> str:
    """The human summary: banner, what was loaded, counts, examples and commands to try."""
    lines = [BANNER, ""]
    if data["status"] == "already_loaded":
        lines.append(i18n.t("demo.already", seed=data["seed"], since=i18n.local(data["loaded_at"])))
    else:
        lines.append(i18n.t("demo.loaded", seed=data["seed"]))
    lines.extend(i18n.t("demo.note", note=i18n.pick(note)) for note in data.get("notes", []))
    lines.append(i18n.t("demo.files", folder=data["folder"]))
    created = data["units"].get("created", []) if data["units"] else []
    zones = i18n.t("list_sep").join(
        f"{text(i18n.lang(), f'level.{level}')} {count}" for level, count in data["zones"].items()
    )
    lines.append(
        i18n.t("demo.counts", assets=data["assets"], zones=zones, rules=data["rules"])
        + (i18n.t("demo.units", count=len(created)) if created else "")
    )
    lines.append("")
    lines.append(i18n.t("demo.per_class"))
    for code, entry in data["assets_per_class"].items():
        lines.append(f"  {code} {entry['count']:>6}  {entry['name']}")
    if data["batches"]:
        lines.append("")
        lines.append(i18n.t("demo.imports"))
        for batch in data["batches"]:
            lines.append(f"  {batch['file']}: {_batch_line(batch)}")
    if data["examples"]:
        lines.append("")
        lines.append(i18n.t("demo.examples"))
        for example in data["examples"]:
            lines.append(
                i18n.t(
                    "demo.example",
                    code=example["code_display"],
                    cls=example["class"]["name"],
                    owner=example["owner"] or i18n.t("none"),
                    lon=example["lon"],
                    lat=example["lat"],
                    why=i18n.pick(example["why"]),
                )
            )
    if data.get("try"):
        lines.append("")
        lines.append(i18n.t("demo.try"))
        lines.extend(f"  {command}" for command in data["try"])
    lines.append("")
    lines.append(BANNER)
    return "\n".join(lines)


def _batch_line(batch: dict[str, Any]) -> str:
    if batch["kind"] != "assets":
        return i18n.t(
            "demo.batch_other",
            kind=i18n.t(f"demo.kind.{batch['kind']}")
            if i18n.has(f"demo.kind.{batch['kind']}")
            else batch["kind"],
            created=batch["created"],
            replaced=batch["replaced"],
            unchanged=batch["unchanged"],
        )
    origin = f"origin.{batch['crs_origin']}"
    return i18n.t(
        "demo.batch",
        id=batch["batch_id"],
        status=i18n.status(batch["status"]),
        read=batch["read"],
        created=batch["created"],
        updated=batch["updated"],
        unchanged=batch["unchanged"],
        rejected=batch["rejected"],
        codes=batch["codes_allocated"],
        encoding=batch["encoding"],
        crs=batch["crs"],
        origin=i18n.t(origin) if i18n.has(origin) else batch["crs_origin"],
    )


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the main ``smartcode`` app."""
    app.command("demo")(demo)
