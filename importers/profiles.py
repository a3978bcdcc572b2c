"""Mapping profiles: which source fields feed which registry field, and how values are translated.

A profile is a TOML file validated by pydantic. The built-in ``szcg`` profile covers the 数字城管
attribute set (OBJCODE, OBJNAME, DEPTNAME1-3, BGID, OBJSTATE, OBJUPTODAT, ORDATE, CHDATE...); a user
profile may ``extends = "szcg"`` and change only what differs (tables merge, other values replace);
``extends`` names built-in profiles only, never a file.

Errors name the file and the key (``fields.onwer: unknown key``) so a profile author can fix them
without reading code.
"""

from __future__ import annotations

import re
import tomllib
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from common.errors import InvalidInput
from registry.messages import Bilingual, both, in_lang

Target = Literal[
    "code",
    "source_id",
    "class_code",
    "class_name",
    "owner",
    "maintainer",
    "supervisor",
    "grid",
    "state",
    "in_use",
    "installed",
    "changed",
    "data_source",
    "note",
    "x",
    "y",
]
TARGETS: tuple[str, ...] = get_args(Target)
# The targets a fixed or default value can be given for (x/y are coordinates, not values).
VALUE_TARGETS: tuple[str, ...] = tuple(t for t in TARGETS if t not in ("x", "y"))
STATES: tuple[str, ...] = ("完好", "破损", "丢失", "占用")
DEFAULT_PROFILE = "szcg"
_CLASS_CODE = re.compile(r"^[0-9]{4}$")


def _names(value: Any) -> Any:
    """A field may list one name as a string or several as an array; always a list afterwards."""
    return [value] if isinstance(value, str) else value


class FieldMap(BaseModel):
    """Candidate source field names for each target, tried in order (case-insensitive)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: list[str] = Field(default_factory=list)
    source_id: list[str] = Field(default_factory=list)
    class_code: list[str] = Field(default_factory=list)
    class_name: list[str] = Field(default_factory=list)
    owner: list[str] = Field(default_factory=list)
    maintainer: list[str] = Field(default_factory=list)
    supervisor: list[str] = Field(default_factory=list)
    grid: list[str] = Field(default_factory=list)
    state: list[str] = Field(default_factory=list)
    in_use: list[str] = Field(default_factory=list)
    installed: list[str] = Field(default_factory=list)
    changed: list[str] = Field(default_factory=list)
    data_source: list[str] = Field(default_factory=list)
    note: list[str] = Field(default_factory=list)
    x: list[str] = Field(default_factory=list)
    y: list[str] = Field(default_factory=list)

    @field_validator("*", mode="before")
    @classmethod
    def _as_list(cls, value: Any) -> Any:
        return _names(value)

    def for_target(self, target: str) -> list[str]:
        """The candidate field names of one target."""
        names: list[str] = getattr(self, target)
        return names


class ValueMaps(BaseModel):
    """Translations of source values (after trimming) to the registry's vocabulary."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: dict[str, str] = Field(default_factory=dict)
    in_use: dict[str, bool] = Field(default_factory=dict)

    @field_validator("state")
    @classmethod
    def _known_states(cls, value: dict[str, str]) -> dict[str, str]:
        for key, state in value.items():
            if state not in STATES:
                raise ValueError(both("profile.state", name=key, state=state, states=", ".join(STATES)))
        return value


class AttributeRule(BaseModel):
    """Which source fields go into the record's JSON attribute bag.

    ``"unmapped"`` keeps every value no target took (a DEPTCODE2 behind the DEPTNAME2 that won is
    kept), ``"all"`` every field, ``"none"`` nothing, or a list names the fields to keep.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    keep: Literal["unmapped", "all", "none"] | list[str] = "unmapped"


class Profile(BaseModel):
    """A validated mapping profile."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    title: str = ""
    extends: str | None = None
    crs: str | None = None  # overrides the CRS the file declares (for files that declare none)
    encoding: str | None = None  # for shapefile DBFs and CSV that are always in one encoding
    fields: FieldMap = Field(default_factory=FieldMap)
    classes: dict[str, str] = Field(default_factory=dict)  # local class name or code -> national code
    units: dict[str, str] = Field(default_factory=dict)  # unit name alias -> canonical name
    fixed: dict[Target, str] = Field(default_factory=dict)  # value for every row, whatever the file says
    defaults: dict[Target, str] = Field(default_factory=dict)  # value where the file has none
    values: ValueMaps = Field(default_factory=ValueMaps)
    attributes: AttributeRule = Field(default_factory=AttributeRule)

    @field_validator("classes")
    @classmethod
    def _national_codes(cls, value: dict[str, str]) -> dict[str, str]:
        for key, code in value.items():
            if not _CLASS_CODE.match(code):
                raise ValueError(both("profile.class_code", name=key, code=code))
        return value

    @field_validator("fixed", "defaults")
    @classmethod
    def _value_targets(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key not in VALUE_TARGETS:
                raise ValueError(both("profile.value_target", name=key))
        return value

    def coordinate_fields(self) -> tuple[list[str], list[str]]:
        """Candidate x and y column names (for ``open_source(x_field=..., y_field=...)``)."""
        return list(self.fields.x), list(self.fields.y)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; any other value in ``override`` replaces the base's."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _format_errors(source: str, exc: ValidationError) -> Bilingual:
    halves: dict[str, list[str]] = {"zh": [], "en": []}
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or both("profile.top_level")
        cause = (error.get("ctx") or {}).get("error")
        given = cause.args[0] if isinstance(cause, ValueError) and cause.args else None
        message: str
        if error["type"] == "extra_forbidden":
            message = both("profile.unknown_key")
        elif isinstance(given, Bilingual):
            message = given
        else:  # pydantic's own words (a wrong type): the same in both halves
            message = error["msg"].removeprefix("Value error, ")
        halves["zh"].append(f"{in_lang(key, 'zh')}：{in_lang(message, 'zh')}")
        halves["en"].append(f"{in_lang(key, 'en')}: {in_lang(message, 'en')}")
    problems = Bilingual("；".join(halves["zh"]), "; ".join(halves["en"]))
    return both("profile.invalid", source=source, problems=problems)


def parse_profile(text: str, source: str = "<profile>", *, _seen: tuple[str, ...] = ()) -> Profile:
    """Parse and validate profile TOML text; InvalidInput names ``source`` and the offending key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(both("profile.toml", source=source, why=exc), file=source) from exc
    base_name = data.get("extends")
    if base_name is not None:
        # Only a built-in profile may be extended: a path here would let an uploaded profile make
        # the server read (and describe, in its error) any file it can open.
        known = builtin_profiles()
        if not isinstance(base_name, str) or base_name not in known:
            raise InvalidInput(
                both("profile.extends", source=source, known=", ".join(known)),
                file=source,
                field="extends",
            )
        if base_name in _seen:
            raise InvalidInput(both("profile.circular", source=source, chain=" -> ".join(_seen)), file=source)
        base = _load_raw(base_name, (*_seen, source))
        data = _merge(base, data)
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(_format_errors(source, exc), file=source) from exc


def _builtin_text(name: str) -> str | None:
    if name not in builtin_profiles():
        return None
    resource = resources.files("importers") / "profiles" / f"{name}.toml"
    return resource.read_text(encoding="utf-8") if resource.is_file() else None


def _load_raw(name_or_path: str, seen: tuple[str, ...]) -> dict[str, Any]:
    """The merged TOML table of the built-in profile named by ``extends``."""
    profile = _load(name_or_path, seen)
    return profile.model_dump(exclude_defaults=True)


def builtin_profiles() -> list[str]:
    """Names of the profiles shipped with smartcode."""
    folder = resources.files("importers") / "profiles"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def _load(name_or_path: str | Path, seen: tuple[str, ...]) -> Profile:
    text = (
        _builtin_text(str(name_or_path))
        if isinstance(name_or_path, str) and "/" not in name_or_path
        else None
    )
    if text is not None:
        return parse_profile(text, f"{name_or_path} (built-in)", _seen=seen)
    path = Path(name_or_path)
    if not path.is_file():
        known = ", ".join(builtin_profiles())
        raise InvalidInput(
            both("profile.missing", source=name_or_path, known=known),
            file=str(name_or_path),
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(both("profile.utf8", source=path.name, why=exc), file=path.name) from exc
    return parse_profile(text, path.name, _seen=seen)


def load_profile(name_or_path: str | Path) -> Profile:
    """A built-in profile by name ("szcg") or a user profile from a TOML file."""
    return _load(name_or_path, ())


@lru_cache(maxsize=1)
def default_profile() -> Profile:
    """The built-in 数字城管 profile, used when an import names none."""
    return load_profile(DEFAULT_PROFILE)
