"""Label lifecycle in the registry: issue, reprint, rotate, revoke, decommission, and what a scan says."""

from __future__ import annotations

from pathlib import Path

import pytest
from shapely.geometry import box
from sqlalchemy import Engine, text

from common.errors import Conflict, Forbidden, InvalidInput, NotFound
from gis.area import ServiceArea
from qr.signing import LabelKeys, add_key, load_keys
from registry import assets as asset_service
from registry import zones
from registry.db import Actor, transaction
from registry.labels import (
    LabelSelection,
    LabelStatus,
    issue_labels,
    label_history,
    label_status,
    revoke_label,
    select_assets,
)
from registry.schemas import Decommission
from tests.helpers import COUNTY, PINGSHAN, make_asset, make_unit, point

BASE = "https://sc.example.cn"


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return tmp_path / "label-keys"


@pytest.fixture
def keys(key_path: Path) -> LabelKeys:
    return load_keys(key_path)


def _print(engine: Engine, actor: Actor, keys: LabelKeys, **selection: object) -> list:
    with transaction(engine) as session:
        chosen = select_assets(session, LabelSelection(**selection), actor)  # type: ignore[arg-type]
        return issue_labels(session, chosen, actor, keys=keys, base_url=BASE)


def _status(engine: Engine, code: str, signature: str | None, keys: LabelKeys) -> LabelStatus:
    with transaction(engine) as session:
        return label_status(session, code, signature, keys=keys).status


def test_reprint_gives_the_same_url_even_after_key_rotation(
    db: Engine, admin: Actor, keys: LabelKeys, key_path: Path
) -> None:
    asset = make_asset(db, admin)
    (first,) = _print(db, admin, keys, codes=(asset.code,))
    assert first.new and first.url.startswith(f"{BASE}/c/{asset.code}?s=1.")
    assert (
        first.asset.printed_code
        == f"{asset.code[:6]}-{asset.code[6:10]}-{asset.code[10:16]}-{asset.code[16]}"
    )
    (again,) = _print(db, admin, keys, codes=(asset.code,))
    assert again.url == first.url and not again.new
    add_key(key_path)
    rotated = load_keys(key_path)
    (after_rotation,) = _print(db, admin, rotated, codes=(asset.code,))
    assert after_rotation.url == first.url
    assert _status(db, asset.code, first.signature, rotated) is LabelStatus.VALID
    # A new asset printed after the rotation is signed with the new key.
    other = make_asset(db, admin)
    (fresh,) = _print(db, admin, rotated, codes=(other.code,))
    assert fresh.key_id == "2"
    with transaction(db) as session:
        (row,) = label_history(session, asset.code)
    assert row["printed_count"] == 3 and row["revoked_at"] is None


def test_revocation_voids_the_label_and_the_next_print_is_a_new_edition(
    db: Engine, admin: Actor, keys: LabelKeys
) -> None:
    asset = make_asset(db, admin)
    (label,) = _print(db, admin, keys, codes=(asset.code,))
    with transaction(db) as session:
        view = revoke_label(session, asset.code, admin, kind="stolen", reason="标签被撕走")
    assert view["revoke_kind"] == "stolen" and view["revoked_by"] == admin.name
    assert _status(db, asset.code, label.signature, keys) is LabelStatus.REVOKED
    (replacement,) = _print(db, admin, keys, codes=(asset.code,))
    assert replacement.edition == 2 and replacement.url != label.url
    assert _status(db, asset.code, replacement.signature, keys) is LabelStatus.VALID
    assert _status(db, asset.code, label.signature, keys) is LabelStatus.REVOKED
    with transaction(db) as session:
        audit = session.execute(
            text("SELECT action, entity_id, reason, details FROM audit_log WHERE entity = 'label'")
        ).one()
        with pytest.raises(NotFound, match="no edition 7"):
            revoke_label(session, asset.code, admin, kind="other", reason="x", edition=7)
        with pytest.raises(Conflict, match="already revoked"):
            revoke_label(session, asset.code, admin, kind="other", reason="again", edition=1)
        with pytest.raises(InvalidInput):
            revoke_label(session, asset.code, admin, kind="key_retired", reason="not by hand")
    assert audit.action == "revoke" and audit.entity_id == f"{asset.code}#1"
    assert audit.reason == "标签被撕走" and audit.details == {"kind": "stolen"}


def test_label_status_verdicts(db: Engine, admin: Actor, keys: LabelKeys, tmp_path: Path) -> None:
    asset = make_asset(db, admin)
    (label,) = _print(db, admin, keys, codes=(asset.code,))
    assert _status(db, asset.code, label.signature, keys) is LabelStatus.VALID
    assert _status(db, asset.code, None, keys) is LabelStatus.UNSIGNED
    assert _status(db, asset.code, "1.AAAAAAAAAAAA", keys) is LabelStatus.FAILED
    # A label made with another deployment's key (a counterfeit) fails.
    foreign = load_keys(tmp_path / "elsewhere")
    assert _status(db, asset.code, _sig(foreign, asset.code), keys) is LabelStatus.FAILED
    with transaction(db) as session:
        check = label_status(session, asset.code, label.signature, keys=keys)
        assert check.words == "标签有效" and check.edition == 1 and check.key_id == "1"
        with pytest.raises(NotFound):
            label_status(session, "44031001180099991", None, keys=keys)


def _sig(keys: LabelKeys, code: str) -> str:
    from qr.signing import sign

    return sign(code, keys)


def test_decommissioned_assets_get_no_new_labels(db: Engine, admin: Actor, keys: LabelKeys) -> None:
    kept = make_asset(db, admin)
    gone = make_asset(db, admin)
    (label,) = _print(db, admin, keys, codes=(gone.code,))
    with transaction(db) as session:
        asset_service.decommission_asset(session, gone.code, Decommission(version=1, reason="拆除"), admin)
    with pytest.raises(Conflict, match="已注销") as refused:
        _print(db, admin, keys, codes=(kept.code, gone.code))
    assert gone.code in refused.value.details["codes"]
    # Chosen by criteria, the decommissioned asset is simply left out.
    assert [x.asset.code for x in _print(db, admin, keys, class_codes=("0118",))] == [kept.code]
    with transaction(db) as session:
        check = label_status(session, gone.code, label.signature, keys=keys)
    assert check.status is LabelStatus.DECOMMISSIONED and check.words == "已注销"
    assert _status(db, gone.code, None, keys) is LabelStatus.DECOMMISSIONED


def test_a_unit_prints_only_its_own_assets(db: Engine, admin: Actor, keys: LabelKeys) -> None:
    mine = make_unit(db, "坪山供水公司", admin, phone="0755-11112222")
    theirs = make_unit(db, "坪山燃气公司", admin)
    own = make_asset(db, admin, owner_id=mine.id)
    foreign = make_asset(db, admin, owner_id=theirs.id)
    unit_actor = Actor(name="token:water", unit_id=mine.id)
    labels = _print(db, unit_actor, keys, class_codes=("0118",))
    assert [x.asset.code for x in labels] == [own.code]
    assert labels[0].asset.owner_name == "坪山供水公司" and labels[0].asset.phone == "0755-11112222"
    with pytest.raises(Forbidden, match="owner or maintainer"):
        _print(db, unit_actor, keys, codes=(own.code, foreign.code))
    with pytest.raises(Forbidden):
        _print(db, Actor(name="token:reader"), keys, codes=(own.code,))
    with transaction(db) as session, pytest.raises(Forbidden):
        revoke_label(session, foreign.code, unit_actor, kind="damaged", reason="x")


def test_selection_by_zone_batchless_codes_and_errors(db: Engine, admin: Actor, keys: LabelKeys) -> None:
    lon, lat = PINGSHAN
    inside = make_asset(db, admin, geometry=point(lon, lat))
    outside = make_asset(db, admin, geometry=point(lon + 0.02, lat))
    with transaction(db) as session:
        zones.save_zone(
            session,
            admin,
            zones.ZoneInput(
                level="community",
                name="六联社区",
                geometry=box(lon - 0.005, lat - 0.005, lon + 0.005, lat + 0.005),
            ),
            area=ServiceArea.from_settings(),
            county=COUNTY,
        )
    assert [x.asset.code for x in _print(db, admin, keys, zone="六联社区")] == [inside.code]
    with pytest.raises(NotFound, match="no current zone"):
        _print(db, admin, keys, zone="不存在社区")
    with pytest.raises(InvalidInput, match="choose assets"):
        _print(db, admin, keys)
    with pytest.raises(NotFound, match="not registered"):
        _print(db, admin, keys, codes=(outside.code, "44031001189999999"))
    with pytest.raises(InvalidInput, match="code #2"):
        _print(db, admin, keys, codes=(outside.code, "4403100118"))


def test_code_files_one_per_line_or_an_export_csv() -> None:
    from registry.labels import read_code_list

    assert read_code_list("\ufeff44031001180000011\n\n# a comment\n440310-0118-000002-0\n") == [
        "44031001180000011",
        "440310-0118-000002-0",
    ]
    exported = 'id,code,class\n1,44031001180000011,路灯\n2,"440310-0118-000002-0",路灯\n'
    assert read_code_list(exported) == ["44031001180000011", "440310-0118-000002-0"]
    with pytest.raises(InvalidInput, match="line 3 has no code"):
        read_code_list("code,name\n44031001180000011,a\n,b\n")
