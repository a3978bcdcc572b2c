"""How commands print: JSON for machines (``--json``), readable text otherwise, one-line errors."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import typer

from cli import i18n
from common.errors import SmartcodeError


def emit(data: Any, as_json: bool, render: Callable[[Any], str] | None = None) -> None:
    """Print ``data`` as JSON or through ``render`` (default: labelled lines, lists as a table)."""
    if as_json:
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")
        return
    typer.echo(render(data) if render else _lines(data))


def value(item: Any) -> str:
    """One field as people read it: a unit by name (and phone), yes/no, times local, lists joined."""
    if item is None:
        return "-"
    if isinstance(item, bool):
        return i18n.t("yes" if item else "no")
    if isinstance(item, dict):
        if "name" in item:
            phone = f"  {i18n.t('tel', phone=item['phone'])}" if item.get("phone") else ""
            return f"{item['name']}{phone}"
        if "lon" in item and "lat" in item:
            return f"{item['lon']}, {item['lat']}"
        return ", ".join(f"{i18n.t(k)} {value(v)}" for k, v in item.items())
    if isinstance(item, list | tuple):
        return ", ".join(value(v) for v in item)
    if isinstance(item, str) and len(item) >= 19 and item[4:5] == "-" and item[10:11] == "T":
        return i18n.local(item)
    return str(item)


def _lines(data: Any) -> str:
    if isinstance(data, dict):
        return i18n.key_values([(key, value(v)) for key, v in data.items()])
    if isinstance(data, list):
        if data and all(isinstance(item, dict) for item in data):
            keys = list(data[0])
            return i18n.table([i18n.t(k) for k in keys], [[value(row.get(k)) for k in keys] for row in data])
        return "\n".join(value(item) for item in data)
    return str(data)


def readable_file(path: Path) -> Path:
    """``path`` if it is a file this process can read; otherwise a one-line ``InvalidInput`` naming it."""
    from common.errors import InvalidInput

    if not path.exists():
        raise InvalidInput(_file_message("missing", path), path=str(path))
    if path.is_dir():
        raise InvalidInput(_file_message("directory", path), path=str(path))
    if not os.access(path, os.R_OK):
        raise InvalidInput(_file_message("unreadable", path), path=str(path))
    return path


_FILE_MESSAGES = {
    "missing": ("找不到文件 {path}", "no such file: {path}"),
    "directory": ("{path} 是目录，不是文件", "{path} is a directory, not a file"),
    "unreadable": ("没有权限访问文件 {path}", "permission denied: {path}"),
    "os": ("无法访问文件 {path}：{reason}", "cannot use {path}: {reason}"),
}


def _file_message(kind: str, path: Path | str, reason: str = "") -> str:
    zh, en = _FILE_MESSAGES[kind]
    return (en if i18n.lang() == "en" else zh).format(path=path, reason=reason)


@contextmanager
def failures() -> Iterator[None]:
    """Turn domain errors and file errors into one line on stderr and exit status 1."""
    try:
        yield
    except SmartcodeError as exc:
        typer.echo(i18n.t("error", message=i18n.pick(exc.message)), err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        # A file the user named could not be opened or written: say which, not where in our code.
        if isinstance(exc, FileNotFoundError):
            message = _file_message("missing", exc.filename or "?")
        elif isinstance(exc, IsADirectoryError):
            message = _file_message("directory", exc.filename or "?")
        elif isinstance(exc, PermissionError):
            message = _file_message("unreadable", exc.filename or "?")
        else:
            message = _file_message("os", exc.filename or "?", exc.strerror or type(exc).__name__)
        typer.echo(i18n.t("error", message=message), err=True)
        raise typer.Exit(1) from None
