"""``smartcode labels``: print QR labels (PDF, SVG, PNG), revoke them, rotate the signing key."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cli import context, i18n
from cli.output import emit, failures

JsonOpt = Annotated[bool, typer.Option("--json", help="输出 JSON，供程序读取 / print JSON for machines")]

labels_app = typer.Typer(
    help="二维码标签：打印、作废、轮换签名密钥 / QR labels: print, revoke, rotate the signing key.",
    no_args_is_help=True,
)


def _size(text: str) -> tuple[float, float]:
    from common.errors import InvalidInput

    try:
        width, height = (float(part) for part in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise InvalidInput(i18n.t("labels.size", text=text)) from None
    return width, height


@labels_app.command("print")
def print_labels(
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="输出文件（.pdf、.svg 或 .png） / file to write (.pdf, .svg or .png)"
        ),
    ],
    zone: Annotated[
        str | None,
        typer.Option(
            help="该名称区域内的设施（现行边界） / assets in the zone of this name (current boundary)"
        ),
    ] = None,
    zone_level: Annotated[
        str | None, typer.Option(help="区域名称有歧义时的级别 / the zone's level when the name is ambiguous")
    ] = None,
    class_: Annotated[
        list[str] | None, typer.Option("--class", help="设施类型代码，可重复 / class code, repeatable")
    ] = None,
    unit: Annotated[
        int | None,
        typer.Option(help="作为权属、养护或主管单位的单位编号 / unit id as owner, maintainer or supervisor"),
    ] = None,
    batch: Annotated[int | None, typer.Option(help="导入批次号 / import batch id")] = None,
    code: Annotated[
        list[str] | None, typer.Option("--code", help="智慧码，可重复 / a smart code, repeatable")
    ] = None,
    codes_file: Annotated[
        Path | None,
        typer.Option(
            help="每行一个智慧码，或带 code 列的导出 CSV / "
            "codes one per line, or an export CSV with a 'code' column"
        ),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="pdf、svg 或 png（默认按 -o） / pdf, svg or png (default: from -o)"),
    ] = None,
    single: Annotated[
        bool,
        typer.Option(
            "--single",
            help="标签打印机每页一张（默认 A4 整页） / "
            "one label a page for a label printer (default: A4 sheets)",
        ),
    ] = False,
    columns: Annotated[int, typer.Option(help="A4 每行标签数 / labels across an A4 sheet")] = 3,
    rows: Annotated[int, typer.Option(help="A4 每列标签数 / labels down an A4 sheet")] = 8,
    label_size: Annotated[
        str | None,
        typer.Option(
            help="宽x高，毫米（单张默认 50x30；整页按页面和行列） / "
            "WIDTHxHEIGHT in mm (single default 50x30; sheet: page / grid)"
        ),
    ] = None,
    dpi: Annotated[int, typer.Option(help="PNG 分辨率 / resolution of PNG output")] = 300,
    as_json: JsonOpt = False,
) -> None:
    """打印所选设施的标签；重印网址不变，已注销的不打印 / print the labels of the selected assets;
    reprinting gives the same URLs, decommissioned get none."""
    with failures():
        from common.errors import InvalidInput
        from qr.matrix import MAX_VERSION, qr_version
        from qr.sheets import FORMATS, Layout, page_documents, write_pdf
        from qr.signing import keys_from_settings
        from registry.labels import (
            LabelSelection,
            issue_labels,
            label_contents,
            read_code_list,
            select_assets,
        )

        kind = (fmt or output.suffix.lstrip(".")).lower()
        if kind not in FORMATS:
            raise InvalidInput(i18n.t("labels.format", formats=", ".join(FORMATS), kind=kind))
        size = _size(label_size) if label_size else None
        layout = Layout.single(*(size or (50.0, 30.0))) if single else Layout.sheet(columns, rows, size)
        codes = list(code or ())
        if codes_file is not None:
            try:
                codes += read_code_list(codes_file.read_text(encoding="utf-8-sig"))
            except (OSError, UnicodeDecodeError) as exc:
                raise InvalidInput(i18n.t("labels.codes_file", name=codes_file.name, why=exc)) from None
        selection = LabelSelection(
            zone=zone,
            zone_level=zone_level,
            class_codes=tuple(class_ or ()),
            unit_id=unit,
            batch_id=batch,
            codes=tuple(codes),
        )
        settings = context.settings()
        keys = keys_from_settings(settings.labels)
        with context.session() as session:
            assets = select_assets(session, selection, context.cli_actor())
            issued = issue_labels(
                session, assets, context.cli_actor(), keys=keys, base_url=settings.labels.public_base_url
            )
        contents = label_contents(issued)
        files: list[str] = []
        if kind == "pdf":
            pages = write_pdf(contents, layout, str(output))
            files.append(str(output))
        else:
            pages = 0
            total = -(-len(contents) // layout.per_page)
            for pages, document in enumerate(page_documents(contents, layout, kind, dpi=dpi), start=1):  # type: ignore[arg-type]
                path = output if total == 1 else output.with_name(f"{output.stem}-{pages:03d}{output.suffix}")
                path.write_bytes(document)
                files.append(str(path))
        version = max((qr_version(label.url) for label in issued[:50]), default=0)
        if version > MAX_VERSION:
            typer.echo(i18n.t("labels.qr_version", version=version, most=MAX_VERSION), err=True)
        summary: dict[str, Any] = {
            "labels": len(issued),
            "new": sum(1 for label in issued if label.new),
            "reprinted": sum(1 for label in issued if not label.new),
            "pages": pages,
            "qr_version": version,
            "files": files if len(files) <= 5 else [*files[:2], "...", files[-1]],
        }
        emit(summary, as_json)


@labels_app.command("revoke")
def revoke(
    code: Annotated[str, typer.Argument(help="设施的智慧码 / the asset's smart code")],
    kind: Annotated[
        str,
        typer.Option(
            help="类型：replaced 更换、stolen 被盗、counterfeit 伪造、damaged 损坏或 other 其他 / "
            "replaced, stolen, counterfeit, damaged or other"
        ),
    ],
    reason: Annotated[
        str,
        typer.Option(help="原因，简短说明（记入审计日志） / why, in a few words (recorded in the audit log)"),
    ],
    edition: Annotated[
        int | None, typer.Option(help="指定版次（默认现行标签） / a given edition (default: the live label)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """作废设施的标签：其每份扫描都显示 标签已作废，下次打印为新版次 / revoke an asset's label: every copy
    of it then scans as 标签已作废; the next print is a new edition."""
    with failures():
        from registry.labels import revoke_label

        with context.session() as session:
            view = revoke_label(session, code, context.cli_actor(), kind=kind, reason=reason, edition=edition)
        emit(view, as_json)


@labels_app.command("history")
def history(
    code: Annotated[str, typer.Argument(help="设施的智慧码 / the asset's smart code")],
    as_json: JsonOpt = False,
) -> None:
    """设施标签的各版次：签发时间、打印次数、是否作废 / every edition of an asset's label: when issued, how
    often printed, whether revoked."""
    with failures():
        from registry.labels import label_history

        with context.session() as session:
            emit(label_history(session, code), as_json)


@labels_app.command("check")
def check(
    url_or_code: Annotated[
        str, typer.Argument(help="扫描得到的标签网址或智慧码 / a scanned label URL, or a code")
    ],
    signature: Annotated[
        str | None, typer.Option(help="只给智慧码时的签名 / the signature, when a bare code is given")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """扫描此标签的结果：标签有效、标签未通过验证、标签已作废、已注销或未签名 / what a scan of this label
    says: 标签有效, 标签未通过验证, 标签已作废, 已注销 or unsigned."""
    with failures():
        from urllib.parse import parse_qs, urlsplit

        from qr.signing import keys_from_settings
        from registry.labels import label_status

        if "/c/" in url_or_code:
            found = parse_qs(urlsplit(url_or_code).query).get("s")
            signature = found[0] if found else None
        keys = keys_from_settings(context.settings().labels)
        with context.session() as session:
            result = label_status(session, url_or_code, signature, keys=keys)
        emit(
            {
                "status": result.status.value,
                "words": result.words,
                "code": result.code,
                "reason": result.reason,
            },
            as_json,
        )


@labels_app.command("rotate-key")
def rotate_key(as_json: JsonOpt = False) -> None:
    """新增签名密钥并启用；已打印的标签仍有效 / add a new signing key and make it current; labels already
    printed stay valid."""
    with failures():
        from qr.signing import add_key

        labels = context.settings().labels
        new_id = add_key(labels.key_file)
        if labels.current_key_id:
            note = i18n.both_halves("labels.key_old", id=labels.current_key_id)
        else:
            note = i18n.both_halves("labels.key_new")
        emit({"key_id": new_id, "note": note if as_json else i18n.pick(note)}, as_json)


def register(app: typer.Typer) -> None:
    """Add ``labels`` to the main command."""
    app.add_typer(labels_app, name="labels")
