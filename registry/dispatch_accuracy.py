"""Dispatch accuracy per unit (分拨准确性): complaints routed to a unit, returned, disputed, upheld.

The pilot is judged on whether a case goes to the right unit the first time. Per unit, over the
complaints received in a period:

* ``routed``: complaints whose resolution named the unit (as owner or maintainer);
* ``returned``: of those, returned by the unit as not its own (退件);
* ``disputed``: disputes the unit opened in the period (about complaints, assets or rules);
* ``upheld``: of those, upheld: the registry was wrong about the unit and has been corrected;
* ``upheld_complaints``: returned complaints whose dispute was upheld: the dispatch was wrong;
* ``accuracy``: the share of routed complaints that were not wrongly dispatched
  (``1 - upheld_complaints / routed``); ``return_rate``: ``returned / routed``. A return whose dispute
  was rejected counts against the return, not the dispatch: the registry was right.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

# Complaints per routed unit, and the disputes each unit opened, over [since, until).
_SQL = """
WITH routed AS (
    SELECT DISTINCT c.id, r.unit_id, c.status, c.status_unit_id
    FROM complaints c
    CROSS JOIN LATERAL (VALUES (c.owner_id), (c.maintainer_id)) AS r(unit_id)
    WHERE r.unit_id IS NOT NULL AND c.received_at >= :since AND c.received_at < :until
),
per_unit AS (
    SELECT unit_id,
           count(*) AS routed,
           count(*) FILTER (WHERE status = 'returned' AND status_unit_id = unit_id) AS returned,
           count(*) FILTER (
               WHERE EXISTS (
                   SELECT FROM disputes d
                   WHERE d.complaint_id = routed.id AND d.unit_id = routed.unit_id AND d.state = 'upheld'
               )
           ) AS upheld_complaints
    FROM routed
    GROUP BY unit_id
),
disputed AS (
    SELECT unit_id, count(*) AS disputed, count(*) FILTER (WHERE state = 'upheld') AS upheld,
           count(*) FILTER (WHERE state IN ('open', 'under_review')) AS pending
    FROM disputes
    WHERE opened_at >= :since AND opened_at < :until
    GROUP BY unit_id
)
SELECT u.id, u.name, coalesce(p.routed, 0), coalesce(p.returned, 0), coalesce(p.upheld_complaints, 0),
       coalesce(d.disputed, 0), coalesce(d.upheld, 0), coalesce(d.pending, 0)
FROM per_unit p
FULL JOIN disputed d ON d.unit_id = p.unit_id
JOIN units u ON u.id = coalesce(p.unit_id, d.unit_id)
WHERE CAST(:unit AS bigint) IS NULL OR u.id = CAST(:unit AS bigint)
ORDER BY coalesce(p.routed, 0) DESC, u.name
"""


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def dispatch_accuracy(
    session: Session, *, since: dt.datetime, until: dt.datetime, unit_id: int | None = None
) -> dict[str, Any]:
    """Per unit: complaints routed, returned, disputes opened and upheld, accuracy; and the totals."""
    rows = session.execute(text(_SQL), {"since": since, "until": until, "unit": unit_id}).all()
    units = []
    for uid, name, routed, returned, upheld_complaints, disputed, upheld, pending in rows:
        units.append(
            {
                "unit": {"id": uid, "name": name},
                "routed": routed,
                "returned": returned,
                "upheld_complaints": upheld_complaints,
                "disputed": disputed,
                "upheld": upheld,
                "pending": pending,
                "return_rate": _ratio(returned, routed),
                "accuracy": None if not routed else round(1 - upheld_complaints / routed, 4),
            }
        )
    total_routed = sum(u["routed"] for u in units)
    total_wrong = sum(u["upheld_complaints"] for u in units)
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "units": units,
        "totals": {
            "routed": total_routed,
            "returned": sum(u["returned"] for u in units),
            "disputed": sum(u["disputed"] for u in units),
            "upheld": sum(u["upheld"] for u in units),
            "accuracy": None if not total_routed else round(1 - total_wrong / total_routed, 4),
        },
    }
