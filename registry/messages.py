"""The words of the domain that people read, in Chinese (the default) and English.

The resolver's explanation lines are data: the API returns them and the CLI prints them, so their
catalogue lives here, below both. Machine fields (``status``, ``rule``, class and state codes) never
go through it; only the sentences around them do. The CLI's own labels live in :mod:`cli.i18n`.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any, Literal

from common.bilingual import Bilingual as Bilingual  # re-exported: the catalogue makes them

Lang = Literal["zh", "en"]
LANGS: tuple[Lang, ...] = ("zh", "en")
DEFAULT_LANG: Lang = "zh"

# key -> (Chinese, English); str.format templates.
_CATALOGUE: dict[str, tuple[str, str]] = {
    # statuses and deciding rules (the machine values are the keys' suffixes)
    "status.resolved": ("已确定", "RESOLVED"),
    "status.ambiguous": ("有歧义", "AMBIGUOUS"),
    "status.fallback": ("属地兜底", "FALLBACK"),
    "status.unresolved": ("无法确定", "UNRESOLVED"),
    "rule.code": ("按智慧码", "code"),
    "rule.nearest_asset": ("最近设施", "nearest_asset"),
    "rule.ambiguity": ("歧义", "ambiguity"),
    "rule.responsibility_rule": ("职责清单规则", "responsibility_rule"),
    "rule.jurisdiction": ("街道属地", "jurisdiction"),
    "rule.none": ("无", "none"),
    "level.pilot": ("试点区", "pilot zone"),
    "level.contract": ("合同片区", "contract area"),
    "level.grid": ("网格", "grid"),
    "level.community": ("社区", "community"),
    "level.street": ("街道", "street"),
    "level.none": ("全区", "whole district"),
    "geometry.point": ("点状", "point"),
    "geometry.line": ("线状", "line"),
    "geometry.polygon": ("面状", "polygon"),
    # parties
    "who.none": ("未登记", "none recorded"),
    "who.unverified": ("（未核实）", " (unverified)"),
    "who.phone": ("，电话 {phone}", ", tel {phone}"),
    "metres": ("{value:.1f} 米", "{value:.1f} m"),
    "any_class": ("任意类别", "any class"),
    "class_with_code": ("{name}（{code}）", "{name} ({code})"),
    "list_sep": ("、", ", "),
    "no_zone": ("不在任何区域", "no zone"),
    "zone": ("{level} {name}", "{level} {name}"),
    # the location line (registry.resolution)
    "location": ("位置（经度 {lon:.6f}，纬度 {lat:.6f}）", "location (lon {lon:.6f}, lat {lat:.6f})"),
    "location.from": ("，由 {crs} 坐标 ({x:g}, {y:g}) 换算", ", from {crs} ({x:g}, {y:g})"),
    "location.when": ("，时间 {when}", ", as of {when}"),
    "location.now": ("当前", "now"),
    "location.category": ("；案件类别 {category}", "; category {category}"),
    # step 1
    "step1.found": (
        "第1步 最近设施：{cls} {code}，距离 {distance}（{geometry}设施容差 {tolerance:g} 米；"
        "{what}共 {count} 个候选）；权属单位 {owner}",
        "step 1 nearest asset: {cls} {code} at {distance} (within {tolerance:g} m for {geometry} assets; "
        "{count} candidate(s) of {what}); owner {owner}",
    ),
    "step1.skipped": (
        "第1步 最近设施：跳过：案件类别 {category} 不涉及部件类别（按职责清单或属地派遣，而非附近设施）",
        "step 1 nearest asset: skipped: category {category} concerns no component class "
        "(it is routed by responsibility rules or jurisdiction, not by a nearby asset)",
    ),
    "step1.none": (
        "第1步 最近设施：{tolerances} 米内没有{in_use}{what}设施",
        "step 1 nearest asset: no {in_use}asset of {what} within {tolerances} m",
    ),
    "step1.in_use": ("在用的", "in-use "),
    # step 2
    "step2.rival": ("{code}（距离 {distance}，权属单位 {owner}）", "{code} at {distance} owned by {owner}"),
    "step2.ambiguous": (
        "第2步 歧义：距最近设施 {margin:.1f} 米内有其他权属单位的设施：{names}；"
        "不作选择：请现场核实投诉针对哪一设施",
        "step 2 ambiguity: assets of other owners lie within {margin:.1f} m of the nearest: {names}; "
        "not choosing one: check on site which asset the complaint is about",
    ),
    "step2.clear": (
        "第2步 歧义：无（距最近设施 {margin:.1f} 米内没有其他权属单位的设施）",
        "step 2 ambiguity: none (no asset of another owner within {margin:.1f} m of the nearest)",
    ),
    "step2.no_owner": (
        "第2步 最近设施没有登记权属单位（无主）：查找{cls}的职责清单规则",
        "step 2 the nearest asset has no registered owner (无主): "
        "looking for a responsibility rule for {cls}",
    ),
    # step 3
    "step3.tied_rule": ("规则 #{id} → {unit}", "rule #{id} -> {unit}"),
    "step3.tied": (
        "第3步 职责清单：{count} 条优先级和具体程度相同的规则指向不同单位（{names}）：请修正规则；不作选择",
        "step 3 responsibility rules: {count} rules of equal priority and specificity name different "
        "units ({names}): fix the rules; not choosing one",
    ),
    "step3.matched": (
        "第3步 职责清单规则 #{id}：{scope} → {unit}"
        "（优先级 {priority}；此处适用 {count} 条规则，位于 {zones}）",
        "step 3 responsibility rule #{id}: {scope} -> {unit} "
        "(priority {priority}; {count} rule(s) apply here, in {zones})",
    ),
    "step3.none": (
        "第3步 职责清单：{zones} 内没有适用于 {scope}{category} 的规则",
        "step 3 responsibility rules: none for {scope}{category} in {zones}",
    ),
    "step3.none_category": (" / 案件类别 {category}", " / category {category}"),
    "rule_scope": ("{zone}，{what}", "{zone}, {what}"),
    "rule_scope.class": ("类别 {name}（{code}）", "class {name} ({code})"),
    "rule_scope.category": ("，案件类别 {category}", ", category {category}"),
    # step 4 and 5
    "step4.street_unit": ("{name} → {unit}", "{name} -> {unit}"),
    "step4.boundary": (
        "第4步 属地：该点位于多个街道的交界处（{names}）",
        "step 4 jurisdiction: the point lies on the boundary of several streets ({names})",
    ),
    "step4.fallback": (
        "第4步 属地兜底：街道 {name} → {unit}",
        "step 4 jurisdiction (属地兜底): street {name} -> {unit}",
    ),
    "step4.no_office": (
        "第4步 属地：街道 {name} 未登记负责的街道办事处",
        "step 4 jurisdiction: street {name} has no responsible street office recorded",
    ),
    "reason.no_office": ("街道区域 {name} 没有负责单位", "street zone {name} has no responsible unit"),
    "step4.no_street": (
        "第4步 属地：该点不在任何街道区域内",
        "step 4 jurisdiction: the point lies in no street zone",
    ),
    "reason.no_street": ("该点不在任何街道区域内", "the point lies in no street zone"),
    "step4.outside": (
        "第4步 属地：该点在所有区域之外",
        "step 4 jurisdiction: the point lies outside every zone",
    ),
    "reason.outside": ("该点在所有区域之外", "the point lies outside every zone"),
    "unresolved": (
        "无法确定：{reason}；没有设施或规则能确定{scope}的责任单位",
        "unresolved: {reason}; no asset and no rule for {scope} decide it",
    ),
    # a scanned code
    "code.line": (
        "智慧码 {code}：{cls}（{class_code}），已登记，状态 {state}{out_of_use}",
        "code {code}: {cls} ({class_code}), registered, state {state}{out_of_use}",
    ),
    "public.code": ("智慧码 {code}：{cls}（{class_code}）", "code {code}: {cls} ({class_code})"),
    "public.state": ("，状态 {state}", ", state {state}"),
    "public.out_of_use": ("，{when} 起停用", ", out of use since {when}"),
    "code.out_of_use": ("，{when} 注销：{reason}", ", decommissioned {when}: {reason}"),
    "code.no_reason": ("未说明原因", "no reason given"),
    "code.not_installed": (
        "{when} 时该设施尚未安装（安装日期 {installed}）",
        "at {when} the asset was not yet installed (installed {installed})",
    ),
    "code.decommissioned_then": ("{when} 时该设施已注销", "at {when} the asset was already decommissioned"),
    "code.not_covered": (
        "该设施没有覆盖 {when} 的责任期",
        "no responsibility period of this asset covers {when}",
    ),
    "code.parties_then": (
        "以下为 {when} 时的责任单位（当时的责任期）",
        "parties as of {when} (responsibility period then)",
    ),
    "code.out_of_use_parties": (
        "该设施已停用；显示其最后的责任单位",
        "the asset is out of use; its last responsible parties are shown",
    ),
    "code.parties": (
        "权属单位：{owner}；养护单位：{maintainer}；主管部门：{supervisor}",
        "owner: {owner}; maintainer: {maintainer}; supervisor: {supervisor}",
    ),
    "code.no_owner": (
        "该设施未登记权属单位：请联系养护单位或主管部门，或上报此情况",
        "no owner is recorded for this asset: use the maintainer or supervisor, or report it",
    ),
    # --- import: the problems of a row (importers), as the report and the CLI show them ---------------
    "field.owner": ("权属单位", "owner"),
    "field.maintainer": ("养护单位", "maintainer"),
    "field.supervisor": ("主管部门", "supervisor"),
    "imp.class.unknown": (
        "未知的设施类型 {name!r}：不是类别名称、别名，也不是映射方案中的本地名称",
        "unknown class {name!r}: not a class name, alias or local variant in the profile",
    ),
    "imp.class.unknown_code": ("未知的设施类型代码 {code!r}", "unknown class code {code!r}"),
    "imp.class.none": (
        "没有设施类型：请给出类别名称（或代码），或含类别的智慧码",
        "no class: give the class name (or code), or a smart code that contains it",
    ),
    "imp.class.retired": ("设施类型 {code} {name} 已停用", "class {code} {name} is retired"),
    "imp.unit.held": (
        "{target} {name!r} 未登记，但与已登记的 {close} 相近（单位名称相近，未新建）："
        "请添加别名（smartcode units alias add {first!r} {name!r}），"
        "如确为另一单位，请用 --create-units 导入",
        "{target} {name!r} is not a registered unit but close to {close}: add it as an alias "
        "(smartcode units alias add {first!r} {name!r}) or, if it really is another unit, import with "
        "--create-units",
    ),
    "imp.unit.unknown": (
        "{target} {name!r} 未登记：只有管理员可以登记单位{hint}",
        "{target} {name!r} is not a registered unit: only administrators register units{hint}",
    ),
    "imp.unit.hint": ("；是否指 {close}？", "; did you mean {close}?"),
    "imp.code.check": (
        "智慧码 {code} 的校验位错误（应为 {expected}，实为 {got}）：编码可能输错了",
        "check digit of {code} is wrong (expected {expected}, got {got}): the code was probably mistyped",
    ),
    "imp.code.county": (
        "智慧码 {code} 属于区县 {county}，本登记库是 {here}",
        "code {code} belongs to county {county}, this registry is {here}",
    ),
    "imp.code.class": (
        "智慧码 {code} 的类别是 {named}，但本行的设施类型是 {cls}",
        "code {code} names class {named}, but the row's class is {cls}",
    ),
    "imp.code.unregistered": (
        "智慧码 {code} 未登记：只有管理员可以用已有编码登记设施；编码留空则自动分配",
        "code {code} is not registered: only administrators register assets under an existing code; "
        "leave the code empty and one is allocated",
    ),
    "imp.geom.none": ("没有几何（坐标）", "no geometry"),
    "imp.geom.no_numbers": (
        "没有几何（坐标缺失或不是数字）",
        "no geometry (coordinates missing or not numbers)",
    ),
    "imp.geom.invalid": ("几何无效：{why}", "invalid geometry: {why}"),
    "imp.geom.vertices": (
        "几何有 {count:,} 个顶点，最多 {most:,} 个（几何顶点过多）",
        "geometry has {count:,} vertices; at most {most:,}",
    ),
    "imp.attributes.size": (
        "本行的属性按 JSON 计 {size:,} 字节，最多 {most} KiB（属性过大）："
        "请少保留一些字段（attributes.keep）",
        "the row's attributes are {size:,} bytes as JSON; at most {most} KiB: keep fewer fields "
        "(attributes.keep)",
    ),
    "imp.geom.swapped_point": (
        "经纬度疑似颠倒：（经度 {lon:.6f}，纬度 {lat:.6f}）在服务区外，交换 x 和 y 后则在区内",
        "latitude and longitude look swapped: (lon {lon:.6f}, lat {lat:.6f}) is outside the service "
        "area but would be inside with x and y exchanged",
    ),
    "imp.geom.swapped_shape": (
        "经纬度疑似颠倒：这个 {kind} 在服务区外，交换 x 和 y 后则在区内",
        "latitude and longitude look swapped: this {kind} is outside the service area but would be "
        "inside with x and y exchanged",
    ),
    "imp.geom.not_degrees": (
        "坐标 ({lon:g}, {lat:g}) 不是经纬度：文件按 {crs} 读取；请声明正确的坐标系（--crs）",
        "coordinate ({lon:g}, {lat:g}) is not a longitude/latitude: the file is read as {crs}; "
        "declare the right coordinate system (--crs)",
    ),
    "imp.geom.outside": (
        "（经度 {lon:.6f}，纬度 {lat:.6f}）在服务区外 {km:.2f} 公里（允许的边距 {margin:g} 公里）",
        "(lon {lon:.6f}, lat {lat:.6f}) is {km:.2f} km outside the service area "
        "(allowed margin {margin:g} km)",
    ),
    "imp.geom.leaves": (
        "几何超出服务区（第一个顶点：{first}）",
        "geometry leaves the service area (first vertex: {first})",
    ),
    "imp.geom.zone": (
        "不在本次导入限定的区域 {zone}（{level}）内",
        "outside the zone {zone} ({level}) this import is restricted to",
    ),
    "imp.geom.kind": (
        "该设施类型要求{kind}几何（{allowed}），实为 {got}",
        "class expects a {kind} geometry ({allowed}), got {got}",
    ),
    "imp.owner.foreign": (
        "权属单位为 {owner}：单位令牌只能导入本单位（{unit}）的设施",
        "owned by {owner}: a unit token may only import assets of its own unit ({unit})",
    ),
    "imp.maintainer.foreign": (
        "养护单位 {unit} 是其他单位：单位令牌不能未经对方同意让其他单位负责；"
        "请不带该单位导入本行，再通过 API 提议养护单位（POST /assets/{{code}}/units），或请管理员处理",
        "maintainer {unit} is another unit: a unit token may not make another unit responsible without "
        "its consent; import the row without it and propose the maintainer through the API "
        "(POST /assets/{{code}}/units), or ask an administrator",
    ),
    # reading a file (importers.tabular, geojson_stream, vector)
    "imp.coord.empty": ("坐标为空", "empty coordinate"),
    "imp.coord.not_finite": ("不是有限的数字", "not a finite number"),
    "imp.coord.type": ("不是坐标（{type}）", "not a coordinate ({type})"),
    "imp.row.short": (
        "行不完整：{cells} 个单元格，表头有 {width} 列",
        "short row: {cells} cells for {width} columns",
    ),
    "imp.row.long": (
        "{cells} 个单元格，但表头只有 {width} 列",
        "{cells} cells but only {width} header columns",
    ),
    "imp.row.quote": (
        '本行引号（"）不成对：已按无引号读取，请检查本行',
        'unbalanced quote (") in this row: read without quotes, check the row',
    ),
    "imp.row.bytes": (
        "有不符合文件编码的字节（编码错误），显示为 �",
        "bytes not valid in the file's encoding, shown as �",
    ),
    "imp.row.malformed": ("CSV 行格式错误（{why}）", "malformed CSV row ({why})"),
    "imp.number.long": (
        "16 位以上的数字：Excel 只保留 15 位有效数字，末几位可能已丢失；请把该列设为文本格式",
        "number of 16 or more digits: Excel keeps only 15, so the last digits may be lost; "
        "format the column as text",
    ),
    "imp.wkt.bad": ("不是有效的 WKT", "not valid WKT"),
    "imp.geojson.not_feature": ("不是 GeoJSON 要素", "not a GeoJSON feature"),
    "imp.geojson.bad_geometry": ("GeoJSON 几何无效或为空", "invalid or empty GeoJSON geometry"),
    "imp.geojson.bad_point": ("点坐标无效", "invalid point coordinates"),
    "imp.json.bad": ("不是有效的 JSON：{why}", "invalid JSON: {why}"),
    "imp.cell": ("{column}：{reason}", "{column}: {reason}"),
    # values (importers.mapping)
    "imp.date.not": ("不是日期", "not a date"),
    "imp.date.year": (
        "{year} 只是年份，不是日期（请给出具体日期，例如 {year}-01-01）",
        "{year} is a year: a year alone is not a date (give the day, e.g. {year}-01-01)",
    ),
    "imp.date.format": (
        "不是日期（应如 2019-03-02、2019/3/2、20190302 或 2019年3月2日）",
        "not a date (expected e.g. 2019-03-02, 2019/3/2, 20190302 or 2019年3月2日)",
    ),
    "imp.date.number": (
        "该数字既不是 yyyymmdd 日期，也不是 Excel 日期序号",
        "number is neither a yyyymmdd date nor an Excel date serial",
    ),
    "imp.date.no_such": ("没有这一天（{why}）", "no such date ({why})"),
    "imp.date.future": (
        "安装日期 {day} 在未来（今天是 {today}）",
        "installation date {day} is in the future (today is {today})",
    ),
    "imp.state.unknown": (
        "未知的状态 {value!r}（应为 完好/破损/丢失/占用，或在映射方案中给出取值对照）",
        "unknown state {value!r} (expected 完好/破损/丢失/占用 or a profile value map)",
    ),
    "imp.in_use.unknown": (
        "未知的在用标志 {value!r}（应为 在用/作废，或在映射方案中给出取值对照）",
        "unknown in-use value {value!r} (expected 在用/作废 or a profile value map)",
    ),
    "imp.code.float": (
        "编码以数字存储，位数太多无法保持精确：请把编码存为文本",
        "code stored as a number too long to be exact: store codes as text",
    ),
    # repeated and conflicting rows (importers.merge, direct_load)
    "imp.repeat.code": (
        "智慧码 {code} 重复出现：首次在第 {first} 行",
        "code {code} appears again: first at row {first}",
    ),
    "imp.repeat.position": (
        "与第 {first} 行是同一设施类型、同一位置，且两行都没有编号",
        "the same class at the same position as row {first}, and neither has an identifier",
    ),
    "imp.repeat.source": (
        "原编号 {source} 重复出现：首次在第 {first} 行",
        "source id {source} appears again: first at row {first}",
    ),
    # the whole batch (importers.pipeline)
    "imp.rejected": (
        "{file}：全部 {read} 行都被拒绝，未写入任何数据",
        "{file}: all {read} rows were rejected, nothing was written",
    ),
    "imp.refused": (
        "{file}：{read} 行中有 {rejected} 行被拒绝，--strict 拒绝整个批次：未写入任何数据",
        "{file}: {rejected} of {read} rows were rejected and --strict refuses the whole batch: "
        "nothing was written",
    ),
    "imp.refused_warnings": (
        "{file}：导入有警告（{first}），--strict 拒绝整个批次：未写入任何数据",
        "{file}: the import has warnings ({first}) and --strict refuses the whole batch: nothing was written",
    ),
    "imp.unchanged": (
        "无变化：每一行都与登记库一致，未记录批次",
        "nothing changed: every row matches the registry, no batch was recorded",
    ),
    "imp.no_owner_column": (
        "没有权属单位：没有映射到权属单位的列，{rows} 行将没有权属单位"
        "（请映射权属单位列，或在 [defaults] owner 中给出）",
        "no column gives the owner: {rows} rows arrive without one (map the owner column, or give one "
        "with [defaults] owner)",
    ),
    "imp.no_owner_rows": (
        "{rows} 行的权属单位为空，尽管文件有该列",
        "{rows} rows have an empty owner although the file has the column",
    ),
    "imp.unit_column": (
        "列 {column!r} 像是单位名称，但未映射到任何字段：其中的单位不会记入登记"
        "（请映射为 owner、maintainer 或 supervisor）",
        "column {column!r} looks like a unit but feeds no field: map it (owner / maintainer / "
        "supervisor) or its units are not recorded",
    ),
    "imp.crs.detected": (
        "文件未声明坐标系；{reason}",
        "the file declares no coordinate system; {reason}",
    ),
    "imp.crs.assumed": (
        "坐标系是推定的 {crs}（经纬度），证据不足；如文件来自高德/腾讯或百度，"
        "请用 --crs gcj02 或 bd09 重新导入",
        "the coordinate system is an assumed {crs}, without enough evidence; if the file comes from "
        "AMap/Tencent or Baidu, import it again with --crs gcj02 or bd09",
    ),
    "imp.crs.declared": ("由文件声明", "declared by the file"),
    "imp.crs.profile": ("来自映射方案 {name}", "from profile {name}"),
    "imp.crs.unknown": (
        "{file}：其坐标系无法识别（{declared}）：请用 --crs 指定",
        "{file}: its coordinate system is not one PROJ identifies ({declared}): pass --crs",
    ),
    "imp.no_rows": ("文件没有数据行", "the file has no rows"),
    "imp.unit_created": ("台账中出现的未登记单位", "unknown unit named in an inventory"),
    "imp.reason": ("导入 {file}", "import of {file}"),
    "imp.reason_batch": ("导入 {file}（批次 {batch}）", "import of {file} (batch {batch})"),
    # notes on how a file was read
    "note.encoding": ("编码 {encoding}：{detail}", "encoding {encoding}: {detail}"),
    "note.delimiter": ("分隔符：{delimiter}", "delimiter: {delimiter}"),
    "note.no_prj": ("没有 .prj 文件：未声明坐标系", "no .prj file: the coordinate system is not declared"),
    "delim.tab": ("制表符", "tab"),
    "delim.comma": ("逗号", "comma"),
    "delim.semicolon": ("分号", "semicolon"),
    "delim.pipe": ("竖线", "pipe"),
    "enc.ascii": ("全部是 ASCII 字符，任何编码都能读", "all text is ASCII, any encoding reads it"),
    "enc.utf8": ("文本可按 UTF-8 解码", "text decodes as UTF-8"),
    "enc.utf8_truncated": (
        "文本可按 UTF-8 解码，只有 {bad} 个字符被截断",
        "text decodes as UTF-8 except {bad} truncated character(s)",
    ),
    "enc.gbk": ("文本不是 UTF-8，但可按 {encoding} 解码", "text is not UTF-8 but decodes as {encoding}"),
    "enc.guess": ("字符集检测认为是 {encoding}", "charset detection suggests {encoding}"),
    "enc.fallback": (
        "文本既不是 UTF-8 也不是 GBK；按 GB18030 读取，无法解码的字符用替换符显示",
        "text is neither UTF-8 nor GBK; read as GB18030 with replacement characters",
    ),
    "enc.given": ("编码 {encoding!r} 由调用者指定", "encoding {encoding!r} given by the caller"),
    "enc.bom": ("字节顺序标记（BOM）", "byte-order mark"),
    "enc.no_cpg": ("没有 .cpg 文件；{why}", "no .cpg file; {why}"),
    "enc.cpg": (".cpg 文件声明为 {value!r}", ".cpg file says {value!r}"),
    "enc.cpg_unknown": (
        ".cpg 文件中的编码 {value!r} 无法识别；{why}",
        ".cpg value {value!r} is unknown; {why}",
    ),
    "enc.ldid": ("DBF 文件头的语言驱动字节为 0x{ldid:02X}", "DBF language driver byte 0x{ldid:02X}"),
    "enc.ldid_mismatch": (
        "DBF 文件头的语言驱动 0x{ldid:02X} 与数据不符；{why}",
        "DBF language driver 0x{ldid:02X} does not fit the data; {why}",
    ),
    "enc.gpkg": ("GeoPackage 的文字一律是 UTF-8", "GeoPackage text is UTF-8"),
    "enc.unknown": ("未知的文字编码 {name!r}", "unknown encoding {name!r}"),
    "note.geojson_no_crs": (
        "GeoJSON 没有 crs 成员：按 RFC 7946 应为 WGS84，但国内导出的文件常是 GCJ-02 或投影坐标，"
        "因此视为未声明坐标系",
        "GeoJSON has no crs member: RFC 7946 says WGS84, but many Chinese exports are GCJ-02 or "
        "projected, so the coordinate system is left undeclared",
    ),
    "note.geojson_crs_unknown": (
        "GeoJSON 的 crs 成员无法识别：{crs}",
        "GeoJSON crs member not understood: {crs}",
    ),
    "note.geojsonseq_no_crs": (
        "GeoJSON 文本序列没有 crs 成员：未声明坐标系",
        "GeoJSON text sequences carry no crs member: the coordinate system is not declared",
    ),
    # files that cannot be read (importers.formats, tabular, vector, geojson_stream, profiles, zone_files)
    "file.advice": ("{file}：{advice}", "{file}: {advice}"),
    "file.advice.xls": (
        "不支持旧版二进制 Excel（.xls）：请另存为 .xlsx",
        "old binary Excel (.xls) is not supported: save it as .xlsx",
    ),
    "file.advice.dbf": (
        "单独的 .dbf 没有几何：请发送完整的 shapefile（.shp、.shx、.dbf、.prj、.cpg）",
        "a .dbf alone has no geometry: send the whole shapefile (.shp, .shx, .dbf, .prj, .cpg)",
    ),
    "file.advice.part": (
        "请改为打开该 shapefile 的 .shp 文件",
        "open the .shp file of this shapefile instead",
    ),
    "file.advice.kml": (
        "不支持 KML：请导出为 GeoJSON 或 shapefile",
        "KML is not supported: export GeoJSON or a shapefile",
    ),
    "file.advice.kmz": (
        "不支持 KMZ：请导出为 GeoJSON 或 shapefile",
        "KMZ is not supported: export GeoJSON or a shapefile",
    ),
    "file.advice.cad": (
        "不支持 CAD 图纸：请把图层导出为 shapefile",
        "CAD drawings are not supported: export the layer as a shapefile",
    ),
    "file.advice.mdb": (
        "不支持个人地理数据库（.mdb）：请把每个图层导出为 shapefile 或 GeoPackage",
        "personal geodatabases are not supported: export each layer as a shapefile or GeoPackage",
    ),
    "file.advice.gdb": (
        "不支持文件地理数据库（.gdb）：请把每个图层导出为 GeoPackage",
        "file geodatabases are not supported: export each layer as a GeoPackage",
    ),
    "file.advice.rar": ("不支持 RAR 压缩包：请发送 .zip", "RAR archives are not supported: send a .zip"),
    "file.advice.7z": ("不支持 7z 压缩包：请发送 .zip", "7z archives are not supported: send a .zip"),
    "file.unsupported": (
        "{file}：不支持的文件类型 {suffix!r}；支持：{kinds}",
        "{file}: unsupported file type {suffix!r}; supported: {kinds}",
    ),
    "file.no_extension": ("（无扩展名）", "(no extension)"),
    "file.not_found": ("{file}：找不到文件", "{file}: file not found"),
    "file.no_header": (
        "{file}：前 {rows} 行中找不到表头行",
        "{file}: no header row found in the first {rows} rows",
    ),
    "file.not_encoding": ("{file}：文字不是 {encoding}（{why}）", "{file}: text is not {encoding} ({why})"),
    "file.not_encoding_row": (
        "{file}：文字不是 {encoding}（{why}）；请指定正确的编码（--encoding）",
        "{file}: text is not {encoding} ({why}); pass the right encoding",
    ),
    "file.not_encoding_near": (
        "{file}：第 {row} 个要素附近的文字不是 {encoding}；请指定正确的编码（--encoding）",
        "{file}: text is not {encoding} near feature {row}; pass the right encoding",
    ),
    "file.field_names": (
        "{file}：字段名不是 {encoding}（{why}）",
        "{file}: field names are not {encoding} ({why})",
    ),
    "file.xlsx": (
        "{file}：不是可读的 .xlsx 工作簿（{why}）",
        "{file}: not a readable .xlsx workbook ({why})",
    ),
    "file.no_sheet": (
        "{file}：没有工作表 {sheet!r}；现有：{sheets}",
        "{file}: no sheet {sheet!r}; sheets: {sheets}",
    ),
    "file.zip": ("{file}：不是可读的 zip 压缩包（{why}）", "{file}: not a readable zip archive ({why})"),
    "file.zip_no_shp": ("{file}：zip 压缩包中没有 .shp 文件", "{file}: the zip archive holds no .shp file"),
    "file.zip_no_layer": (
        "{file}：压缩包中没有 shapefile 图层 {layer!r}；现有：{layers}",
        "{file}: no shapefile layer {layer!r} in the archive; layers: {layers}",
    ),
    "file.missing_part": ("{file}：{shp} 旁边缺少 {ext}", "{file}: missing {ext} beside {shp}"),
    "file.gpkg": ("{file}：不是可读的 GeoPackage（{why}）", "{file}: not a readable GeoPackage ({why})"),
    "file.gpkg_empty": ("{file}：GeoPackage 中没有图层", "{file}: the GeoPackage has no layers"),
    "file.no_layer": (
        "{file}：没有图层 {layer!r}；现有：{layers}",
        "{file}: no layer {layer!r}; layers: {layers}",
    ),
    "file.unreadable": ("{file}：无法读取（{why}）", "{file}: cannot read ({why})"),
    "file.unreadable_near": (
        "{file}：第 {row} 个要素附近无法读取（{why}）",
        "{file}: cannot read near feature {row} ({why})",
    ),
    "file.json": ("{file}：不是有效的 JSON（{why}）", "{file}: not valid JSON ({why})"),
    "file.not_collection": ("{file}：不是 GeoJSON 要素集合", "{file}: not a GeoJSON FeatureCollection"),
    "file.not_geojson": (
        "{file}：不是 GeoJSON 要素集合、要素或几何",
        "{file}: not a GeoJSON FeatureCollection, Feature or geometry",
    ),
    "file.in_file": ("{file}：{message}", "{file}: {message}"),
    "file.truncated": (
        "文件在 features 数组中间结束：文件是否不完整？",
        "the file ends inside the features array: is it truncated?",
    ),
    "file.features_json": (
        "features 数组中有无效的 JSON：{why}",
        "invalid JSON in the features array: {why}",
    ),
    "file.no_geometries": ("{file}：没有可读的几何", "{file}: no geometries to read"),
    "file.swapped": (
        "{file}：{reason}；请交换坐标轴或用 --crs 指定坐标系",
        "{file}: {reason}; swap the axes or pass --crs",
    ),
    "file.crs_unknown": (
        "{file}：其坐标系无法识别（{declared}...）：请用 --crs 指定",
        "{file}: its coordinate system is not one PROJ identifies ({declared}...): pass --crs",
    ),
    "file.chunk_size": ("chunk_size 至少为 1，实为 {size}", "chunk_size must be at least 1, got {size}"),
    "profile.toml": (
        "映射方案 {source}：不是有效的 TOML（{why}）",
        "mapping profile {source}: not valid TOML ({why})",
    ),
    "profile.utf8": (
        "映射方案 {source}：不是 UTF-8 文本（{why}）",
        "mapping profile {source}: not UTF-8 text ({why})",
    ),
    "profile.missing": (
        "映射方案 {source}：没有这个文件，也不是内置方案（内置：{known}）",
        "mapping profile {source}: no such file or built-in profile (built-in: {known})",
    ),
    "profile.extends": (
        "映射方案 {source}：extends 只能是内置方案（{known}），不能继承其他文件",
        "mapping profile {source}: extends must name a built-in profile ({known}); "
        "other files cannot be extended",
    ),
    "profile.circular": (
        "映射方案 {source}：extends 循环（{chain}）",
        "mapping profile {source}: extends: circular ({chain})",
    ),
    "profile.invalid": ("映射方案 {source}：{problems}", "mapping profile {source}: {problems}"),
    "profile.unknown_key": ("未知的键", "unknown key"),
    "profile.top_level": ("（顶层）", "(top level)"),
    "profile.state": (
        "{name!r} 对应 {state!r}；状态只能是 {states} 之一",
        "{name!r} maps to {state!r}; a state must be one of {states}",
    ),
    "profile.class_code": (
        '{name!r} 对应 {code!r}；设施类型代码是 4 位数字，例如 "0117"',
        '{name!r} maps to {code!r}; a class code is 4 digits such as "0117"',
    ),
    "profile.value_target": (
        "{name!r} 不能给定值（坐标来自文件）",
        "{name!r} cannot be given a value (coordinates come from the file)",
    ),
    # the profile `smartcode mapping suggest` writes (importers.headers), as TOML comments
    "suggest.head": (
        "为 {name} 建议的映射方案：请逐行核对，再用 --mapping 传入",
        "mapping profile suggested for {name}: check each line, then pass it with --mapping",
    ),
    "suggest.docs": ("说明见 docs/mapping.md", "documented in docs/mapping.md"),
    "suggest.crs": (
        "文件未声明坐标系且无法识别时取消注释",
        "uncomment when the file says nothing and detection cannot tell",
    ),
    "suggest.ignored": (
        "没有字段使用的列（保存在每个设施的其他属性中）：",
        "columns no field takes (kept in each asset's attributes):",
    ),
    "suggest.classes": (
        "本地类型名称 -> 国标类型代码，例如",
        "local class names -> national class codes, e.g.",
    ),
    "suggest.units": (
        "本文件中的单位名称写法 -> 已登记名称，例如",
        "spellings of unit names in this file -> registered names, e.g.",
    ),
    # the progress line of a CLI import (importers.progress); the phases are the pipeline's words
    "progress.reading": ("读取", "reading"),
    "progress.indexing": ("建索引", "indexing"),
    "progress.merging": ("合并", "merging"),
    "progress.writing": ("写入", "writing"),
    "progress.tiles": ("瓦片计数", "tiles"),
    "progress.rows_of": ("{done:,}/{total:,} 行", "{done:,}/{total:,} rows"),
    "progress.rows": ("{done:,} 行", "{done:,} rows"),
    "progress.rate": ("{rate:,.0f} 行/秒  {elapsed:.0f} 秒", "{rate:,.0f} rows/s  {elapsed:.0f} s"),
    # import batches (importers.batches, jobs)
    "batch.none": ("没有编号为 {id} 的导入批次", "no import batch {id}"),
    "batch.not_committed": (
        "导入批次 {id} 的状态是 {status}：只有已提交的批次可以回滚",
        "import batch {id} is {status}: only a committed batch can be rolled back",
    ),
    "batch.changed_since": (
        "导入批次 {id} 无法回滚：其中 {count} 个设施在此后又被修改（{shown}），回滚会一并撤销这些修改；"
        "请先改回，或逐个更正设施",
        "import batch {id} cannot be rolled back: {count} of its assets changed after it ({shown}); "
        "rolling back would also undo those later changes. Change them back first, or correct the "
        "assets one by one.",
    ),
    "job.internal": (
        "内部错误：详情已记入服务器日志",
        "internal error: the failure was logged on the server",
    ),
    # the synthetic demo (importers.demo.load)
    "demo.older": (
        "本登记库中的演示数据由旧版 smartcode 生成，与刚写出的文件不同：请把当前演示数据载入新数据库查看",
        "the demo in this registry was generated by an older smartcode; its files differ from the "
        "ones just written: load the current demo into a fresh database to see them",
    ),
    "demo.other_seed": (
        "本登记库已有种子为 {seed} 的演示数据，再载入一份会混在一起："
        "其他种子请用另一个数据库（SMARTCODE_DATA_DIR 或 SMARTCODE_DATABASE_URL）",
        "this registry already holds the demo with seed {seed}; a second demo would mix with it: use "
        "another database (SMARTCODE_DATA_DIR or SMARTCODE_DATABASE_URL) for another seed",
    ),
    "demo.foreign": (
        "本登记库已有不属于演示的数据（{listed}）：合成演示数据只载入空的登记库"
        "（请把 SMARTCODE_DATA_DIR 或 SMARTCODE_DATABASE_URL 指向新数据库）",
        "this registry already holds {listed} that are not demo data: the synthetic demo loads only "
        "into an empty registry (point SMARTCODE_DATA_DIR or SMARTCODE_DATABASE_URL at a fresh database)",
    ),
    "demo.count.assets": ("{count} 个设施", "{count} assets"),
    "demo.count.units": ("{count} 个单位", "{count} units"),
    "demo.count.zones": ("{count} 个区域", "{count} zones"),
    "demo.count.rules": ("{count} 条职责规则", "{count} rules"),
    "demo.why.lamp": (
        "坪山中心区的一盏路灯，权属单位为路灯管理所",
        "a street lamp in 坪山中心区, owned by the street-lighting office",
    ),
    "demo.why.pole": ("中国铁塔的一根杆", "a pole of 中国铁塔"),
    "demo.why.cable": (
        "一段架空线（本地类型 2105 的线状设施）",
        "an overhead cable (a line asset of local class 2105)",
    ),
    "demo.why.power_cover": (
        "来自供电局数字城管 shapefile 的一个电力井盖",
        "a power manhole cover from the utility's 数字城管 shapefile",
    ),
    "demo.why.rule_cover": (
        "坪山中心区的一个无主井盖：试点规则指定街道办",
        "an ownerless cover in 坪山中心区: the pilot's rule names the street office",
    ),
    "demo.why.street_cover": (
        "坪环社区的一个无主井盖：按属地兜底由街道办负责",
        "an ownerless cover in 坪环社区: the street office by jurisdiction (属地兜底)",
    ),
    # --- errors of the registry the API returns (InvalidInput / NotFound / Conflict) ---------------------
    "err.code.empty": ("编码为空", "empty code"),
    "err.code.digits": (
        "编码 {code!r} 含有 {bad!r}：智慧码只有数字",
        "code {code!r} contains {bad!r}: a smart code has digits only",
    ),
    "err.code.length": (
        "编码 {code!r} 有 {count} 位数字；应为 {expected} 位（区县 6 + 类别 4 + 顺序码 6 [+ 校验位 1]）",
        "code {code!r} has {count} digits; expected {expected} (county 6 + class 4 + serial 6 [+ check 1])",
    ),
    "err.code.check": (
        "编码 {code!r} 校验位不符（应为 {expected}，实为 {got}）：可能输错或读错了",
        "code {code!r} fails its check digit (expected {expected}, got {got}): "
        "it was probably mistyped or misread",
    ),
    "err.code.unregistered": (
        "智慧码 {code} 格式正确，但未登记",
        "code {code} is well-formed but not registered",
    ),
    "err.code.county": (
        "智慧码 {code} 属于区县 {county}，不是本部署的 {here}",
        "code {code} belongs to county {county}, not this deployment's {here}",
    ),
    "err.code.class": (
        "智慧码 {code} 的类别是 {named}，但 class_code 是 {cls}",
        "code {code} names class {named}, but class_code is {cls}",
    ),
    "err.code.taken": ("智慧码 {code} 已登记", "code {code} is already registered"),
    "err.class.retired": ("设施类型 {code} {name} 已停用", "class {code} {name} is retired"),
    "err.unit.none_id": ("没有编号为 {id} 的单位", "no unit with id {id}"),
    "err.unit.none_name": ("没有名为 {name!r} 的单位（单位未登记）", "no unit named {name!r}"),
    "err.unit.not_registered": ("{field} {id} 不是已登记的单位", "{field} {id} is not a registered unit"),
    "err.unit.parent": ("上级单位 {id} 不存在", "parent unit {id} does not exist"),
    "err.unit.exists": (
        "已有名为 {name!r} 或统一社会信用代码为 {credit} 的单位",
        "a unit named {name!r} or with credit code {credit} already exists",
    ),
    "err.unit.taken": (
        "已有其他单位使用该名称或统一社会信用代码",
        "another unit already has that name or credit code",
    ),
    "err.unit.near": (
        "单位 {name!r} 未登记，但与已登记的 {close} 相近（未新建）：请改正名称，"
        "或添加别名（smartcode units alias add {first!r} {name!r}）",
        "unit {name!r} is not registered but close to {close}: fix the name, or add it as an alias "
        "(smartcode units alias add {first!r} {name!r})",
    ),
    "err.unit.alias_taken": (
        "别名 {alias!r} 已是单位 {id} 的名称",
        "alias {alias!r} already names unit {id}",
    ),
    "err.unit.alias_empty": ("别名不能为空", "an alias cannot be empty"),
    "err.unit.own_parent": ("单位不能是自己的上级单位", "a unit cannot be its own parent"),
    "err.unit.version": (
        "单位 {id} 当前版本为 {current}，不是 {given}：请重新读取后重试",
        "unit {id} is at version {current}, not {given}: reload and retry",
    ),
    "err.null": ("{field} 不能为空", "{field} cannot be null"),
    "err.asset.version": (
        "设施 {code} 当前版本为 {current}，不是 {given}：读取后已有人修改，请重新读取后重试",
        "asset {code} is at version {current}, not {given}: someone changed it since you read it; "
        "reload and retry",
    ),
    "err.asset.version_short": (
        "设施 {code} 当前版本为 {current}，不是 {given}：请重新读取后重试",
        "asset {code} is at version {current}, not {given}: reload and retry",
    ),
    "err.asset.decommissioned": (
        "设施 {code} 已于 {when} 注销：已注销的设施不能{what}",
        "asset {code} was decommissioned on {when}: a decommissioned asset cannot {what}",
    ),
    "err.asset.edited": ("修改", "be edited"),
    "err.asset.handed_over": ("移交", "be handed over"),
    "err.asset.already_decommissioned": (
        "设施 {code} 已于 {when} 注销",
        "asset {code} was already decommissioned on {when}",
    ),
    "err.asset.proposed": (
        "设施 {code} 的同一变更已在提议中（提议 {id}），正等待对方单位答复",
        "the same change of asset {code} is already proposed (proposal {id}), waiting for the other "
        "unit's answer",
    ),
    "err.asset.units_none": (
        "请至少给出 owner_id、maintainer_id、supervisor_id 之一",
        "name at least one of owner_id, maintainer_id, supervisor_id",
    ),
    "err.asset.units_same": (
        "这些单位已经负责该设施",
        "these units are already responsible for the asset",
    ),
    "err.time.zone": (
        "{field} 需要带时区，例如 2025-03-02T00:00:00+08:00",
        "{field} needs a time zone, e.g. 2025-03-02T00:00:00+08:00",
    ),
    "err.time.future": (
        "{field} 在未来：请在变更发生时再记录",
        "{field} is in the future: record the change when it happens",
    ),
    "err.time.after_period": (
        "effective_at {at} 不晚于当前责任期的开始（{start}）",
        "effective_at {at} is not after the start of the current responsibility period ({start})",
    ),
    "err.bbox": (
        "bbox 应为 min_lon,min_lat,max_lon,max_lat 且 min < max",
        "bbox must be min_lon,min_lat,max_lon,max_lat with min < max",
    ),
    "err.zone.level": (
        "未知的区域级别 {level!r}；可用：{levels}",
        "unknown zone level {level!r}; use one of {levels}",
    ),
    "err.zone.no_geometry": ("{what}：没有几何", "{what}: no geometry"),
    "err.zone.type": (
        "{what}：区域必须是 Polygon 或 MultiPolygon，实为 {kind}",
        "{what}: a zone must be a Polygon or MultiPolygon, got {kind}",
    ),
    "err.zone.no_area_left": (
        "{what}：无效多边形（{why}）修复后没有面积：已拒绝",
        "{what}: invalid polygon ({why}) has no area left after repair: refused",
    ),
    "err.zone.no_area": (
        "{what}：多边形没有面积（约 {area:.2g} 平方米）：已拒绝",
        "{what}: the polygon has no area (about {area:.2g} m²): refused",
    ),
    "err.zone.what": ("区域 {name!r}", "zone {name!r}"),
    "err.zone.name": ("区域需要名称", "a zone needs a name"),
    "err.zone.start": (
        "区域 {level} {name!r}：新边界必须在现行边界（{start}）之后生效",
        "zone {level} {name!r}: the new boundary must start after the current one ({start})",
    ),
    "err.zone.save": (
        "区域 {level} {name!r} 无法保存：{why}",
        "zone {level} {name!r} cannot be saved: {why}",
    ),
    "err.zone.none": ("没有编号为 {id} 的区域", "no zone with id {id}"),
    "err.rule.none": ("没有编号为 {id} 的职责清单规则", "no responsibility rule with id {id}"),
    "err.rule.level_alone": (
        "给出了级别 {level!r} 但没有区域名称",
        "level {level!r} is given without a zone name",
    ),
    "err.rule.zone_levels": (
        "区域 {zone!r} 在多个级别都有（{levels}）：请给出级别",
        "zone {zone!r} exists at levels {levels}: give its level",
    ),
    "err.rule.zone_unknown": (
        "区域 {zone!r} 未知：请给出级别",
        "zone {zone!r} is not a known zone: give its level",
    ),
    "err.rule.zone_missing": (
        "没有名为 {zone!r} 的{level}区域：请先导入区域",
        "no {level} zone named {zone!r}: import the zones first",
    ),
    "err.rule.class": ("未知的设施类型 {name!r}", "unknown component class {name!r}"),
    "err.rule.category": ("未知的案件类别 {name!r}", "unknown complaint category {name!r}"),
    "err.rule.unit": ("规则需要责任单位", "a rule needs the responsible unit"),
    "err.rule.time_zone": (
        "规则的生效时间需要带时区，例如 2025-01-01T00:00:00+08:00",
        "rule validity times need a time zone, e.g. 2025-01-01T00:00:00+08:00",
    ),
    "err.rule.start": (
        "替换规则 {id} 的新规则必须在 {start} 之后生效",
        "the rule replacing rule {id} must start after {start}",
    ),
    "err.rule.overlap": (
        "该规则与同一区域、类别和案件类别的另一条规则时间重叠：{why}",
        "the rule overlaps in time with another rule for the same zone, class and category: {why}",
    ),
    "err.rule.row": ("第 {row} 行：{message}", "row {row}: {message}"),
    "err.rule.time": ("{column} {value!r} 不是 ISO 8601 时间", "{column} {value!r} is not an ISO 8601 time"),
    "err.rule.time_no_zone": (
        "{column} {value!r} 需要带时区，例如 +08:00",
        "{column} {value!r} needs a time zone, e.g. +08:00",
    ),
    "err.rule.priority": ("优先级 {value!r} 不是整数", "priority {value!r} is not a whole number"),
    "err.rule.csv": ("{file}：不是可读的 CSV：{why}", "{file}: not a readable CSV: {why}"),
    "err.rule.columns": (
        "{file}：缺少列 {missing}；应有 {expected}（可选：{optional}）",
        "{file}: missing column(s) {missing}; expected {expected} (optional: {optional})",
    ),
    "err.rule.same": (
        "与第 {first} 行的区域、类别和案件类别相同",
        "same zone, class and category as row {first}",
    ),
    "err.rule.empty": ("文件中没有规则", "the file has no rules"),
    "err.rule.nothing": ("{file}：未导入任何规则：{shown}", "{file}: nothing imported: {shown}"),
    "zimp.empty": ("第 {row} 行：{field} 为空", "row {row}: empty {field}"),
    "zimp.repeat": (
        "第 {row} 行：区域 {name!r} 重复出现（首次在第 {first} 行）",
        "row {row}: zone {name!r} appears again (first at row {first})",
    ),
    "zimp.what": ("第 {row} 行（{name}）", "row {row} ({name})"),
    "zimp.row": ("{what}：{message}", "{what}: {message}"),
    "zimp.crs_guessed": ("{crs}（推测：{reason}）", "{crs} (guessed: {reason})"),
    "zimp.none": ("文件中没有要素", "the file has no features"),
    "zimp.nothing": ("{file}：未导入任何区域：{shown}", "{file}: nothing imported: {shown}"),
    "err.rule.more": ("；另有 {count} 个", "; and {count} more"),
    "imp.zone.none": (
        "区县 {county} 没有名为 {name!r} 的现行区域",
        "no current zone named {name!r} in county {county}",
    ),
    "imp.zone.ambiguous": (
        "区域名称 {name!r} 在多个级别都有（{levels}）：有歧义",
        "zone name {name!r} exists at several levels ({levels}): ambiguous",
    ),
    "imp.integrity": (
        "{file}：登记库拒绝了该批次，未写入任何数据：{why}",
        "{file}: the registry refused the batch, nothing was written: {why}",
    ),
    "imp.database": (
        "导入时数据库出错，未写入任何数据：{why}",
        "database error during import, nothing was written: {why}",
    ),
    "imp.read_twice": (
        "文件读取了两次：空登记库的直接装载中途停止（{why}），改走常规导入",
        "read twice: the direct load of an empty registry stopped ({why})",
    ),
    "imp.restart.repeats": ("重复的原编号超过 {most} 个", "more than {most} repeated source ids"),
    "imp.restart.serial": (
        "设施类型 {cls} 的指定顺序码 {number} 已被分配",
        "explicit serial {number} of class {cls} was already allocated",
    ),
    "imp.restart.collision": ("一个重复的原编号是哈希冲突", "a repeated source id was a hash collision"),
    "imp.needs_owner": (
        "登记库为空，但本次导入所用的数据库角色不是资产表的所有者，因此没有直接装载（约快一倍）："
        "首次大批量导入请以所有者身份运行 smartcode import（docs/database-roles.md）",
        "the registry is empty, but this import's database role does not own the asset tables, so it "
        "took the usual path instead of the direct load (about twice as fast): run a first large import "
        "with `smartcode import` as the owner (docs/database-roles.md)",
    ),
    "imp.tiles_recounted": (
        "地图瓦片计数已在批量导入后重算",
        "map tile counts recounted after the bulk import",
    ),
    "imp.tiles_stale": (
        "地图瓦片计数暂未重算，第一次请求瓦片时会重算",
        "map tile counts not recounted now: the first tile requested will recount them",
    ),
    "imp.direct": (
        "登记库原为空：各行边读边写，索引在最后建立（{seconds:.1f} 秒）",
        "the registry was empty: rows were written as they were read and its indexes built at the end "
        "({seconds:.1f} s)",
    ),
}


def both(key: str, **params: Any) -> Bilingual:
    """The message ``key`` in both languages with ``params`` filled in."""
    zh, en = _CATALOGUE[key]
    # A parameter that is itself bilingual (a field's name, a nested reason) gives each half its own.
    return Bilingual(
        zh.format(**{k: v.zh if isinstance(v, Bilingual) else v for k, v in params.items()}),
        en.format(**{k: v.en if isinstance(v, Bilingual) else v for k, v in params.items()}),
    )


def in_lang(message: str, lang: str) -> str:
    """The half of a :class:`Bilingual` message in ``lang``; any other text as it is."""
    if isinstance(message, Bilingual):
        return message.en if lang == "en" else message.zh
    return message


def split(message: str) -> str:
    """Text built elsewhere (SQL) as ``中文<US>English`` made :class:`Bilingual`; other text unchanged."""
    zh, sep, en = message.partition(SEPARATOR)
    return Bilingual(zh, en) if sep else message


# Joins the two halves where a message is built outside Python (the merge's SQL): a control
# character no name or identifier contains, so the halves come apart exactly.
SEPARATOR = "\x1f"


def check_lang(value: str | None) -> Lang:
    """``value`` as a supported language (``zh`` or ``en``; ``zh-CN``, ``en_US`` and the like accepted)."""
    if not value:
        return DEFAULT_LANG
    short = value.strip().lower().replace("_", "-").split("-")[0]
    if short == "zh":
        return "zh"
    if short == "en":
        return "en"
    raise ValueError(f"unknown language {value!r}: use zh (中文) or en (English)")


def text(lang: str, key: str, **params: Any) -> str:
    """The message ``key`` in ``lang`` with ``params`` filled in."""
    zh, en = _CATALOGUE[key]
    return (en if lang == "en" else zh).format(**params)


def all_keys() -> list[str]:
    """Every message key (the tests check each has both languages and the same placeholders)."""
    return list(_CATALOGUE)


def template(lang: str, key: str) -> str:
    """The unfilled template of ``key`` in ``lang``."""
    zh, en = _CATALOGUE[key]
    return en if lang == "en" else zh


def when(value: dt.datetime | None, lang: str, timezone: str) -> str:
    """A time as the explanation shows it: ISO 8601 in English, local wall time with offset in Chinese."""
    if value is None:
        return text(lang, "location.now")
    if lang == "en":
        return value.isoformat()
    local = value.astimezone(zoneinfo.ZoneInfo(timezone))
    return f"{local:%Y-%m-%d %H:%M:%S} {local.isoformat()[-6:]}"
