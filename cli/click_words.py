"""What Typer and Click say themselves — help headings, usage lines, usage errors — in the reader's language.

Typer draws ``--help`` with rich (panels titled from module constants of ``typer.rich_utils``) or, without
rich, with Click's plain formatter; Click words its usage errors in English. Click up to 8.x passes them
through gettext's process-wide default domain, but the Click Typer carries since 0.26 has no gettext at all
(and a catalogue for the shared "messages" domain would speak for every library in the process). So the
CLI localises at seams both libraries expose, without forking either:

* the panel titles and ``[default: …]`` markers are ``typer.rich_utils`` constants, set before rendering;
* the usage line and the plain formatter's headings come from the context's ``formatter_class``
  (:class:`LocalisedContext`, set on every command by ``i18n.localise_help``);
* a usage error is reworded where the root command makes its context and invokes its subcommands
  (:func:`localised_errors`): the Chinese sentence first, Click's English original on the next line,
  the same exit status (2).

For an English reader everything stays as Typer and Click wrote it. This module knows nothing of the
settings: ``cli.i18n`` tells it the language (:func:`use`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

import typer

try:  # Typer 0.26 and later carry their own copy of Click
    from typer._click.exceptions import UsageError
    from typer._click.formatting import HelpFormatter
except ImportError:  # earlier Typer runs on Click itself
    from click.exceptions import UsageError  # type: ignore[assignment]
    from click.formatting import HelpFormatter  # type: ignore[assignment]

_state = {"lang": "zh"}

CJK = re.compile(r"[\u4e00-\u9fff]")


def use(language: str) -> None:
    """Speak ``language`` (``zh`` or ``en``) in Typer's and Click's own words from now on."""
    _state["lang"] = language


def language() -> str:
    """The language Typer's and Click's words are in."""
    return _state["lang"]


# --- help: headings, markers, the usage line -----------------------------------------------------------

# Headings stand alone, so both languages; the markers sit beside a bilingual help text, so Chinese only.
_HEADINGS = {
    "Usage": "用法 / Usage",
    "Options": "选项 / Options",
    "Arguments": "参数 / Arguments",
    "Commands": "命令 / Commands",
    "Error": "错误 / Error",
}
_RICH_WORDS = {
    "ARGUMENTS_PANEL_TITLE": _HEADINGS["Arguments"],
    "OPTIONS_PANEL_TITLE": _HEADINGS["Options"],
    "COMMANDS_PANEL_TITLE": _HEADINGS["Commands"],
    "ERRORS_PANEL_TITLE": _HEADINGS["Error"],
    "DEFAULT_STRING": "[默认：{}]",
    "ENVVAR_STRING": "[环境变量：{}]",
    "REQUIRED_LONG_STRING": "[必填]",
    "DEPRECATED_STRING": "（已弃用）",
    "ABORTED_TEXT": "已中止 / Aborted.",
    "RICH_HELP": "运行 [blue]'{command_path} {help_option}'[/] 查看帮助。",  # Typer 0.15 and later
}
_RICH_ENGLISH: dict[str, Any] = {}
_MARKERS = {"default": "默认", "env var": "环境变量", "required": "必填", "deprecated": "已弃用"}


def _set_rich_words() -> None:
    # Imported here, when help or an error is about to be drawn: rich costs a start-up nobody else pays.
    try:
        from typer import rich_utils
    except ImportError:  # no rich: Click's plain formatter draws, and LocalisedFormatter speaks
        return
    for name, chinese in _RICH_WORDS.items():
        if hasattr(rich_utils, name):
            _RICH_ENGLISH.setdefault(name, getattr(rich_utils, name))
            setattr(rich_utils, name, chinese if language() == "zh" else _RICH_ENGLISH[name])


def _markers(text: str) -> str:
    # Click's plain help ends an item with "[default: 5; required]".
    def one(item: str) -> str:
        key, sep, rest = item.partition(": ")
        return f"{_MARKERS[key]}：{rest}" if sep and key in _MARKERS else _MARKERS.get(item, item)

    def bracket(match: re.Match[str]) -> str:
        return "[" + "；".join(one(item) for item in match.group(1).split("; ")) + "]"

    return re.sub(r"\[([^\[\]]+)\]$", bracket, text)


class LocalisedFormatter(HelpFormatter):
    """Click's help formatter with the usage prefix, headings and markers in the reader's language."""

    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        """The usage line, headed ``用法 / Usage:`` for a Chinese reader."""
        if prefix is None and language() == "zh":
            prefix = f"{_HEADINGS['Usage']}: "
        super().write_usage(prog, args, prefix)

    def write_heading(self, heading: str) -> None:
        """A section heading (Options, Arguments, Commands) in both languages for a Chinese reader."""
        super().write_heading(_HEADINGS.get(heading, heading) if language() == "zh" else heading)

    def write_dl(self, rows: Sequence[tuple[str, str]], col_max: int = 30, col_spacing: int = 2) -> None:
        """The options or commands, their ``[default: …]`` markers in Chinese for a Chinese reader."""
        if language() == "zh":
            rows = [(term, _markers(text)) for term, text in rows]
        super().write_dl(rows, col_max, col_spacing)


class LocalisedContext(typer.Context):
    """A context whose help and usage lines speak the reader's language (rich or plain)."""

    formatter_class = LocalisedFormatter

    def make_formatter(self) -> Any:
        """The formatter, with Typer's rich panel words set for the current language first."""
        _set_rich_words()
        return super().make_formatter()


# --- usage errors ----------------------------------------------------------------------------------------

_KIND = {"argument": "参数", "option": "选项", "parameter": "参数"}
_TYPE = {
    "integer": "整数",
    "int": "整数",
    "float": "数字",
    "bool": "布尔值",
    "number": "数字",
    "boolean": "布尔值",
    "date": "日期",
    "datetime": "日期时间",
    "datetime or date": "日期时间",
    "time": "时间",
    "UUID": "UUID",
    "uuid": "UUID",
    "string": "文本",
    "integer range": "整数",
    "float range": "数字",
}
_PATH_KIND = {"file": "文件", "directory": "目录", "path": "路径"}
_COMPARE = {
    "less than or equal to": "应小于或等于",
    "greater than or equal to": "应大于或等于",
    "less than": "应小于",
    "greater than": "应大于",
}


def _names(hint: str) -> str:
    # Click names an option by all its spellings: "'--output' / '-o'".
    return hint.replace("' / '", "' 或 '")


def _value_rules() -> list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]]:
    # What a parameter type says about a bad value: Click's own types, Typer's, and Pydantic's (Typer
    # 0.29 converts through Pydantic, whose messages name the type but not the value).
    return [
        (
            re.compile(
                r"(?:Value )?(?P<v>.+?) is not a valid (?P<t>integer range|float range|[\w ]+?)\b.*", re.S
            ),
            lambda m: f"{m['v']} 不是有效的{_TYPE.get(m['t'], ' ' + m['t'])}",
        ),
        (
            re.compile(r"(?:Value error, )?(?P<v>.+?) is not one of (?P<c>.+?)\.?", re.S),
            lambda m: f"{m['v']} 不是可选的值，可选：{m['c']}",
        ),
        (re.compile(r"(?P<v>'.*') is not (?P<c>'.*')\.?"), lambda m: f"{m['v']} 不是可选的值，应为 {m['c']}"),
        (
            re.compile(r"(?P<v>.+?) is not in the range (?P<r>.+?)\.?"),
            lambda m: f"{m['v']} 不在范围 {m['r']} 内",
        ),
        (
            re.compile(
                r"(?P<v>.+?) is (?P<w>smaller|larger) than the (?:minimum|maximum) valid value (?P<n>.+?)\.?"
            ),
            lambda m: f"{m['v']} {'小于最小值' if m['w'] == 'smaller' else '大于最大值'} {m['n']}",
        ),
        (
            re.compile(r"Input should be a valid (?P<t>[\w ]+?)(?:,.*)?", re.S),
            lambda m: f"应为{_TYPE.get(m['t'], ' ' + m['t'])}",
        ),
        (
            re.compile(r"Input should be (?P<op>(?:less|greater) than(?: or equal to)?) (?P<n>.+)"),
            lambda m: f"{_COMPARE[m['op']]} {m['n']}",
        ),
        (re.compile(r"Input should be (?P<c>'.*')"), lambda m: f"应为 {m['c'].replace(' or ', ' 或 ')}"),
        (
            re.compile(r"(?P<v>.+?) does not match the formats? (?P<f>.+?)\.?"),
            lambda m: f"{m['v']} 不符合格式 {m['f']}",
        ),
        (
            re.compile(r"(?P<n>\d+) values are required, but (?P<g>\d+) (?:was|were) given\.?"),
            lambda m: f"需要 {m['n']} 个值，给了 {m['g']} 个",
        ),
        (
            re.compile(r"(?P<k>File|Directory|Path|file|directory|path) (?P<p>'.*') (?P<w>.+?)\.?"),
            lambda m: _path(m["k"], m["p"], m["w"]),
        ),
    ]


_PATH_PROBLEM = {
    "does not exist": "不存在",
    "is a file": "是文件，不是目录",
    "is a directory": "是目录，不是文件",
    "is not readable": "不可读",
    "is not writable": "不可写",
    "is not executable": "不可执行",
}


def _path(kind: str, path: str, problem: str) -> str:
    return f"{_PATH_KIND[kind.lower()]} {path} {_PATH_PROBLEM.get(problem, problem)}"


def _value(message: str) -> str | None:
    for pattern, say in _value_rules():
        match = pattern.fullmatch(message.strip())
        if match:
            return say(match)
    return None


def _invalid(m: re.Match[str]) -> str:
    hint, message = m["hint"], m["msg"]
    if CJK.search(message):  # our own words, already in the reader's language
        return f"{_names(hint)} 的值无效：{message}" if hint else message
    value = _value(message)
    where = f"{_names(hint)} 的值无效" if hint else "值无效"
    return f"{where}：{value}" if value else where


def _missing(m: re.Match[str]) -> str:
    text = f"缺少{_KIND[m['kind']]}" + (f" {_names(m['hint'])}" if m["hint"] else "")
    extra = (m["extra"] or "").strip()
    if extra.startswith("Choose from:"):
        text += "，可选：" + ", ".join(part.strip(" ,\t.") for part in extra[12:].split("\n") if part.strip())
    return text


# What Click suggests after an unknown name, as its releases word it.
_POSSIBLE = (
    r"(?: Did you mean (?P<one>.+)\?"
    r"| \((?:Possible options|Did you mean one of): (?P<many>.+?)\??\))?"
)


def _suggest(possible: str | None) -> str:
    return f"（可能是 {possible}）" if possible else ""


_RULES: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (
        # "No such option: --x" (Click 8.1-8.3, Typer's copy), "No such option '--x'." (Click 8.4 and later)
        re.compile(r"No such option:? (?P<name>\S+?)\.?" + _POSSIBLE),
        lambda m: f"没有这个选项：{m['name']}{_suggest(m['one'] or m['many'])}",
    ),
    (
        re.compile(r"No such command (?P<name>.+?)\." + _POSSIBLE),
        lambda m: f"没有这个命令：{m['name']}{_suggest(m['one'] or m['many'])}",
    ),
    (re.compile(r"Missing command\."), lambda m: "缺少命令"),
    (
        re.compile(
            r"Missing (?P<kind>argument|option|parameter)(?: (?P<hint>.+?))?\.(?:\s+(?P<extra>.*))?", re.S
        ),
        _missing,
    ),
    (re.compile(r"Invalid value for (?P<hint>.+?): (?P<msg>.*)", re.S), _invalid),
    (re.compile(r"Invalid value(?P<hint>): (?P<msg>.*)", re.S), _invalid),
    (
        re.compile(r"Got unexpected extra argument(?:s|\(s\))? \((?P<args>.*)\)", re.S),
        lambda m: f"多余的参数：{m['args']}",
    ),
    (re.compile(r"Option (?P<name>.+) requires an argument\."), lambda m: f"选项 {m['name']} 后面缺少值"),
    (
        re.compile(r"Option (?P<name>.+) requires (?P<n>\d+) arguments\."),
        lambda m: f"选项 {m['name']} 需要 {m['n']} 个值",
    ),
    (re.compile(r"Option (?P<name>.+) does not take a value\."), lambda m: f"选项 {m['name']} 不接受值"),
    (
        re.compile(r"Argument (?P<name>.+) takes (?P<n>\d+) values\."),
        lambda m: f"参数 {m['name']} 需要 {m['n']} 个值",
    ),
    (
        re.compile(r"Could not open file (?P<name>.+?): (?P<why>.*)", re.S),
        lambda m: f"无法打开文件 {m['name']}",
    ),
]


def chinese(message: str) -> str:
    """Click's English message of a usage error said in Chinese, naming the same option and value.

    A message this module does not know still gets a Chinese sentence saying what kind of trouble it is.
    """
    return _said(message) or "命令行用法有误"


def _said(message: str) -> str | None:
    for pattern, say in _RULES:
        match = pattern.fullmatch(message.strip())
        if match:
            return say(match)
    return None


def reworded(message: str) -> str:
    """The text of a usage error for a Chinese reader: Chinese first, Click's English on the next line.

    A message that already holds Chinese (a command's own ``BadParameter``) is not repeated.
    """
    if CJK.search(message):
        # Already Chinese: a known wording is said our way, anything else is kept whole, never replaced.
        return _said(message) or message
    return f"{chinese(message)}\n{message}"


class LocalisedUsageError(UsageError):
    """A usage error already worded for the reader; shown as Click shows one, in the reader's words."""

    def __init__(self, message: str, ctx: Any, exit_code: int) -> None:
        super().__init__(message, ctx)
        self.exit_code = exit_code

    def show(self, file: IO[Any] | None = None) -> None:
        """Usage, the help hint and the error, without rich (with rich, Typer draws the panel)."""
        ctx = self.ctx
        if ctx is not None:
            hint = ""
            if ctx.command.get_help_option(ctx) is not None:
                hint = f"运行 '{ctx.command_path} {ctx.help_option_names[0]}' 查看帮助。\n"
            typer.echo(f"{ctx.get_usage()}\n{hint}", file=file, err=file is None)
        typer.echo(f"错误：{self.format_message()}", file=file, err=file is None)


@contextmanager
def localised_errors() -> Iterator[None]:
    """Reword the usage errors raised inside for a Chinese reader; an English one gets Click's own."""
    try:
        yield
    except UsageError as exc:
        # Only usage errors: a command's own ClickException (exit 1) is no usage mistake, and shown as is.
        # Typer draws the help for a bare group through this error: it is no error to reword.
        if (
            language() != "zh"
            or isinstance(exc, LocalisedUsageError)
            or type(exc).__name__ == "NoArgsIsHelpError"
        ):
            raise
        _set_rich_words()
        raise LocalisedUsageError(
            reworded(exc.format_message()), getattr(exc, "ctx", None), exc.exit_code
        ) from None
