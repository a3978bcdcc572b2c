"""The same checks on every asset code, for a third of their cost.

Revision ID: 0006_cheaper_code_checks
Revises: 0005_sortable_spatial_indexes
Create Date: 2026-11-22

Every new asset passes three checks on its code (17 digits; the first 16 are county, class and
serial; the 17th is their ISO 7064 MOD 11,10 check digit). Together they cost about 2.3 s of a
million-asset load, more than any index but the spatial ones (docs/benchmarks.md). What they check
is unchanged; how:

* **The check digit** (``assets_check_digit``) was computed from the code's characters, one
  ``substr`` per digit. It is now computed from the columns the code must match (the parts check
  makes them the same digits): county, class and serial as integers, two digits at a time through
  a table of the MOD 11,10 step (11 states x 100 digit pairs). 0.45 s a million rows instead of 1.4.
* **17 digits** (``assets_code_digits``): ``ltrim`` of the digits leaves nothing, instead of a
  regular expression. 0.39 s a million rows instead of 0.75.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic.script import ScriptDirectory

from alembic import context, op

revision: str = "0006_cheaper_code_checks"
down_revision: str | None = "0005_sortable_spatial_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The code's 16 digits as eight pairs, from the columns it is made of (county 6, class 4, serial 6).
_PAIRS = (
    "county_code::int / 10000",
    "county_code::int / 100 % 100",
    "county_code::int % 100",
    "class_code::int / 100",
    "class_code::int % 100",
    "serial / 10000",
    "serial / 100 % 100",
    "serial % 100",
)


def _mod11_10_step(state: int, digit: int) -> int:
    return (2 * ((state + digit - 1) % 10 + 1)) % 11


def _check_digit_function() -> str:
    # steps[100 * state + pair]: the state after the two digits of ``pair``, for each state 0-10.
    steps = [
        _mod11_10_step(_mod11_10_step(state, pair // 10), pair % 10)
        for state in range(11)
        for pair in range(100)
    ]
    table = "('[0:1099]={" + ",".join(map(str, steps)) + "}'::int[])"
    state = "10"
    for pair in _PAIRS:
        state = f"{table}[100 * {state} + {pair}]"
    # A pair out of range (a negative serial, which assets_serial_range refuses anyway) reads NULL
    # from the table: coalesce keeps the check from passing on NULL.
    return f"""
CREATE FUNCTION smartcode_check_digit_matches(county_code text, class_code text, serial int, code text)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce((11 - {state}) % 10 = ascii(substr(code, 17, 1)) - 48, false)
$$
"""


def upgrade() -> None:
    op.execute(_check_digit_function())
    op.execute(
        """
        ALTER TABLE assets
          DROP CONSTRAINT assets_check_digit,
          ADD CONSTRAINT assets_check_digit
            CHECK (smartcode_check_digit_matches(county_code, class_code, serial, code)),
          DROP CONSTRAINT assets_code_digits,
          ADD CONSTRAINT assets_code_digits CHECK (octet_length(code) = 17 AND ltrim(code, '0123456789') = '')
        """
    )
    op.execute("DROP FUNCTION smartcode_check_digit_ok(text)")


def downgrade() -> None:
    previous = ScriptDirectory.from_config(context.config).get_revision("0004_current_row_versions").module
    op.execute(previous._check_digit_function())
    op.execute(
        """
        ALTER TABLE assets
          DROP CONSTRAINT assets_check_digit,
          ADD CONSTRAINT assets_check_digit CHECK (smartcode_check_digit_ok(code)),
          DROP CONSTRAINT assets_code_digits,
          ADD CONSTRAINT assets_code_digits CHECK (code ~ '^[0-9]{17}$')
        """
    )
    op.execute("DROP FUNCTION smartcode_check_digit_matches(text, text, int, text)")
