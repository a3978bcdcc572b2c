"""Baseline for the benchmark: the leanest FastAPI + psycopg lookup of an asset and its owner by code.

No validation, no explanation, no log: what the resolve endpoint's own work is measured against.
Run: ``SMARTCODE_BENCH_CONNINFO=... uvicorn bench.resolve.bare_app:app``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from fastapi import FastAPI, Response
from psycopg_pool import AsyncConnectionPool

_SQL = """
SELECT a.code, a.class_code, a.state, o.id, o.name, o.phone
FROM assets a LEFT JOIN units o ON o.id = a.owner_id WHERE a.code = %s
"""

pool = AsyncConnectionPool(
    os.environ["SMARTCODE_BENCH_CONNINFO"],
    min_size=2,
    max_size=8,
    open=False,
    kwargs={"autocommit": True, "prepare_threshold": 0},
)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    """Open and close the pool with the app."""
    await pool.open(wait=True)
    yield
    await pool.close()


app = FastAPI(lifespan=lifespan)


@app.get("/c/{code}")
async def lookup(code: str) -> Response:
    """The asset and its owner, or 404."""
    async with pool.connection() as conn:
        cur = await conn.execute(_SQL, (code,), prepare=True)
        row = await cur.fetchone()
    if row is None:
        return Response(b'{"error":"not found"}', status_code=404, media_type="application/json")
    body = {
        "code": row[0],
        "class": row[1],
        "state": row[2],
        "owner": {"id": row[3], "name": row[4], "phone": row[5]},
    }
    return Response(orjson.dumps(body), media_type="application/json")
