"""``smartcode db events``: the event outbox and the webhook delivery log, and pruning them (retention)."""

from __future__ import annotations

from typing import Any

import typer

from cli import context, i18n
from cli.output import emit

_TABLES = ("event_outbox", "webhook_deliveries", "webhook_attempts")


def show(prune: bool, as_json: bool) -> None:
    """Prune when asked, then print what the outbox and the log hold."""
    from registry.outbox_retention import Pruned, outbox_stats
    from registry.outbox_retention import prune as run_prune

    keep = context.settings().webhooks.keep_days
    engine = context.engine()
    pruned: Pruned | None = run_prune(engine, context.cli_actor(), keep) if prune else None
    stats = outbox_stats(engine)
    data: dict[str, Any] = {
        "keep_days": keep,
        "pruned": pruned.details() if pruned is not None else None,
        "rows_estimated": {t: int((stats.estimates or {}).get(t, 0)) for t in _TABLES},
        "pending_deliveries": stats.pending,
        "events_not_fanned_out": stats.unfanned,
        "oldest_event_at": stats.oldest.isoformat() if stats.oldest else None,
    }

    def render(_: Any) -> str:
        lines = []
        if pruned is not None:
            if keep:
                lines.append(
                    i18n.t(
                        "ev.pruned",
                        events=pruned.events,
                        deliveries=pruned.deliveries,
                        attempts=pruned.attempts,
                        cutoff=i18n.local(pruned.cutoff),
                    )
                )
            if pruned.kept:
                lines.append(i18n.t("ev.kept", kept=pruned.kept))
        rows = [(t, f"{n:,}") for t, n in data["rows_estimated"].items()]
        lines.append(i18n.table([i18n.t("ev.table"), i18n.t("log.rows")], rows, right=(1,)))
        lines.append(
            i18n.t(
                "ev.waiting",
                pending=stats.pending,
                unfanned=stats.unfanned,
                oldest=i18n.local(stats.oldest) if stats.oldest else "-",
            )
        )
        lines.append(i18n.t("ev.keep", keep=keep) if keep else i18n.t("ev.keep_all"))
        lines.append(i18n.times_note())
        return "\n".join(lines)

    emit(data, as_json, render)
    if not prune and keep:
        typer.echo(i18n.t("ev.hint"), err=True)
