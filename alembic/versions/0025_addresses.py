"""The standard address register (标准地址库): address ids with their text and point, per county.

Revision ID: 0025_addresses
Revises: 0024_complaint_guard_generated
Create Date: 2026-12-06

GeoReport v2's ``address_id`` is "the internal address ID used by a jurisdiction's master address
repository". In a Chinese city that is the standard address register (门牌 / 楼栋 ids with a point),
shared by 数字城管 and the 12345 case system. ``smartcode addresses import`` loads it from a CSV
(``registry.addresses``); an Open311 post naming an ``address_id`` is placed at its point.

The id is kept as the jurisdiction writes it (text, unique per county). Only ``geom`` (WGS84) is
stored: an address is looked up by its id and its point is then resolved like any posted lon/lat,
so no metric twin is needed; the point has a GiST index like the complaints' points.
``batch`` and ``loaded_by`` say which load wrote the row (the audit log has the load's summary).

No grant: ``smartcode_app`` gets SELECT, INSERT, UPDATE, DELETE on new tables (migration 0011's
default privileges); the register is reference data that a re-import replaces, so the service role
needs all four.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from geoalchemy2 import Geometry

from alembic import op

revision: str = "0025_addresses"
down_revision: str | None = "0024_complaint_guard_generated"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "addresses",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("county_code", sa.String(6), nullable=False),
        sa.Column("address_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("geom", Geometry("POINT", srid=4326, spatial_index=False), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.Column("loaded_by", sa.Text, nullable=False),
        sa.Column("batch", sa.Text, nullable=False),
        sa.UniqueConstraint("county_code", "address_id", name="addresses_county_id_key"),
        sa.CheckConstraint("address_id <> '' AND name <> ''", name="addresses_not_blank"),
    )
    op.execute("CREATE INDEX addresses_geom_gist ON addresses USING gist (geom)")


def downgrade() -> None:
    op.drop_table("addresses")
