"""``smartcode``: run the registry, manage its database, look things up."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli import addresses as addresses_cli
from cli import context, i18n
from cli import demo as demo_cli
from cli import disputes as disputes_cli
from cli import export as export_cli
from cli import imports as imports_cli
from cli import labels as labels_cli
from cli import resolve as resolve_cli
from cli.output import emit, failures, value
from cli.serving import run_worker, serve_app

if TYPE_CHECKING:  # the CLI imports the database layer only for the commands that use it
    from registry.replica import StandbyCluster

app = typer.Typer(
    help="smartcode 智慧码城市部件登记库，每个命令都有 --help / the 智慧码 city-asset registry.",
    no_args_is_help=True,
    add_completion=False,
    cls=i18n.LocalisedGroup,
)
db_app = typer.Typer(
    help="内置数据库集群（设置 SMARTCODE_DATABASE_URL 时不用） / the embedded PostgreSQL + PostGIS cluster."
)
app.add_typer(db_app, name="db")
replica_app = typer.Typer(
    help="内置集群的流复制备库，分担查询（docs/replicas.md） / "
    "a streaming standby of the embedded cluster that serves lookups (docs/replicas.md).",
    no_args_is_help=True,
)
db_app.add_typer(replica_app, name="replica")
JsonOpt = Annotated[bool, typer.Option("--json", help="输出 JSON，供程序读取 / print JSON for machines")]


def _choose_lang(ctx: typer.Context, lang: str | None) -> str | None:
    # Eager, so that `smartcode --lang en --help` and every subcommand's --help already speak it.
    if lang is not None:
        try:
            chosen = i18n.set_lang(lang)
        except ValueError:
            raise typer.BadParameter(i18n.t("arg.lang", value=lang), param_hint="'--lang'") from None
        # The resolver's explanation lines follow the deployment setting: this command overrides it.
        import os

        from common.settings import get_settings

        os.environ["SMARTCODE_LANG"] = chosen
        get_settings.cache_clear()
        i18n.localise_help(ctx.find_root().command)
    return lang


@app.callback()
def _global_options(
    lang: Annotated[
        str | None,
        typer.Option(
            "--lang",
            help="界面语言：zh 中文（默认）或 en 英文，默认取 SMARTCODE_LANG / "
            "zh (中文, the default) or en; default from SMARTCODE_LANG",
            metavar="zh|en",
            is_eager=True,
            callback=_choose_lang,
        ),
    ] = None,
) -> None:
    """smartcode 智慧码城市部件登记库，每个命令都有 --help / the 智慧码 city-asset registry."""


def _external() -> bool:
    if context.settings().database.url:
        typer.echo(i18n.t("db.external"), err=True)
        return True
    return False


@db_app.command("start")
def db_start(as_json: JsonOpt = False) -> None:
    """启动内置集群（首次使用时初始化） / start the embedded cluster (initialising it on first use)."""
    with failures():
        if _external():
            raise typer.Exit(1)
        url = context.embedded_cluster().start()
        emit({"status": "running", "url": url}, as_json)


@db_app.command("stop")
def db_stop(as_json: JsonOpt = False) -> None:
    """停止内置集群 / stop the embedded cluster."""
    with failures():
        if _external():
            raise typer.Exit(1)
        context.embedded_cluster().stop()
        emit({"status": "stopped"}, as_json)


@db_app.command("status")
def db_status(as_json: JsonOpt = False) -> None:
    """内置集群是否在运行、位置与运行用户 / whether the embedded cluster runs, where, and as whom."""
    with failures():
        if _external():
            raise typer.Exit(1)
        st = context.embedded_cluster().status()
        emit(
            {
                "running": st.running,
                "data_dir": str(st.data_dir),
                "socket_dir": str(st.socket_dir),
                "pid": st.pid,
                "server_user": st.server_user,
                "version": st.version,
            },
            as_json,
        )
        if not st.running:
            raise typer.Exit(3)


@db_app.command("log")
def db_log(
    drop_expired: Annotated[
        bool,
        typer.Option(
            "--drop-expired",
            help="删除超过 SMARTCODE_RESOLVE_LOG_KEEP_MONTHS 的月份 / "
            "drop months older than SMARTCODE_RESOLVE_LOG_KEEP_MONTHS",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """解析日志的月分区（行数、大小）；加 --drop-expired 执行保留期 / the resolution log's monthly
    partitions (rows, size); with --drop-expired, apply retention."""
    with failures():
        from cli import log_partitions

        log_partitions.show(drop_expired, as_json)


@db_app.command("events")
def db_events(
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="删除超过 SMARTCODE_WEBHOOKS_KEEP_DAYS 且无待投递的事件及其投递记录 / delete events past "
            "SMARTCODE_WEBHOOKS_KEEP_DAYS that nothing waits for, with their delivery log",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """事件发件箱与 webhook 投递记录（行数、待投递）；--prune 按保留期清理 / the outbox and delivery log."""
    with failures():
        from cli import outbox

        outbox.show(prune, as_json)


@db_app.command("backup")
def db_backup(
    list_only: Annotated[
        bool, typer.Option("--list", help="只列出基础备份 / only list the base backups")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """为内置集群做基础备份（其余由 WAL 归档完成）；列出备份 / take a base backup of the embedded cluster
    (the WAL archive does the rest); list the backups."""
    with failures():
        if _external():
            raise typer.Exit(1)
        from cli import backup

        backup.backup(list_only, as_json)


@db_app.command("restore")
def db_restore(
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="还原到此时刻（未给时区偏移时按本地时间） / "
            "restore to this time (local unless an offset is given)",
        ),
    ] = None,
    backup_id: Annotated[
        str | None, typer.Option("--backup", help="使用这个基础备份 / use this base backup")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="不再询问确认 / do not ask for confirmation")] = False,
    as_json: JsonOpt = False,
) -> None:
    """用基础备份和 WAL 归档还原内置集群，到某一时刻或最新 / restore the embedded cluster from a base
    backup and the WAL archive, to a time or to the latest."""
    with failures():
        if _external():
            raise typer.Exit(1)
        from cli import backup

        backup.restore(to, backup_id, yes, as_json)


def _replica() -> StandbyCluster:
    from registry.replica import embedded_replica

    return embedded_replica(context.settings())


@replica_app.command("create")
def replica_create(as_json: JsonOpt = False) -> None:
    """把内置集群复制为流复制备库（pg_basebackup、复制槽）并启动 / copy the embedded cluster into a
    streaming standby (pg_basebackup, a replication slot) and start it."""
    with failures():
        if _external():
            raise typer.Exit(1)
        replica = _replica()
        existed = replica.created()
        url = replica.create()
        emit({"status": "running", "created": not existed, "url": url}, as_json)


@replica_app.command("start")
def replica_start(as_json: JsonOpt = False) -> None:
    """启动备库，补上主库期间写入的内容 / start the standby; it catches up on what the primary wrote
    meanwhile."""
    with failures():
        if _external():
            raise typer.Exit(1)
        url = _replica().start()
        emit({"status": "running", "url": url}, as_json)


@replica_app.command("stop")
def replica_stop(as_json: JsonOpt = False) -> None:
    """停止备库（期间 API 从主库读取） / stop the standby (the API reads from the primary meanwhile)."""
    with failures():
        if _external():
            raise typer.Exit(1)
        _replica().stop()
        emit({"status": "stopped"}, as_json)


@replica_app.command("status")
def replica_status(as_json: JsonOpt = False) -> None:
    """备库是否运行与复制、WAL 位置、延迟（字节和秒） / whether the standby runs and streams, its LSNs and
    its lag in bytes and seconds."""
    with failures():
        if _external():
            raise typer.Exit(1)
        st = _replica().replica_status()
        emit(
            {
                "replica_created": st.created,
                "running": st.running,
                "replication_state": st.state,
                "data_dir": str(st.data_dir),
                "socket_dir": str(st.socket_dir),
                "port": st.port,
                "pid": st.pid,
                "slot": st.slot,
                "slot_active": st.slot_active,
                "primary_lsn": st.primary_lsn,
                "sent_lsn": st.sent_lsn,
                "replay_lsn": st.replay_lsn,
                "lag_bytes": st.lag_bytes,
                "lag_s": None if st.lag_s is None else round(st.lag_s, 3),
            },
            as_json,
        )
        if not st.running:
            raise typer.Exit(3)


@db_app.command("url")
def db_url() -> None:
    """显示数据库地址（需要时启动内置集群） / print the database URL (starting the embedded cluster if
    needed)."""
    with failures():
        from registry.db import database_url

        typer.echo(database_url(context.settings()))


@app.command()
def migrate(
    revision: Annotated[str, typer.Option(help="目标结构版本 / target revision")] = "head",
    downgrade: Annotated[
        bool, typer.Option(help="改为降级到 --revision / downgrade to --revision instead")
    ] = False,
) -> None:
    """升级数据库结构 / upgrade the schema to the newest revision (or --downgrade to --revision)."""
    with failures():
        from registry import db

        url = db.database_url(context.settings())
        if downgrade:
            db.downgrade(url, revision)
        else:
            db.migrate(url, revision)
        typer.echo(i18n.t("db.schema", revision=db.current_revision(url) or "base"))


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="监听地址 / address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="监听端口 / port to listen on")] = None,
) -> None:
    """启动服务（默认 127.0.0.1:8000） / start the database if needed, migrate and serve the API."""
    with failures():
        serve_app(host, port)


@app.command()
def worker() -> None:
    """只投递 webhook（serve 也会投递） / deliver webhooks without serving the API."""
    with failures():
        run_worker()


@app.command()
def code(
    text: Annotated[
        str,
        typer.Argument(
            help="智慧码或 16 位标识码，分隔符不限 / a smart code or 16-digit identifier, any separators"
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """离线校验智慧码 / check a code offline: its parts, check digit and printed form."""
    with failures():
        from registry.codes import parse_code

        parsed = parse_code(text)
        emit(
            {
                "code": str(parsed),
                "display": parsed.formatted,
                "county": parsed.county,
                "class": parsed.class_code,
                "serial": parsed.serial,
                "check_digit": parsed.check_digit,
            },
            as_json,
        )


@app.command()
def show(
    text: Annotated[str, typer.Argument(help="设施的智慧码 / the asset's smart code")],
    at: Annotated[
        dt.datetime | None,
        typer.Option(help="带时区的 ISO 时间：当时由谁负责 / ISO time with zone: who was responsible then"),
    ] = None,
    history: Annotated[bool, typer.Option(help="列出每个记录的版本 / list every recorded version")] = False,
    as_json: JsonOpt = False,
) -> None:
    """查看设施、历史或某时的责任单位 / show an asset, its history, or who was responsible at a time."""
    with failures():
        from registry import assets

        with context.session() as session:
            data: Any
            render: Callable[[Any], str]
            if at is not None:
                data = assets.as_of(session, text, at)
                render = render_as_of
            elif history:
                data = assets.history(session, text)
                periods = [] if as_json else assets.responsibility_periods(session, text)
                render = functools.partial(render_history, periods=periods)
            else:
                data = assets.asset_view(session, assets.get_by_code(session, text))
                render = render_asset
        emit(data, as_json, render)


_ASSET_FIELDS = (
    "code_display",
    "class",
    "state",
    "in_use",
    "owner",
    "maintainer",
    "supervisor",
    "position",
    "address",
    "grid_code",
    "source_id",
    "data_source",
    "batch_id",
    "installed_on",
    "decommissioned_at",
    "decommission_reason",
    "note",
    "created_at",
    "changed_at",
    "version",
)


def render_asset(view: dict[str, Any]) -> str:
    """An asset as labelled lines, times local, units by name and phone."""
    cls = view["class"]
    pairs = [
        (key, f"{cls['name']}（{cls['code']}）" if key == "class" else value(view.get(key)))
        for key in _ASSET_FIELDS
        if key in view and (view.get(key) is not None or key in ("owner", "maintainer", "supervisor"))
    ]
    return i18n.key_values(pairs) + "\n" + i18n.times_note()


# Columns every version carries that say nothing about what changed.
_BOOKKEEPING = {
    "version",
    "changed_at",
    "changed_by",
    "change_reason",
    "change_action",
    "change_dispute_id",
    "batch_id",
    "geom_m",
}


def render_history(versions: list[dict[str, Any]], periods: list[dict[str, Any]]) -> str:
    """The versions as a table (what each changed) and the responsibility periods as another."""
    rows = []
    previous: dict[str, Any] | None = None
    for v in versions:
        data = v.get("data") or {}
        if previous is None:
            changed = "-"
        else:
            keys = [k for k in data if k not in _BOOKKEEPING and data.get(k) != previous.get(k)]
            if v.get("geometry") != previous.get("__geometry"):
                keys.append("position")
            changed = ", ".join(i18n.t(k.removesuffix("_id")) for k in keys) or "-"
        previous = {**data, "__geometry": v.get("geometry")}
        rows.append(
            [
                v["version"],
                i18n.local(v["recorded_at"]),
                v.get("actor"),
                i18n.t(f"act.{v.get('action')}") if i18n.has(f"act.{v.get('action')}") else v.get("action"),
                i18n.pick(v.get("reason")) if v.get("reason") else None,
                v.get("batch_id"),
                v.get("dispute_id"),
                changed,
            ]
        )
    headers = ["version", "recorded_at", "actor", "action", "reason", "batch_id", "dispute_id", "changed"]
    parts = [i18n.t("versions"), i18n.table([i18n.t(h) for h in headers], rows, right=(0,))]
    if periods:
        period_rows = [
            [
                i18n.local(p["valid_from"]) if p["valid_from"] else i18n.t("since_unknown"),
                i18n.local(p["valid_to"]) if p["valid_to"] else i18n.t("open_end"),
                value(p["owner"]),
                value(p["maintainer"]),
                value(p["supervisor"]),
                i18n.pick(p.get("reason")) if p.get("reason") else None,
            ]
            for p in periods
        ]
        period_headers = ["valid_from", "valid_to", "owner", "maintainer", "supervisor", "reason"]
        parts += ["", i18n.t("periods"), i18n.table([i18n.t(h) for h in period_headers], period_rows)]
    parts.append(i18n.times_note())
    return "\n".join(parts)


def render_as_of(data: dict[str, Any]) -> str:
    """Who was responsible at a time, and the version recorded then."""
    period = data.get("responsibility") or {}
    pairs = [
        ("code", data["code"]),
        ("at", i18n.local(data["at"])),
        ("owner", value(period.get("owner"))),
        ("maintainer", value(period.get("maintainer"))),
        ("supervisor", value(period.get("supervisor"))),
        ("valid_from", i18n.local(period.get("valid_from"))),
        ("valid_to", i18n.local(period.get("valid_to")) if period.get("valid_to") else i18n.t("open_end")),
        ("recorded_version", data.get("recorded_version")),
    ]
    return i18n.key_values(pairs) + "\n" + i18n.times_note()


token_app = typer.Typer(
    help="访问令牌：无子命令时显示管理员令牌或（--name）新建；list、revoke NAME 管理 / bearer tokens: "
    "print the administrator token or (--name) create one; `list` and `revoke NAME` manage them."
)
app.add_typer(token_app, name="token")


@token_app.callback(invoke_without_command=True)
def token(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option(help="新建一个具名令牌 / create a named token")] = None,
    role: Annotated[
        str, typer.Option(help="admin（管理员）、unit（单位）或 reader（只读） / admin, unit or reader")
    ] = "reader",
    unit: Annotated[
        int | None, typer.Option(help="unit 令牌所属单位编号 / unit id for a 'unit' token")
    ] = None,
) -> None:
    """显示管理员令牌，或为单位、只读用户新建具名令牌 / print the administrator token, or create a named
    token for a unit or a reader."""
    if ctx.invoked_subcommand is not None:
        return
    with failures():
        from registry import tokens

        if name is None:
            typer.echo(tokens.admin_token(context.settings()))
            return
        with context.session() as session:
            typer.echo(tokens.create_token(session, name, role, context.cli_actor(), unit_id=unit))


@token_app.command("list")
def token_list(
    include_revoked: Annotated[
        bool, typer.Option("--all", help="也列出已吊销的令牌 / also the revoked tokens")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """具名令牌（名称、角色、单位、创建、吊销），从不显示密钥 / the named tokens (name, role, unit,
    created, revoked); never the secrets."""
    with failures():
        from registry import tokens

        with context.session() as session:
            rows = tokens.list_tokens(session, context.cli_actor(), include_revoked=include_revoked)
        emit(rows, as_json)


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str, typer.Argument(help="令牌名称 / the token's name")],
    reason: Annotated[
        str | None, typer.Option(help="吊销原因（记入审计） / why it is revoked (audited)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """吊销具名令牌：立即失效（运行中服务的 /resolve 在令牌缓存过期后） / revoke a named token: it stops
    working at once (a running server's /resolve within its token cache)."""
    with failures():
        from registry import tokens

        with context.session() as session:
            emit(tokens.revoke_token(session, name, context.cli_actor(), reason=reason), as_json)


resolve_cli.register(app)
demo_cli.register(app)
imports_cli.register(app)
labels_cli.register(app)
export_cli.register(app)
disputes_cli.register(app)
addresses_cli.register(app)


def main() -> None:
    """Entry point of the console script."""
    app()


if __name__ == "__main__":
    main()
