"""Complaints keep the photo link an Open311 client posted (``media_url``).

Revision ID: 0026_complaint_media_url
Revises: 0027_history_dispute_link
Create Date: 2026-12-06

GeoReport v2 sends a photo as ``media_url``: a link to a picture the client hosts. The registry stores
the link as it arrived and never fetches it. The column is set once, on insert: the complaint guard
(0013, 0017, 0024) compares every column but the status ones, so a later edit of the link is refused
like any other edit, with nothing to change there. The check repeats the service's rules (http or
https, at most 2000 characters, no spaces or control characters) so no other writer stores a
``javascript:`` link that a staff page might render.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0026_complaint_media_url"
down_revision: str | None = "0027_history_dispute_link"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("complaints", sa.Column("media_url", sa.Text))
    op.create_check_constraint(
        "complaints_media_url_http",
        "complaints",
        "media_url IS NULL OR (char_length(media_url) <= 2000 AND media_url ~* '^https?://[^\\s\\x01-\\x1f\\x7f]+$')",
    )


def downgrade() -> None:
    op.drop_constraint("complaints_media_url_http", "complaints", type_="check")
    op.drop_column("complaints", "media_url")
