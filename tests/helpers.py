"""Small builders shared by tests: units and assets in Pingshan."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from gis.area import ServiceArea
from registry import assets, units
from registry.db import Actor, transaction
from registry.models import Asset, Unit
from registry.schemas import AssetCreate, UnitCreate

# A street corner in 坪山中心区 (WGS84).
PINGSHAN = (114.3466, 22.6953)
COUNTY = "440310"


def point(lon: float = PINGSHAN[0], lat: float = PINGSHAN[1]) -> dict[str, Any]:
    """A GeoJSON point."""
    return {"type": "Point", "coordinates": [lon, lat]}


def make_unit(engine: Engine, name: str, actor: Actor, **fields: Any) -> Unit:
    """Register a unit in its own transaction."""
    with transaction(engine) as session:
        return units.create_unit(session, UnitCreate(name=name, **fields), actor, COUNTY)


def make_asset(engine: Engine, actor: Actor, class_code: str = "0118", **fields: Any) -> Asset:
    """Register an asset in its own transaction."""
    fields.setdefault("geometry", point())
    with transaction(engine) as session:
        return assets.register_asset(
            session, AssetCreate(class_code=class_code, **fields), actor, ServiceArea.from_settings(), COUNTY
        )
