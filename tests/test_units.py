"""Units: matching by name, alias and credit code; versioned updates; audit."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from common.errors import Conflict, StaleVersion
from registry import units
from registry.db import Actor, transaction
from registry.schemas import UnitUpdate
from tests.helpers import make_unit


def test_find_by_name_alias_and_credit_code(db: Engine, admin: Actor) -> None:
    water = make_unit(
        db,
        "深圳市水务（集团）有限公司",
        admin,
        kind="utility",
        aliases=["深水集团"],
        credit_code="91110000600037341L",
    )
    with transaction(db) as session:
        for query in (
            "深圳市水务（集团）有限公司",
            "深圳市水务(集团)有限公司",
            " 深水集团 ",
            "91110000600037341l",
        ):
            found = units.find_unit(session, query)
            assert found is not None and found.id == water.id, query
        assert units.find_unit(session, "深圳市燃气集团") is None


def test_ensure_unit_creates_unverified_once(db: Engine, admin: Actor) -> None:
    with transaction(db) as session:
        created, was_new = units.ensure_unit(session, "某物业服务有限公司", admin, "440310")
        again, second = units.ensure_unit(session, "某物业服务有限公司", admin, "440310")
    assert was_new and not second and created.id == again.id and not created.verified


def test_update_is_versioned_and_audited(db: Engine, admin: Actor) -> None:
    unit = make_unit(db, "坪山街道办事处", admin, kind="street_office")
    with transaction(db) as session:
        units.update_unit(
            session, unit.id, UnitUpdate(version=1, phone="0755-28308000", reason="新号码"), admin
        )
    with pytest.raises(StaleVersion), transaction(db) as session:
        units.update_unit(session, unit.id, UnitUpdate(version=1, phone="0755-1", reason="新号码"), admin)
    with db.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT action, reason, details->'after'->>'phone' FROM audit_log"
                " WHERE entity = 'unit' ORDER BY id"
            )
        ).all()
    assert [tuple(r) for r in rows] == [("create", None, None), ("update", "新号码", "0755-28308000")]


def test_duplicate_names_conflict(db: Engine, admin: Actor) -> None:
    make_unit(db, "坪山街道办事处", admin)
    with pytest.raises(Conflict):
        make_unit(db, "坪山街道办事处", admin)
