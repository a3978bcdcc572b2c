"""How commands print: JSON for machines (``--json``), readable text otherwise, one-line errors."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import typer

from common.errors import SmartcodeError


def emit(data: Any, as_json: bool, render: Callable[[Any], str] | None = None) -> None:
    """Print ``data`` as JSON or through ``render`` (default: key: value lines)."""
    if as_json:
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")
        return
    typer.echo(render(data) if render else _lines(data))


def _lines(data: Any) -> str:
    if isinstance(data, dict):
        return "\n".join(f"{key}: {value}" for key, value in data.items())
    if isinstance(data, list):
        return "\n".join(_lines(item) if not isinstance(item, dict) else _one_line(item) for item in data)
    return str(data)


def _one_line(item: dict[str, Any]) -> str:
    return "  ".join(str(value) for value in item.values())


@contextmanager
def failures() -> Iterator[None]:
    """Turn domain errors into a one-line reason on stderr and exit status 1."""
    try:
        yield
    except SmartcodeError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
