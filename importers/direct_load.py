"""The first inventory of an empty registry, written straight into ``assets`` while the file is read.

The usual path (:mod:`importers.merge`) stages the whole file and plans it against the registry
before writing anything, because a row's verdict may depend on any other row or registered asset.
In an empty registry most of those questions have no subject: nothing can be matched, updated,
adopted or owned by someone else. What is left is what the file says about itself, and that is
known chunk by chunk: a code or source id repeating an earlier row (rejected, as in the plan), and
the serials of the rows without a code. So each validated chunk is turned into finished asset rows
(codes and check digits allocated here, geometry as EWKB) and COPYed into ``assets`` on the
background writer while the next chunk is parsed. Before the first chunk the empty tables are
truncated, so that the COPY writes frozen rows, and the secondary indexes are dropped, to be built
again at the end (:mod:`importers.deferred_indexes`; the registry is empty, so nobody is kept from
anything by the lock that takes).

Two things differ from the planned path, both within its guarantees: code-less rows are numbered
in file order as they come, so an explicit code further down the file may be numbered below them
instead of above; and a later explicit code that falls into a range already handed out in this
batch cannot be placed at all, nor can a repeated source id be confirmed once its 64-bit hash has
matched a different one. In those cases :class:`RestartWholeFile` is raised and the batch starts
again on the planned path, in a new transaction.
"""

from __future__ import annotations

import binascii
import datetime as dt
import io
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pa_csv
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session

from importers.deferred_indexes import ASSET_TABLES
from importers.merge import reject_field
from importers.source import RowProblem
from importers.validate import ValidChunk
from registry.codes import SERIAL_MAX, check_digits
from registry.serials import allocate_serials, reserve_serial

# A repeated source id is confirmed against the database at the end; past this many the file is
# messy enough for the planned path, which handles any number of them in one pass.
_MAX_SUSPECTS = 10_000
_MERGE_RUNS = 8
# Serials are taken from the database in blocks this big (what is left over goes back at the end):
# the connection is busy with the previous chunk's COPY most of the time, and asking it for every
# chunk would make the reader wait for the writer.
_SERIAL_BLOCK = 262_144
# Hex EWKB of a point: little-endian, type Point with an SRID, SRID 4326; then x and y.
_POINT_HEADER = np.frombuffer(bytes.fromhex("0101000020e6100000"), dtype=np.uint8)

_ASSET_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("code", pa.string()),
    ("county_code", pa.string()),
    ("class_code", pa.string()),
    ("serial", pa.int64()),
    ("geom", pa.string()),
    ("owner_id", pa.int64()),
    ("maintainer_id", pa.int64()),
    ("supervisor_id", pa.int64()),
    ("state", pa.string()),
    ("in_use", pa.bool_()),
    ("decommissioned_at", pa.string()),
    ("decommission_reason", pa.string()),
    ("grid_code", pa.string()),
    ("data_source", pa.string()),
    ("note", pa.string()),
    ("installed_on", pa.date32()),
    ("attributes", pa.string()),
    ("source_id", pa.string()),
    ("batch_id", pa.int64()),
)
# FREEZE: the table was truncated in this transaction (start_empty).
_COPY = f"COPY assets ({', '.join(n for n, _ in _ASSET_COLUMNS)}) FROM STDIN (FORMAT csv, FREEZE)"
_CSV_OPTIONS = pa_csv.WriteOptions(include_header=False)


class RestartWholeFile(Exception):
    """The direct path cannot place a row exactly as the planned path would: start over on that path."""


def registry_is_empty(session: Session) -> bool:
    """True when no asset (not even a decommissioned one), past version or responsibility period exists."""
    return not session.execute(
        text(
            "SELECT EXISTS (SELECT 1 FROM assets) OR EXISTS (SELECT 1 FROM asset_history) "
            "OR EXISTS (SELECT 1 FROM asset_responsibility)"
        )
    ).scalar_one()


def start_empty(session: Session) -> None:
    """TRUNCATE the empty asset tables (the caller holds their locks and has seen them empty).

    Nothing is lost, and the table is then new in this transaction: ``COPY ... FREEZE`` may write
    the rows already frozen, which spares the server per-row visibility work now (about 1.3 s a
    million rows) and a rewrite of every page later (hint bits on first read, the freezing vacuum).
    """
    session.execute(text(f"TRUNCATE {ASSET_TABLES}"))


class FirstRows:
    """The first file row of every int64 key seen so far: sorted runs, merged now and then.

    16 bytes per distinct key, so a million-row file costs 16 MB here, not the keys themselves.
    """

    def __init__(self) -> None:
        self._keys: list[npt.NDArray[np.int64]] = []
        self._rows: list[npt.NDArray[np.int64]] = []

    def first_rows(self, keys: npt.NDArray[np.int64], rows: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """For each key, the row it first appeared at (earlier chunk or earlier in this one), else -1;
        then remember this chunk's new keys."""
        out = np.full(len(keys), -1, dtype=np.int64)
        if len(keys) == 0:
            return out
        for run_keys, run_rows in zip(self._keys, self._rows, strict=True):
            at = np.minimum(np.searchsorted(run_keys, keys), len(run_keys) - 1)
            hit = run_keys[at] == keys
            out[hit] = run_rows[at[hit]]
        # Within the chunk: every occurrence after a key's first one points at that first row.
        unique, first_index, inverse = np.unique(keys, return_index=True, return_inverse=True)
        first_in_chunk = rows[first_index][inverse]
        repeated = (out < 0) & (first_in_chunk != rows)
        out[repeated] = first_in_chunk[repeated]
        new = out[first_index] < 0
        if new.any():
            self._keys.append(unique[new])
            self._rows.append(rows[first_index][new])
            if len(self._keys) > _MERGE_RUNS:
                merged_keys, merged_rows = np.concatenate(self._keys), np.concatenate(self._rows)
                order = np.argsort(merged_keys, kind="stable")
                self._keys, self._rows = [merged_keys[order]], [merged_rows[order]]
        return out


@dataclass
class _Serials:
    """One class's serials in this batch: the block taken from the database and what is used of it."""

    stop: int  # the block ends before this serial (the counter in code_serials, while untouched)
    next: int  # the next serial to hand out
    top: int = -1  # the highest serial used, handed out or explicit
    handed: list[range] = field(default_factory=list)


@dataclass
class DirectLoad:
    """State of one direct load: keys seen, serial ranges handed out, repeated ids to confirm."""

    county: str
    batch_id: int
    timezone: str
    reason: str  # decommission reason of rows marked out of use
    now: dt.datetime
    fields: dict[str, str]
    codes: FirstRows = field(default_factory=FirstRows)
    sources: FirstRows = field(default_factory=FirstRows)
    serials: dict[str, _Serials] = field(default_factory=dict)
    suspects: set[str] = field(default_factory=set)
    created: int = 0

    def prepare(self, session: Session, chunk: ValidChunk) -> tuple[pa.Table | None, list[RowProblem]]:
        """The chunk's rows as finished asset rows (None when none is left), and the rows rejected
        for repeating an earlier code or source id."""
        columns = chunk.columns
        n = len(chunk)
        if n == 0:
            return None, []
        rows = np.asarray(columns["row"], dtype=np.int64)
        code = np.asarray(columns["code"], dtype=object)
        source = np.asarray(columns["source_id"], dtype=object)
        class_code = np.asarray(columns["class_code"], dtype=object)
        has_code = np.array([c is not None for c in code.tolist()], dtype=bool)
        has_source = np.array([s is not None for s in source.tolist()], dtype=bool)

        first_code = np.full(n, -1, dtype=np.int64)
        if has_code.any():
            keys = np.array([int(c) for c in code[has_code].tolist()], dtype=np.int64)
            first_code[has_code] = self.codes.first_rows(keys, rows[has_code])
        first_source = np.full(n, -1, dtype=np.int64)
        if has_source.any():
            keys = np.fromiter(
                map(hash, source[has_source].tolist()), dtype=np.int64, count=int(has_source.sum())
            )
            first_source[has_source] = self.sources.first_rows(keys, rows[has_source])

        problems: list[RowProblem] = []
        rejected = (first_code >= 0) | (first_source >= 0)
        for i in np.flatnonzero(rejected).tolist():
            if first_code[i] >= 0:
                reason = f"code {code[i]} appears again: first at row {first_code[i]}"
            else:
                key = str(source[i])
                self.suspects.add(key)
                if key.startswith("geom:"):
                    reason = (
                        f"the same class at the same position as row {first_source[i]}, "
                        "and neither has an identifier"
                    )
                else:
                    reason = f"source id {key} appears again: first at row {first_source[i]}"
            problems.append(
                RowProblem(int(rows[i]), reject_field(reason, self.fields), reason, source[i] or code[i])
            )
        if len(self.suspects) > _MAX_SUSPECTS:
            raise RestartWholeFile(f"more than {_MAX_SUSPECTS} repeated source ids")

        keep = ~rejected
        if not keep.any():
            return None, problems
        serial = np.array(columns["serial"], dtype=object)
        final_code = code.copy()
        self._place_explicit(session, class_code[keep & has_code], serial[keep & has_code])
        for cls in sorted(set(class_code[keep & ~has_code].tolist())):
            members = np.flatnonzero(keep & ~has_code & (class_code == cls))
            serials = self._hand_out(session, cls, len(members))
            numbers = np.arange(serials.start, serials.stop, dtype=np.int64)
            digits = check_digits(self.county + cls, numbers).tolist()
            prefix = self.county + cls
            for i, number, digit in zip(members.tolist(), numbers.tolist(), digits, strict=True):
                serial[i] = number
                final_code[i] = f"{prefix}{number:06d}{digit}"
        table = self._asset_rows(columns, keep, final_code, serial)
        self.created += table.num_rows
        return table, problems

    def allocated(self) -> dict[str, int]:
        """Serials handed to code-less rows, per class."""
        return {cls: sum(map(len, block.handed)) for cls, block in sorted(self.serials.items())}

    def _hand_out(self, session: Session, cls: str, count: int) -> range:
        """``count`` fresh serials of ``cls``, from the batch's block (a new block when it runs out)."""
        block = self.serials.get(cls)
        if block is None or block.next + count > block.stop:
            # A block never reaches past the last serial: a class nearly full still gets what it needs.
            current = session.execute(
                text(
                    "SELECT next_serial FROM code_serials WHERE county_code = :county AND class_code = :cls"
                ),
                {"county": self.county, "cls": cls},
            ).scalar()
            room = SERIAL_MAX + 1 - int(current if current is not None else 1)
            taken = allocate_serials(session, self.county, cls, max(count, min(_SERIAL_BLOCK, room)))
            if block is None:
                block = self.serials[cls] = _Serials(stop=taken.stop, next=taken.start)
            else:
                block.stop, block.next = taken.stop, taken.start
        handed = range(block.next, block.next + count)
        block.next = handed.stop
        block.top = max(block.top, handed.stop - 1)
        block.handed.append(handed)
        return handed

    def _place_explicit(self, session: Session, classes: npt.NDArray[Any], serials: npt.NDArray[Any]) -> None:
        """Account for the explicit serials: code-less rows are numbered above them from here on.

        One inside a range handed out earlier cannot be placed on this path (RestartWholeFile).
        """
        top: dict[str, int] = {}
        for cls, number in zip(classes.tolist(), serials.tolist(), strict=True):
            block = self.serials.get(cls)
            if block is not None and any(int(number) in handed for handed in block.handed):
                raise RestartWholeFile(f"explicit serial {number} of class {cls} was already allocated")
            top[cls] = max(top.get(cls, -1), int(number))
        for cls, number in sorted(top.items()):
            block = self.serials.get(cls)
            if block is not None and number < block.stop:
                # Inside the batch's own block: the database needs no telling, only the numbering.
                block.next = max(block.next, number + 1)
                block.top = max(block.top, number)
            else:
                reserve_serial(session, self.county, cls, number)
                if block is not None:
                    block.next = block.stop  # the counter moved: take a new block next time

    def give_back(self, session: Session) -> None:
        """Return each block's unused serials: the counter goes back to just above the last one used.

        Safe because allocation locks the class's counter row until commit: nobody else took any.
        """
        for cls, block in sorted(self.serials.items()):
            session.execute(
                text(
                    "UPDATE code_serials SET next_serial = :top + 1 WHERE county_code = :county "
                    "AND class_code = :cls AND next_serial = :stop AND :top + 1 < :stop"
                ),
                {"top": block.top, "county": self.county, "cls": cls, "stop": block.stop},
            )

    def _asset_rows(
        self,
        columns: dict[str, Any],
        keep: npt.NDArray[np.bool_],
        code: npt.NDArray[Any],
        serial: npt.NDArray[Any],
    ) -> pa.Table:
        n = int(keep.sum())

        def kept(name: str) -> Any:
            values = columns[name]
            return None if values is None else np.asarray(values, dtype=object)[keep]

        in_use = kept("in_use")
        in_use = np.array([True if v is None else bool(v) for v in in_use.tolist()], dtype=bool)
        state = kept("state")
        state = np.array(["完好" if v is None else v for v in state.tolist()], dtype=object)
        attributes = kept("attributes")
        attributes = np.array(["{}" if v is None else v for v in attributes.tolist()], dtype=object)
        decommissioned_at = np.full(n, None, dtype=object)
        decommission_reason = np.full(n, None, dtype=object)
        if not in_use.all():
            zone = ZoneInfo(self.timezone)
            changed = kept("changed_on")
            for i in np.flatnonzero(~in_use).tolist():
                day = changed[i] if changed is not None else None
                moment = dt.datetime.combine(day, dt.time(), zone) if day is not None else self.now
                decommissioned_at[i] = moment.isoformat()
                decommission_reason[i] = self.reason
        values: dict[str, Any] = {
            "code": code[keep],
            "county_code": np.full(n, self.county, dtype=object),
            "class_code": kept("class_code"),
            "serial": serial[keep],
            "geom": _ewkb(kept("lon"), kept("lat"), kept("wkb"), n),
            "owner_id": kept("owner_id"),
            "maintainer_id": kept("maintainer_id"),
            "supervisor_id": kept("supervisor_id"),
            "state": state,
            "in_use": in_use,
            "decommissioned_at": decommissioned_at,
            "decommission_reason": decommission_reason,
            "grid_code": kept("grid_code"),
            "data_source": kept("data_source"),
            "note": kept("note"),
            "installed_on": kept("installed_on"),
            "attributes": attributes,
            "source_id": kept("source_id"),
            "batch_id": np.full(n, self.batch_id, dtype=np.int64),
        }
        arrays = [_arrow(values[name], kind, n) for name, kind in _ASSET_COLUMNS]
        return pa.Table.from_arrays(arrays, names=[name for name, _ in _ASSET_COLUMNS])

    def confirm_repeats(self, session: Session) -> None:
        """Every row rejected as a repeated source id repeats one that was written: else a 64-bit
        hash matched two different ids, and the batch starts again on the planned path."""
        if not self.suspects:
            return
        found = session.execute(
            text("SELECT count(DISTINCT source_id) FROM assets WHERE source_id = ANY(CAST(:k AS text[]))"),
            {"k": sorted(self.suspects)},
        ).scalar_one()
        if found != len(self.suspects):
            raise RestartWholeFile("a repeated source id was a hash collision")


def _arrow(values: Any, kind: pa.DataType, n: int) -> pa.Array:
    """One column as Arrow (None: all NULL; None and NaN items become NULL)."""
    if values is None:
        return pa.nulls(n, kind)
    if isinstance(values, pa.Array):
        return values
    return pa.array(values, type=kind, from_pandas=True)


def _ewkb(
    lon: npt.NDArray[Any] | None, lat: npt.NDArray[Any] | None, wkb: npt.NDArray[Any] | None, n: int
) -> npt.NDArray[Any] | pa.Array:
    """Hex EWKB (SRID 4326) of each row, from lon/lat (points) or hex WKB (other shapes)."""
    if wkb is None and lon is not None and lat is not None:
        return _point_ewkb(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
    shapes = np.full(n, None, dtype=object)
    if wkb is not None:
        present = np.array([w is not None for w in wkb.tolist()], dtype=bool)
        shapes[present] = shapely.from_wkb(wkb[present].astype(str))
    if lon is not None and lat is not None:
        x = np.asarray(lon, dtype=np.float64)
        y = np.asarray(lat, dtype=np.float64)
        points = ~np.isnan(x)
        shapes[points] = shapely.points(x[points], y[points])
    shapes = shapely.set_srid(shapes, 4326)
    return np.asarray(shapely.to_wkb(shapes, hex=True, include_srid=True), dtype=object)


def _point_ewkb(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> pa.Array:
    """Hex EWKB of points, built as bytes in one pass (shapely takes 3.6 us a point for the same)."""
    n = len(x)
    raw = np.empty((n, 25), dtype=np.uint8)
    raw[:, :9] = _POINT_HEADER
    raw[:, 9:17] = x.astype("<f8").view(np.uint8).reshape(n, 8)
    raw[:, 17:] = y.astype("<f8").view(np.uint8).reshape(n, 8)
    # Straight into an Arrow string column: no Python string per row.
    hexed = pa.py_buffer(binascii.hexlify(raw.tobytes()))
    offsets = pa.py_buffer(np.arange(0, 50 * (n + 1), 50, dtype=np.int32).tobytes())
    return pa.StringArray.from_buffers(n, offsets, hexed)


def copy_assets(connection: Any, table: pa.Table) -> None:
    """COPY finished asset rows into ``assets`` (runs on the writer thread)."""
    buffer = io.BytesIO()
    pa_csv.write_csv(table, buffer, _CSV_OPTIONS)
    with connection.cursor() as cursor, cursor.copy(_COPY) as copy:
        copy.write(buffer.getbuffer())
