"""``smartcode db log``: the resolution log's monthly partitions, and dropping the expired ones."""

from __future__ import annotations

import datetime as dt
from typing import Any

import typer

from cli import context, i18n
from cli.output import emit


def _start(p: Any) -> str:
    if p.is_default:
        return i18n.t("log.default")
    return i18n.local(p.lower) if p.lower else i18n.t("log.start")


def show(drop_expired: bool, as_json: bool) -> None:
    """Create the coming months, drop expired ones when asked, and print the partitions."""
    from registry.log_partitions import Partition, ensure_ahead, list_partitions
    from registry.log_partitions import drop_expired as drop

    settings = context.settings()
    keep = settings.resolve.log_keep_months
    dropped: list[Partition] = []
    with context.session() as session:
        ensure_ahead(session.connection(), settings.resolve.log_months_ahead)
        if drop_expired:
            dropped = drop(session, context.cli_actor(), keep, dt.datetime.now(dt.UTC))
    with context.engine().connect() as conn:
        parts = list_partitions(conn)

    def as_dict(p: Partition) -> dict[str, Any]:
        return {
            "name": p.name,
            "default": p.is_default,
            "from": p.lower.isoformat() if p.lower else None,
            "to": p.upper.isoformat() if p.upper else None,
            "rows": p.rows,
            "bytes": p.bytes,
        }

    data = {
        "keep_months": keep,
        "dropped": [as_dict(p) for p in dropped],
        "partitions": [as_dict(p) for p in parts],
    }

    def render(_: Any) -> str:
        lines = []
        for p in dropped:
            lines.append(i18n.t("log.dropped", name=p.name, rows=p.rows))
        rows = [
            (
                p.name,
                _start(p),
                "" if p.is_default else i18n.local(p.upper),
                f"{p.rows:,}",
                f"{p.bytes / 1_048_576:.1f}",
            )
            for p in parts
        ]
        headers = [i18n.t(k) for k in ("log.name", "log.from", "log.to", "log.rows", "log.mib")]
        lines.append(i18n.table(headers, rows, right=(3, 4)))
        lines.append(i18n.t("log.keep", keep=keep) if keep else i18n.t("log.keep_all"))
        lines.append(i18n.times_note())
        return "\n".join(lines)

    emit(data, as_json, render)
    if not drop_expired and keep:
        typer.echo(i18n.t("log.hint"), err=True)
