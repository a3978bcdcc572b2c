"""``smartcode disputes``: the dispute ledger (异议台账) at the terminal.

smartcode disputes list [--state S] [--unit ID] [--class CODE] [--zone NAME] [--kind asset|rule|complaint]
smartcode disputes overdue
smartcode disputes export --output FILE.csv|FILE.xlsx [the same filters]
smartcode disputes evidence ID FILE... --version N [--note TEXT]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cli import context, i18n
from cli.output import emit, failures

disputes_app = typer.Typer(
    help="异议台账：列表、逾期、导出、补充证据 / the dispute ledger: list, overdue, export, add evidence"
)

JsonOpt = Annotated[bool, typer.Option("--json", help="输出 JSON，供程序读取 / print JSON for machines")]
StateOpt = Annotated[
    str | None,
    typer.Option(
        "--state",
        help="状态：open 已提出、under_review 审核中、upheld 成立、rejected 驳回、withdrawn 撤回 / "
        "open, under_review, upheld, rejected, withdrawn",
    ),
]
UnitOpt = Annotated[int | None, typer.Option("--unit", help="提出异议的单位编号 / the objecting unit's id")]
ClassOpt = Annotated[
    str | None, typer.Option("--class", help="设施类型代码，例如 0118 / component class code, e.g. 0118")
]
ZoneOpt = Annotated[str | None, typer.Option("--zone", help="区域名称 / zone name")]
KindOpt = Annotated[
    str | None,
    typer.Option(
        "--kind", help="对象：asset 设施、rule 职责规则或 complaint 诉求 / asset, rule or complaint"
    ),
]


def _filter(
    state: str | None, unit: int | None, class_: str | None, zone: str | None, kind: str | None
) -> Any:
    from registry.disputes import DisputeFilter

    return DisputeFilter(state=state, unit_id=unit, class_code=class_, zone=zone, subject_kind=kind)


def _table(items: list[dict[str, Any]]) -> str:
    if not items:
        return i18n.t("disputes.none")
    headers = [
        i18n.t(k)
        for k in ("id", "status", "disputes.subject", "disputes.unit", "disputes.due", "disputes.overdue")
    ]
    rows = [
        [
            d["id"],
            i18n.t(f"disputes.st.{d['state']}"),
            f"{i18n.t('disputes.kind.' + d['subject']['kind'])} {d['subject']['id']}",
            d["unit"]["name"],
            d["due_on"],
            i18n.t("yes" if d["overdue"] else "no"),
        ]
        for d in items
    ]
    return i18n.table(headers, rows, right=(0,))


@disputes_app.command("list")
def list_command(
    state: StateOpt = None,
    unit: UnitOpt = None,
    class_: ClassOpt = None,
    zone: ZoneOpt = None,
    kind: KindOpt = None,
    limit: Annotated[
        int, typer.Option(help="最多显示条数，最新的在前 / at most this many, newest first")
    ] = 100,
    as_json: JsonOpt = False,
) -> None:
    """符合条件的异议，最新的在前 / the disputes matching the filters, newest first."""
    with failures():
        from registry import disputes

        with context.session() as session:
            items, _ = disputes.list_disputes(
                session, _filter(state, unit, class_, zone, kind), limit=limit, settings=context.settings()
            )
        emit(items, as_json, _table)


@disputes_app.command("overdue")
def overdue_command(as_json: JsonOpt = False) -> None:
    """超过办理期限仍未决定的异议 / the disputes still waiting for a decision after their last review day."""
    with failures():
        from registry import disputes

        with context.session() as session:
            items = disputes.overdue(session, settings=context.settings())
        emit(items, as_json, _table)


@disputes_app.command("export")
def export_command(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="输出文件 FILE.csv 或 FILE.xlsx / FILE.csv or FILE.xlsx")
    ],
    state: StateOpt = None,
    unit: UnitOpt = None,
    class_: ClassOpt = None,
    zone: ZoneOpt = None,
    kind: KindOpt = None,
) -> None:
    """导出异议台账（中文表头、本地时间），按扩展名写 CSV 或 XLSX / write the ledger (Chinese headers,
    local times) as CSV or XLSX, by the file's extension."""
    with failures():
        from common.errors import InvalidInput
        from registry import disputes

        fmt = disputes.check_format(output.suffix or "csv")
        if output.parent and not output.parent.is_dir():
            raise InvalidInput(i18n.t("file.no_folder", path=output, folder=output.parent))
        with context.session() as session:
            flt = _filter(state, unit, class_, zone, kind)
            body = disputes.export_ledger(session, flt, fmt, settings=context.settings())
            _, total = disputes.list_disputes(session, flt, limit=1, settings=context.settings())
        partial = output.with_name(output.name + ".partial")
        partial.write_bytes(body)
        partial.replace(output)  # a failed export leaves no half-written file under the name
        typer.echo(i18n.t("disputes.exported", count=total, path=str(output)), err=True)


@disputes_app.command("evidence")
def evidence_command(
    dispute_id: Annotated[int, typer.Argument(help="异议编号 / the dispute's id")],
    files: Annotated[
        list[Path],
        typer.Argument(help="照片（JPEG、PNG、WebP）或 PDF 文件 / photos (JPEG, PNG, WebP) or PDF documents"),
    ],
    version: Annotated[
        int,
        typer.Option(
            "--version",
            help="你读到的异议版本号（list --json） / the dispute's version you read (list --json)",
        ),
    ],
    note: Annotated[
        str | None,
        typer.Option("--note", help="文件说明（记入历史） / what the files are (kept in the history)"),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """补充证据：向受理中或审核中的异议添加文件（以管理员身份） / add evidence files to a dispute still
    open or under review, as the administrator."""
    with failures():
        from registry import disputes

        config = context.settings().disputes
        evidence = []
        for path in files:
            with path.open("rb") as handle:
                # One byte past the cap is enough for the service to refuse the file by its size.
                data = handle.read(config.evidence_max_mib * disputes.MIB + 1)
            evidence.append(disputes.Evidence(path.name, data))
        with context.session() as session:
            view = disputes.add_evidence(
                session,
                context.cli_actor(),
                dispute_id,
                evidence,
                version=version,
                note=note,
                settings=context.settings(),
            )
        if as_json:
            emit(view, True)
            return
        typer.echo(
            i18n.t(
                "disputes.evidence_added",
                count=len(evidence),
                id=dispute_id,
                total=view["evidence_count"],
                version=view["version"],
            )
        )


def register(app: typer.Typer) -> None:
    """Add ``smartcode disputes`` to the main app."""
    app.add_typer(disputes_app, name="disputes")
