"""Serving the API: what ``smartcode serve`` and ``smartcode demo --serve`` both run."""

from __future__ import annotations

import typer

from cli import context
from common.settings import Settings


def serve_app(host: str | None, port: int | None) -> None:
    """Start the database if needed, migrate, and serve the API until interrupted."""
    import uvicorn

    from api.app import create_app
    from registry.db import service_url
    from registry.tokens import ensure_admin_token

    s = context.settings()
    context.ready_url()  # migrated as the owner; the service itself connects as its own role
    _apply_log_retention(s)
    url = service_url(s)
    bind_host, bind_port = host or s.api.host, port or s.api.port
    typer.echo(f"smartcode 服务地址 http://{bind_host}:{bind_port}/  (API 文档: /docs)")
    created = ensure_admin_token(s)
    if created is not None:
        # Shown once, when it is made; afterwards `smartcode token` prints it for whoever may read the file.
        typer.echo(f"已生成管理员令牌 (administrator token, shown once): {created}")
    else:
        typer.echo("管理员令牌: 运行 `smartcode token` 查看 (administrator token: `smartcode token`)")
    typer.echo(_DELIVERY[s.webhooks.worker])
    uvicorn.run(create_app(s, url=url), host=bind_host, port=bind_port, log_level="info")


# What serve says about webhook delivery (SMARTCODE_WEBHOOKS_WORKER), so the layout is never a guess.
_DELIVERY = {
    "process": "webhook 投递：独立子进程，随服务启停 (webhooks: delivered by a child process of this server)",
    "thread": "webhook 投递：服务进程内的线程 (webhooks: delivered by a thread of this server)",
    "off": "webhook 投递：已关闭，请另行运行 `smartcode worker` "
    "(webhooks: not delivered here: run `smartcode worker`)",
}


def _apply_log_retention(s: Settings) -> None:
    """Drop the resolution log's expired months as the owner, before the service (which may not) starts."""
    import datetime as dt

    from registry.log_partitions import drop_expired

    with context.session() as session:
        now = dt.datetime.now(dt.UTC)
        for part in drop_expired(session, context.cli_actor(), s.resolve.log_keep_months, now):
            typer.echo(f"解析日志 {part.name} 已过保留期，删除 {part.rows:,} 行 (resolution log retention)")


def run_worker() -> None:
    """Deliver webhooks until interrupted (SIGINT/SIGTERM), without serving the API."""
    import asyncio
    import logging
    import signal

    from registry.db import service_url
    from registry.resolution import conninfo_from_url
    from registry.webhook_worker import WebhookWorker, run_loop

    s = context.settings()
    context.ready_url()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    worker = WebhookWorker(conninfo_from_url(service_url(s)), s.webhooks, name="smartcode-worker")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.request_stop)
        await worker.run()

    typer.echo("smartcode worker: 投递 webhook (delivering webhooks); Ctrl-C 停止")
    run_loop(main())
