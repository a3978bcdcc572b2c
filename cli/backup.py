"""``smartcode db backup`` and ``smartcode db restore``: base backups and point-in-time restore."""

from __future__ import annotations

import datetime as dt
from typing import Any

import typer

from cli import context, i18n
from cli.output import emit
from common.errors import InvalidInput


def _when(value: dt.datetime) -> str:
    return value.astimezone(i18n.zone()).strftime("%Y-%m-%d %H:%M:%S")


def parse_time(text: str) -> dt.datetime:
    """A restore target as typed: ISO date and time, local to the deployment unless it has an offset."""
    try:
        parsed = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            f"--to {text!r}: 时间格式应为 2026-12-06 09:30:00 / a date and time (local unless offset given)",
            field="to",
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=i18n.zone())


def backup(list_only: bool, as_json: bool) -> None:
    """Take a base backup (or list them)."""
    from registry.backup import list_backups, take_backup

    cluster = context.embedded_cluster()
    if not list_only:
        made = take_backup(cluster, context.settings().embedded.backups_keep)
        if not as_json:
            typer.echo(i18n.t("bk.done", id=made.id, mib=made.bytes / 1_048_576, at=_when(made.finished_at)))
    backups = list_backups(cluster)

    def render(_: Any) -> str:
        rows = [
            (b.id, _when(b.started_at), _when(b.finished_at), f"{b.bytes / 1_048_576:.1f}") for b in backups
        ]
        headers = [i18n.t(k) for k in ("bk.id", "bk.started", "bk.finished", "log.mib")]
        where = i18n.t("bk.where", path=cluster.backup_root)
        return "\n".join([i18n.table(headers, rows, right=(3,)), where, i18n.times_note()])

    emit({"backups": [b.as_dict() for b in backups]}, as_json, render)


def restore(to: str | None, backup_id: str | None, yes: bool, as_json: bool) -> None:
    """Restore the embedded cluster from a base backup and the WAL archive."""
    from registry.backup import restore as run_restore

    target = parse_time(to) if to else None
    if not yes:
        what = _when(target) if target else i18n.t("bk.latest")
        typer.confirm(i18n.t("bk.confirm", to=what), abort=True, err=True)
    done = run_restore(context.embedded_cluster(), to=target, backup_id=backup_id)
    data = {
        "backup": done.backup.as_dict(),
        "to": target.isoformat() if target else None,
        "previous_data_dir": str(done.previous_data_dir),
    }
    emit(
        data,
        as_json,
        lambda _: i18n.t(
            "bk.restored",
            id=done.backup.id,
            to=_when(target) if target else i18n.t("bk.latest"),
            previous=done.previous_data_dir,
        ),
    )
