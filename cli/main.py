"""``smartcode``: run the registry, manage its database, look things up."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli import context
from cli import demo as demo_cli
from cli import imports as imports_cli
from cli import labels as labels_cli
from cli import resolve as resolve_cli
from cli.output import emit, failures
from cli.serving import serve_app

if TYPE_CHECKING:  # the CLI imports the database layer only for the commands that use it
    from registry.embedded import EmbeddedCluster

app = typer.Typer(
    help="smartcode: the 智慧码 city-asset registry. Every command takes --help.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(
    help="The embedded PostgreSQL + PostGIS cluster (ignored when SMARTCODE_DATABASE_URL is set)."
)
app.add_typer(db_app, name="db")
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for machines")]


def _cluster() -> EmbeddedCluster:
    from registry.embedded import EmbeddedCluster

    s = context.settings()
    return EmbeddedCluster(
        s.embedded.data_dir, db_name=s.embedded.db_name, server_user=s.embedded.server_user
    )


def _external() -> bool:
    if context.settings().database.url:
        typer.echo("SMARTCODE_DATABASE_URL is set: the embedded cluster is not used.", err=True)
        return True
    return False


@db_app.command("start")
def db_start(as_json: JsonOpt = False) -> None:
    """Start the embedded cluster (initialising it on first use)."""
    with failures():
        if _external():
            raise typer.Exit(1)
        url = _cluster().start()
        emit({"status": "running", "url": url}, as_json)


@db_app.command("stop")
def db_stop(as_json: JsonOpt = False) -> None:
    """Stop the embedded cluster."""
    with failures():
        if _external():
            raise typer.Exit(1)
        _cluster().stop()
        emit({"status": "stopped"}, as_json)


@db_app.command("status")
def db_status(as_json: JsonOpt = False) -> None:
    """Say whether the embedded cluster runs, where, and as whom."""
    with failures():
        if _external():
            raise typer.Exit(1)
        st = _cluster().status()
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


@db_app.command("url")
def db_url() -> None:
    """Print the database URL (starting the embedded cluster if needed)."""
    with failures():
        from registry.db import database_url

        typer.echo(database_url(context.settings()))


@app.command()
def migrate(
    revision: Annotated[str, typer.Option(help="target revision")] = "head",
    downgrade: Annotated[bool, typer.Option(help="downgrade to --revision instead")] = False,
) -> None:
    """Upgrade the schema to the newest revision (or down to --revision with --downgrade)."""
    with failures():
        from registry import db

        url = db.database_url(context.settings())
        if downgrade:
            db.downgrade(url, revision)
        else:
            db.migrate(url, revision)
        typer.echo(f"schema at {db.current_revision(url) or 'base'}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
) -> None:
    """Start the database if needed, migrate, and serve the API (default 127.0.0.1:8000)."""
    with failures():
        serve_app(host, port)


@app.command()
def code(
    text: Annotated[str, typer.Argument(help="a smart code or 16-digit identifier, any separators")],
    as_json: JsonOpt = False,
) -> None:
    """Check a code offline: its parts, check digit and printed form."""
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
    text: Annotated[str, typer.Argument(help="the asset's smart code")],
    at: Annotated[
        dt.datetime | None, typer.Option(help="ISO time with zone: who was responsible then")
    ] = None,
    history: Annotated[bool, typer.Option(help="list every recorded version")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show a registered asset, its history, or who was responsible at a time."""
    with failures():
        from registry import assets

        with context.session() as session:
            data: Any
            if at is not None:
                data = assets.as_of(session, text, at)
            elif history:
                data = assets.history(session, text)
            else:
                data = assets.asset_view(session, assets.get_by_code(session, text))
        emit(data, as_json)


@app.command()
def token(
    name: Annotated[str | None, typer.Option(help="create a named token")] = None,
    role: Annotated[str, typer.Option(help="admin, unit or reader")] = "reader",
    unit: Annotated[int | None, typer.Option(help="unit id for a 'unit' token")] = None,
) -> None:
    """Print the administrator token, or create a named token for a unit or a reader."""
    with failures():
        from registry import tokens

        if name is None:
            typer.echo(tokens.admin_token(context.settings()))
            return
        with context.session() as session:
            typer.echo(tokens.create_token(session, name, role, context.cli_actor(), unit_id=unit))


resolve_cli.register(app)
demo_cli.register(app)
imports_cli.register(app)
labels_cli.register(app)


def main() -> None:
    """Entry point of the console script."""
    app()


if __name__ == "__main__":
    main()
