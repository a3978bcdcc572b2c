"""What the CLI says to people: labels in Chinese (default) or English, aligned tables, local times.

The language is ``smartcode --lang`` if given, else the setting ``SMARTCODE_LANG``, else Chinese.
Times are shown as local wall-clock time in the deployment's zone (``SMARTCODE_TIMEZONE``, default
Asia/Shanghai), the zone and its offset said once per output. ``--json`` never goes through here.
The resolver's explanation lines are domain data and come from :mod:`registry.messages`.
The ``--help`` texts are written ``中文 / English`` beside the options; :func:`localise_help` shows
them whole (Chinese first) or, for an English reader, their English half. Typer's and Click's own words
(headings, usage lines, usage errors) follow the same language through :mod:`cli.click_words`.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
import weakref
import zoneinfo
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from cli import click_words
from common.errors import ConfigurationError
from common.settings import get_settings
from registry.messages import Bilingual, check_lang, in_lang

_state: dict[str, str] = {}

# key -> (Chinese, English)
_LABELS: dict[str, tuple[str, str]] = {
    "error": ("错误：{message}", "error: {message}"),
    "yes": ("是", "yes"),
    "no": ("否", "no"),
    "none": ("-", "-"),
    "open_end": ("至今", "open"),
    "since_unknown": ("不详", "unknown"),
    "times_note": ("（时间为 {zone} 本地时间，UTC{offset}）", "(times are local to {zone}, UTC{offset})"),
    # fields of assets, batches, zones, rules, reports
    "code": ("智慧码", "code"),
    "code_display": ("智慧码", "code"),
    "display": ("印刷格式", "printed form"),
    "county": ("区县代码", "county"),
    "class": ("设施类型", "class"),
    "class_code": ("设施类型", "class"),
    "geometry": ("几何", "geometry"),
    "attributes": ("其他属性", "attributes"),
    "serial": ("序号", "serial"),
    "check_digit": ("校验位", "check digit"),
    "state": ("状态", "state"),
    "in_use": ("在用", "in use"),
    "decommissioned_at": ("注销时间", "decommissioned"),
    "decommission_reason": ("注销原因", "decommission reason"),
    "position": ("位置（经度，纬度）", "position (lon, lat)"),
    "owner": ("权属单位", "owner"),
    "maintainer": ("养护单位", "maintainer"),
    "supervisor": ("主管部门", "supervisor"),
    "id": ("编号", "id"),
    "grid_code": ("网格编码", "grid code"),
    "data_source": ("数据来源", "data source"),
    "address": ("地址", "address"),
    "note": ("备注", "note"),
    "installed_on": ("安装日期", "installed"),
    "source_id": ("原编号", "source id"),
    "batch_id": ("导入批次", "import batch"),
    "dispute_id": ("异议编号", "dispute"),
    "created_at": ("登记时间", "registered"),
    "changed_at": ("最近修改", "last changed"),
    "version": ("版本", "version"),
    "recorded_at": ("记录时间", "recorded"),
    "actor": ("操作人", "by"),
    "reason": ("原因", "reason"),
    "action": ("操作", "action"),
    "changed": ("变更内容", "changed"),
    "valid_from": ("生效", "from"),
    "valid_to": ("失效", "to"),
    "level": ("级别", "level"),
    "name": ("名称", "name"),
    "unit": ("责任单位", "unit"),
    "zone": ("区域", "zone"),
    "category": ("案件类别", "category"),
    "priority": ("优先级", "priority"),
    "classes": ("设施类型", "classes"),
    "aliases": ("别名", "aliases"),
    "role": ("角色", "role"),
    "revoked_at": ("吊销时间", "revoked"),
    "status": ("状态", "status"),
    "file": ("文件", "file"),
    "started_at": ("开始时间", "started"),
    "finished_at": ("结束时间", "finished"),
    "read": ("读取", "read"),
    "created": ("新建", "created"),
    "updated": ("更新", "updated"),
    "unchanged": ("未变", "unchanged"),
    "added": ("新增", "added"),
    "removed": ("删除", "removed"),
    "rows": ("行数", "rows"),
    "batch": ("批次", "batch"),
    "crs": ("坐标系", "CRS"),
    "replace": ("以文件为准", "replace"),
    "county_code": ("区县代码", "county"),
    "rejected": ("拒绝", "rejected"),
    "profile": ("映射方案", "profile"),
    "format": ("格式", "format"),
    "size": ("大小（字节）", "size (bytes)"),
    "sha256": ("SHA-256", "sha256"),
    "error_text": ("错误", "error"),
    "rolled_back_at": ("回滚时间", "rolled back"),
    "rolled_back_by": ("回滚人", "rolled back by"),
    "at": ("时间", "at"),
    "recorded_version": ("当时记录的版本", "version recorded then"),
    "responsibility": ("责任期", "responsibility period"),
    "outcome": ("结果", "outcome"),
    "description": ("说明", "description"),
    "repaired": ("已修复", "repaired"),
    "units_created": ("新建单位（未核实）", "units created (unverified)"),
    "imported": ("已导入", "imported"),
    "replaced": ("已替换", "replaced"),
    "skipped": ("已跳过", "skipped"),
    "running": ("运行中", "running"),
    "data_dir": ("数据目录", "data directory"),
    "socket_dir": ("套接字目录", "socket directory"),
    "pid": ("进程号", "pid"),
    "server_user": ("服务用户", "server user"),
    "url": ("地址", "url"),
    "replica_created": ("已创建", "created"),
    "replication_state": ("复制状态", "replication state"),
    "port": ("端口", "port"),
    "slot": ("复制槽", "replication slot"),
    "slot_active": ("复制槽在用", "slot active"),
    "primary_lsn": ("主库 WAL 位置", "primary LSN"),
    "sent_lsn": ("已发送位置", "sent LSN"),
    "replay_lsn": ("已回放位置", "replayed LSN"),
    "lag_bytes": ("延迟（字节）", "lag (bytes)"),
    "lag_s": ("延迟（秒）", "lag (seconds)"),
    "phone": ("电话", "tel"),
    "tel": ("电话 {phone}", "tel {phone}"),
    "list_sep": ("、", ", "),
    # headings of views
    "versions": ("版本记录", "versions"),
    "periods": ("责任期", "responsibility periods"),
    "batches_none": ("还没有导入批次", "no import batches yet"),
    "zones_none": ("没有区域", "no zones"),
    "rules_none": ("没有规则", "no rules"),
    "no_classes": ("（不涉及设施，只按规则派遣）", "(no asset: rules only)"),
    # import statuses
    "st.committed": ("已提交", "committed"),
    "st.dry_run": ("试运行（未写入）", "dry run (nothing written)"),
    "st.refused": ("已拒绝（未写入）", "refused (nothing written)"),
    "st.running": ("进行中", "running"),
    "st.interrupted": ("已中断", "interrupted"),
    "st.failed": ("失败", "failed"),
    "st.rolled_back": ("已回滚", "rolled back"),
    "st.rejected": ("全部拒绝", "rejected"),
    "st.unchanged": ("无变化", "unchanged"),
    # the import report
    "rep.batch": ("（批次 {id}）", " (batch {id})"),
    "rep.counts": (
        "  读取 {read:,}  新建 {created:,}  更新 {updated:,}  未变 {unchanged:,}  拒绝 {rejected:,}",
        "  read {read:,}  created {created:,}  updated {updated:,}  unchanged {unchanged:,}  "
        "rejected {rejected:,}",
    ),
    "rep.crs": ("  坐标系：{used}（{origin}）", "  coordinates: {used} ({origin})"),
    "rep.units_would": (
        "  将新建的单位（未核实）：{names}",
        "  units that would be created (unverified): {names}",
    ),
    "rep.units": ("  新建的单位（未核实）：{names}", "  new unverified units: {names}"),
    "rep.codes_would": ("  将分配的智慧码：{codes}", "  codes to allocate: {codes}"),
    "rep.codes": ("  已分配的智慧码：{codes}", "  codes allocated: {codes}"),
    "rep.note": ("  说明：{note}", "  note: {note}"),
    "rep.problems": ("  问题（共 {total} 个，前 {shown} 个）：", "  problems ({total}, first {shown}):"),
    "rep.problem": ("    第 {row} 行{field}：{reason}{value}", "    row {row}{field}: {reason}{value}"),
    "rep.dry": ("（试运行，未写入）", " (dry run, nothing written)"),
    "zone_code": ("区域代码", "zone code"),
    "act.create": ("新建", "create"),
    "act.update": ("修改", "update"),
    "act.import": ("导入", "import"),
    "act.rollback": ("回滚", "rollback"),
    "act.decommission": ("注销", "decommission"),
    "act.change_units": ("变更责任单位", "change units"),
    "rep.warning": ("警告：{text}", "WARNING: {text}"),
    "rep.column": ("  列 {column} → {label}（{field}，{how}）", "  column {column} -> {field} ({how})"),
    "class_name": ("设施类型", "class"),
    "installed": ("安装日期", "installed"),
    "grid": ("网格编码", "grid"),
    "rep.coordinates": ("  列 {x}、{y} → 经度、纬度（x、y）", "  columns {x}, {y} -> x, y"),
    "rep.ignored": ("  仅作为其他属性保存的列：{names}", "  columns kept as attributes only: {names}"),
    "rep.held": (
        "  暂不新建的单位 {name}：与 {close} 相近",
        "  unit held (not created) {name}: close to {close}",
    ),
    "rep.strength": ("[{strength}]", "[{strength}]"),
    "str.given": ("指定", "given"),
    "str.declared": ("文件声明", "declared"),
    "str.strong": ("证据充分", "strong"),
    "str.assumed": ("推定（证据不足）", "assumed"),
    "origin.argument": ("--crs 指定", "argument"),
    "origin.profile": ("映射方案", "profile"),
    "origin.declared": ("文件声明", "declared"),
    "origin.detected": ("自动识别", "detected"),
    "origin.none": ("无", "none"),
    "how.known name": ("已知列名", "known name"),
    "how.profile": ("映射方案", "profile"),
    "how.words": ("列名用词", "words"),
    "how.values are class names": ("列值是设施类型名称", "values are class names"),
    "alias.added": ("{name}：别名 {aliases}", "{name}: aliases {aliases}"),
    "wrote": ("已写入 {path}", "wrote {path}"),
    "arg.lang": (
        "没有 {value!r} 这种界面语言：请用 zh（中文）或 en（英文）",
        "unknown language {value!r}: use zh or en",
    ),
    "arg.unexpected": ("多余的参数 {value}", "unexpected argument {value}"),
    "arg.profile_or_mapping": ("--profile 和 --mapping 只能给一个", "give --profile or --mapping, not both"),
    "arg.batch_number": (
        "`smartcode import {action}` 需要批次编号",
        "`smartcode import {action}` needs a batch number",
    ),
    "db.external": (
        "已设置 SMARTCODE_DATABASE_URL：不使用内置数据库集群。",
        "SMARTCODE_DATABASE_URL is set: the embedded cluster is not used.",
    ),
    "db.schema": ("数据库结构版本 {revision}", "schema at {revision}"),
    # disputes (异议台账)
    "disputes.none": ("没有符合条件的异议", "no disputes match"),
    "disputes.subject": ("异议对象", "subject"),
    "disputes.unit": ("提出单位", "objecting unit"),
    "disputes.due": ("办理期限", "due"),
    "disputes.overdue": ("逾期", "overdue"),
    "disputes.exported": ("已导出 {count} 条异议到 {path}", "exported {count} disputes to {path}"),
    "disputes.evidence_added": (
        "已为异议 {id} 补充 {count} 个证据文件（共 {total} 个，版本 {version}）",
        "added {count} evidence files to dispute {id} ({total} in all, now version {version})",
    ),
    "disputes.st.open": ("已提出", "open"),
    "disputes.st.under_review": ("审核中", "under review"),
    "disputes.st.upheld": ("异议成立", "upheld"),
    "disputes.st.rejected": ("驳回", "rejected"),
    "disputes.st.withdrawn": ("已撤回", "withdrawn"),
    "disputes.kind.asset": ("设施", "asset"),
    "disputes.kind.rule": ("职责规则", "rule"),
    "disputes.kind.complaint": ("诉求", "complaint"),
    # resolve
    "res.head": ("{status}（依据：{rule}；记录号 {id}）", "{status}  (decided by: {rule}; log id {id})"),
    "res.asset": ("设施", "asset"),
    "res.distance": ("，距离 {distance} 米", ", {distance} m away"),
    "res.candidates": ("候选：", "candidates:"),
    "res.candidate_m": ("{distance} 米", "{distance} m"),
    "res.why": ("依据：", "why:"),
    "res.asked": (
        "{at} 由 {actor} 经 {channel} 查询：{query}",
        "asked {at} by {actor} via {channel}: {query}",
    ),
    "cat.removed": ("案件类别 {name} 已停用", "category {name} deactivated"),
    "log.name": ("分区", "partition"),
    "log.from": ("起", "from"),
    "log.to": ("止", "to"),
    "log.rows": ("约行数", "rows (est.)"),
    "log.mib": ("MiB", "MiB"),
    "log.default": ("（未分月的行）", "(rows without a month)"),
    "log.start": ("最早", "the beginning"),
    "log.dropped": (
        "已删除过期分区 {name}（{rows:,} 行）",
        "dropped expired partition {name} ({rows:,} rows)",
    ),
    "log.keep": ("保留最近 {keep} 个月", "keeping the last {keep} months"),
    "log.keep_all": ("全部保留（SMARTCODE_RESOLVE_LOG_KEEP_MONTHS=0）", "keeping everything (KEEP_MONTHS=0)"),
    "log.hint": (
        "提示：加 --drop-expired 删除超过保留期的月份",
        "hint: --drop-expired drops the months past retention",
    ),
    "ev.pruned": (
        "已删除 {cutoff} 之前的事件 {events:,} 条、投递记录 {deliveries:,} 条、投递尝试 {attempts:,} 条",
        "pruned {events:,} events, {deliveries:,} deliveries and {attempts:,} attempts from before {cutoff}",
    ),
    "ev.kept": (
        "{kept:,} 条事件已过保留期但仍保留（尚有待投递，或投递记录在保留期内）",
        "{kept:,} events past retention kept (a delivery still waits, or its log is recent)",
    ),
    "ev.table": ("表", "table"),
    "ev.waiting": (
        "待投递 {pending:,} 条，未分发事件 {unfanned:,} 条，最早事件 {oldest}",
        "{pending:,} deliveries pending, {unfanned:,} events not fanned out, oldest event {oldest}",
    ),
    "ev.keep": ("事件与投递记录保留最近 {keep} 天", "keeping events and their log for {keep} days"),
    "ev.keep_all": (
        "全部保留（SMARTCODE_WEBHOOKS_KEEP_DAYS=0）",
        "keeping everything (SMARTCODE_WEBHOOKS_KEEP_DAYS=0)",
    ),
    "ev.hint": (
        "提示：加 --prune 删除超过保留期且已投递完的事件及其投递记录（投递 worker 每小时也会执行）",
        "hint: --prune deletes delivered events past retention and their log (the worker does so hourly)",
    ),
    "bk.done": (
        "已完成基础备份 {id}（{mib:.1f} MiB，{at}）",
        "base backup {id} taken ({mib:.1f} MiB, {at})",
    ),
    "bk.id": ("备份", "backup"),
    "bk.started": ("开始", "started"),
    "bk.finished": ("完成", "finished"),
    "bk.where": ("备份与 WAL 归档目录：{path}", "backups and WAL archive: {path}"),
    "bk.latest": ("归档中的最新时刻", "the latest moment in the archive"),
    "bk.confirm": (
        "将停止数据库，把数据还原到 {to}（当前数据目录会保留在旁边）。继续？",
        "The database will stop and be restored to {to} (the current data directory is kept aside). Go on?",
    ),
    "bk.restored": (
        "已从备份 {id} 还原到 {to}；原数据目录保留在 {previous}",
        "restored from backup {id} to {to}; the previous data directory is kept at {previous}",
    ),
    "export.done": ("已导出 {count:,} 个设施到 {path}", "exported {count:,} assets to {path}"),
    # smartcode demo
    "demo.already": (
        "演示数据（种子 {seed}）已于 {since} 载入：本次未载入新数据",
        "The demo (seed {seed}) is already loaded (since {since}): nothing new loaded.",
    ),
    "demo.loaded": (
        "已通过导入程序载入演示数据（种子 {seed}）",
        "Loaded the demo (seed {seed}) through the importers.",
    ),
    "demo.note": ("说明：{note}", "note: {note}"),
    "demo.files": (
        "文件：{folder}（manifest.json 列出每个文件和导入步骤）",
        "files: {folder} (manifest.json lists every file and import step)",
    ),
    "demo.counts": (
        "设施：{assets}   区域：{zones}   规则：{rules}",
        "assets: {assets}   zones: {zones}   rules: {rules}",
    ),
    "demo.units": ("   登记单位：{count}", "   units registered: {count}"),
    "demo.per_class": ("各类设施数量：", "assets per class:"),
    "demo.imports": ("导入：", "imports:"),
    "demo.examples": ("示例：", "examples:"),
    "demo.example": (
        "  {code}  {cls}  权属单位 {owner}  位置 {lon},{lat}（{why}）",
        "  {code}  {cls}  owner {owner}  at {lon},{lat}  ({why})",
    ),
    "demo.try": ("试试：", "try:"),
    "demo.kind.zones": ("区域", "zones"),
    "demo.kind.rules": ("职责规则", "rules"),
    "demo.batch_other": (
        "{kind}：新建 {created}，替换 {replaced}，未变 {unchanged}",
        "{kind}: {created} created, {replaced} replaced, {unchanged} unchanged",
    ),
    "demo.batch": (
        "批次 {id} {status}：读取 {read}，新建 {created}，更新 {updated}，未变 {unchanged}，拒绝 {rejected}；"
        "分配智慧码 {codes} 个；{encoding}，{crs}（{origin}）",
        "batch {id} {status}: {read} read, {created} created, {updated} updated, {unchanged} unchanged, "
        "{rejected} rejected; {codes} codes allocated; {encoding}, {crs} ({origin})",
    ),
    "labels.key_old": (
        "SMARTCODE_LABELS_CURRENT_KEY_ID={id} 仍选用旧密钥：请取消或修改该设置",
        "SMARTCODE_LABELS_CURRENT_KEY_ID={id} still selects the old key: unset or change it",
    ),
    "labels.key_new": ("新标签将用它签名", "new labels are signed with it"),
    # argument and file errors of the commands
    "file.no_folder": (
        "无法写入 {path}：目录 {folder} 不存在",
        "cannot write {path}: folder {folder} does not exist",
    ),
    "export.xlsx_file": (
        "XLSX 必须写入文件：请给出 --output FILE.xlsx",
        "XLSX needs a file: give --output FILE.xlsx",
    ),
    "arg.bbox_numbers": ("--bbox {text!r} 不是四个数字", "--bbox {text!r} is not four numbers"),
    "arg.bbox_form": (
        "--bbox {text!r}：应写为 最小经度,最小纬度,最大经度,最大纬度",
        "--bbox {text!r}: write min_lon,min_lat,max_lon,max_lat",
    ),
    "export.no_unit": (
        "没有名为 {name!r} 的单位：请给出全称或编号",
        "no unit named {name!r}: give its exact name or its id",
    ),
    "arg.code_or_at": (
        "请给出 --code 智慧码 或 --at 经度,纬度 之一",
        "give either --code CODE or --at LON,LAT",
    ),
    "arg.at_form": (
        "--at {at!r}：位置应写为 经度,纬度，例如 --at 114.3466,22.6953",
        "--at {at!r}: write the location as LON,LAT, e.g. --at 114.3466,22.6953",
    ),
    "arg.at_numbers": ("--at {at!r}：经度和纬度必须是数字", "--at {at!r}: LON and LAT must be numbers"),
    "rules.csv_unreadable": (
        "{file}：无法按 UTF-8 CSV 读取：{why}",
        "{file}: cannot read as UTF-8 CSV: {why}",
    ),
    "labels.size": (
        "标签尺寸应为 宽x高（毫米），例如 50x30，实为 {text!r}",
        "label size must be WIDTHxHEIGHT in mm, e.g. 50x30, got {text!r}",
    ),
    "labels.format": (
        "格式应为 {formats} 之一（或 -o 文件以其结尾），实为 {kind!r}",
        "format must be one of {formats} (or -o ending so), got {kind!r}",
    ),
    "labels.codes_file": ("无法读取智慧码文件 {name}：{why}", "cannot read the codes file {name}: {why}"),
    "labels.qr_version": (
        "警告：这些标签需要 QR 版本 {version}（超过 {most}）：请把 SMARTCODE_LABELS_PUBLIC_BASE_URL "
        "缩短到 30 个字符以内，小标签才容易扫",
        "warning: the labels need QR version {version} (more than {most}): shorten "
        "SMARTCODE_LABELS_PUBLIC_BASE_URL to 30 characters or fewer so small labels scan well",
    ),
}


def set_lang(value: str) -> str:
    """Choose the language for this process (``--lang``); ``ValueError`` for an unknown one."""
    _state["lang"] = check_lang(value)
    return _state["lang"]


def lang() -> str:
    """The language of this command's output."""
    if "lang" not in _state:
        try:
            _state["lang"] = get_settings().area.lang
        except ConfigurationError:
            _state["lang"] = "zh"  # the bad setting is reported by the command that needs it
    return _state["lang"]


def t(key: str, **params: Any) -> str:
    """The label ``key`` in the current language, ``params`` filled in; an unknown key as itself."""
    pair = _LABELS.get(key)
    if pair is None:
        return key
    return (pair[1] if lang() == "en" else pair[0]).format(**params)


def both_halves(key: str, **params: Any) -> Bilingual:
    """The label ``key`` in both languages (for ``--json``, which is not localised), ``params`` filled in."""
    zh, en = _LABELS[key]
    return Bilingual(zh.format(**params), en.format(**params))


def pick(message: Any) -> str:
    """A domain message in the current language (a bilingual one gives its half; other text as is).

    A report read back from the database has lost the halves: its "中文 / English" texts are cut
    at the first " / " after Chinese (the Chinese halves of the catalogue never hold one).
    """
    if not isinstance(message, str):
        return str(message)
    if isinstance(message, Bilingual):
        return in_lang(message, lang())
    zh, sep, en = message.partition(" / ")
    if sep and any("\u4e00" <= ch <= "\u9fff" for ch in zh):
        return en if lang() == "en" else zh
    return message


def has(key: str) -> bool:
    """Whether ``key`` has a label."""
    return key in _LABELS


def status(value: str | None) -> str:
    """An import batch's status as people read it."""
    return t(f"st.{value}") if value and has(f"st.{value}") else str(value)


# --- help texts ---------------------------------------------------------------------------------------

# The help option click adds to every command says this instead of its English-only default.
HELP_OPTION = "显示本帮助并退出 / show this message and exit."

# Each command's and option's help as written in the source (``中文 / English``), so that a second
# localisation (``--lang`` after the settings' language) starts from both halves again.
_WRITTEN: weakref.WeakKeyDictionary[Any, str | None] = weakref.WeakKeyDictionary()


def help_text(text: str | None, language: str) -> str | None:
    """A ``中文 / English`` help text for ``language``: whole (Chinese first) unless English is chosen.

    Each paragraph is a pair of its own, so a longer description comes out in one language too. A
    docstring's line breaks are the source's, not the reader's: the terminal wraps the paragraph.
    """
    if text is None:
        return None
    paragraphs = [_unwrap(paragraph) for paragraph in text.split("\n\n")]
    if language == "en":
        paragraphs = [_english_half(paragraph) for paragraph in paragraphs]
    return "\n\n".join(paragraphs)


def _wide(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in ("W", "F")


def _unwrap(paragraph: str) -> str:
    lines = [line.strip() for line in paragraph.strip().split("\n")]
    out = lines[0]
    for line in lines[1:]:
        # Chinese runs on without a space where the source broke the line.
        out += line if out and line and _wide(out[-1]) and _wide(line[0]) else " " + line
    return out


def _english_half(paragraph: str) -> str:
    zh, sep, en = paragraph.partition(" / ")
    return en if sep and any("\u4e00" <= ch <= "\u9fff" for ch in zh) else paragraph


def _localise(item: Any, language: str) -> None:
    if item not in _WRITTEN:
        _WRITTEN[item] = item.help
    item.help = help_text(_WRITTEN[item], language)


def localise_help(command: Any, language: str | None = None) -> None:
    """Set the help of ``command``, its options and subcommands for ``language`` (default :func:`lang`).

    Their usage lines, headings and usage errors (Typer's and Click's own words) follow it too.
    """
    language = language or lang()
    click_words.use(language)
    command.context_class = click_words.LocalisedContext
    ctx = typer.Context(command)
    help_option = command.get_help_option(ctx)
    if help_option is not None:
        if help_option not in _WRITTEN:
            _WRITTEN[help_option] = HELP_OPTION
        _localise(help_option, language)
    _localise(command, language)
    for param in command.params:
        if hasattr(param, "help"):
            _localise(param, language)
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            localise_help(sub, language)


class LocalisedGroup(TyperGroup):
    """The root command: its own ``--help`` (read before ``--lang`` is) shows help in the chosen language,
    and every usage error under it (a mistyped option, a missing argument, a bad value) is worded so too.
    """

    context_class = click_words.LocalisedContext

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        """Localise the tree for the settings' language, then parse the root's options (``--lang`` may
        change the language; an error before it is read speaks the settings' language)."""
        localise_help(self)
        with click_words.localised_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        """Run the subcommand; its usage errors are reworded in the chosen language."""
        with click_words.localised_errors():
            return super().invoke(ctx)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        """Localise the help texts, then format as Typer does."""
        localise_help(self)
        super().format_help(ctx, formatter)


# --- times --------------------------------------------------------------------------------------------


def zone() -> zoneinfo.ZoneInfo:
    """The deployment's time zone."""
    try:
        name = get_settings().area.timezone
    except ConfigurationError:
        name = "Asia/Shanghai"
    return zoneinfo.ZoneInfo(name)


def local(value: str | dt.datetime | None) -> str:
    """A time as local wall-clock minutes (``2026-12-06 09:00``); a date or other text unchanged."""
    if value is None or value == "":
        return "-"
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
        if len(value) <= 10:  # a date is a day, not an instant
            return value
        value = parsed
    if value.tzinfo is None:
        return value.strftime("%Y-%m-%d %H:%M")
    return value.astimezone(zone()).strftime("%Y-%m-%d %H:%M")


def times_note() -> str:
    """The once-per-output line naming the zone and its offset."""
    z = zone()
    offset = dt.datetime.now(z).isoformat()[-6:]
    return t("times_note", zone=z.key, offset=offset)


# --- tables -------------------------------------------------------------------------------------------


def width(text: str) -> int:
    """Columns ``text`` takes in a terminal: CJK (wide and full-width) characters take two."""
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
        for ch in text
    )


def _pad(text: str, columns: int, right: bool) -> str:
    gap = " " * max(0, columns - width(text))
    return gap + text if right else text + gap


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, right: Sequence[int] = ()) -> str:
    """Rows under headers in aligned columns (numbers right-aligned for the indexes in ``right``)."""
    cells = [[("-" if v is None else str(v)).replace("\n", " ") for v in row] for row in rows]
    widths = [width(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], width(cell))
    lines = ["  ".join(_pad(h, widths[i], i in right) for i, h in enumerate(headers)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(
        "  ".join(_pad(cell, widths[i], i in right) for i, cell in enumerate(row)).rstrip() for row in cells
    )
    return "\n".join(lines)


def key_values(pairs: Sequence[tuple[str, Any]]) -> str:
    """``label  value`` lines with the labels padded to one width."""
    labels = [t(key) for key, _ in pairs]
    columns = max((width(label) for label in labels), default=0)
    return "\n".join(
        f"{_pad(label, columns, False)}  {'-' if value is None else value}"
        for label, (_, value) in zip(labels, pairs, strict=True)
    )
