"""One folding of names, one class lookup: the API, the rules and the importers agree on what a name means."""

from __future__ import annotations

from sqlalchemy import Engine

from importers.profiles import DEFAULT_PROFILE, load_profile
from importers.validate import ClassTable
from registry.classes import ClassNames, find_class
from registry.db import transaction
from registry.names import fold

SPELLINGS = ["路灯", "路 灯", " 路灯 ", "路\u3000灯", "0118", "０１１８"]


def test_fold_ignores_width_and_blanks() -> None:
    assert {fold(s) for s in SPELLINGS[:4]} == {"路灯"}
    assert fold("０１１８") == "0118"


def test_every_class_lookup_reads_a_name_the_same_way(db: Engine) -> None:
    with transaction(db) as session:
        for given in SPELLINGS:
            found = find_class(session, given)
            assert found is not None and found.code == "0118", given
        table = ClassTable.load(session, load_profile(DEFAULT_PROFILE))
        for given in SPELLINGS:
            assert table.resolve(None, given) == ("0118", None), given
        assert find_class(session, "no such class") is None


def test_a_retired_class_never_shadows_a_live_one_of_the_same_name() -> None:
    names = ClassNames.from_rows([("9001", "井盖", None, False), ("0114", "井 盖", ["窨井盖"], True)])
    assert names.code_for("井盖") == "0114"
    assert names.code_for("窨 井 盖") == "0114"
    assert names.code_for("9001") == "9001"
