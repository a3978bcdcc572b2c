"""A small Mapbox Vector Tile (protobuf) reader for the tile tests: layers, properties, first vertex."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Feature:
    """One decoded feature: its type (1 point, 2 line, 3 polygon), properties and first vertex."""

    type: int
    properties: dict[str, Any]
    first: tuple[int, int]


@dataclass
class Layer:
    """One decoded layer."""

    name: str
    extent: int = 4096
    features: list[Feature] = field(default_factory=list)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


def _fields(data: bytes) -> list[tuple[int, Any]]:
    """(field number, value) pairs; length-delimited values as bytes, fixed ones as raw bytes."""
    out: list[tuple[int, Any]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"wire type {wire}")
        out.append((number, value))
    return out


def _packed(data: bytes) -> list[int]:
    values, pos = [], 0
    while pos < len(data):
        value, pos = _varint(data, pos)
        values.append(value)
    return values


def _zigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


def _value(data: bytes) -> Any:
    number, raw = _fields(data)[0]
    if number == 1:
        return raw.decode()
    if number == 2:
        return struct.unpack("<f", raw)[0]
    if number == 3:
        return struct.unpack("<d", raw)[0]
    if number in (4, 5):
        return raw if raw < 1 << 63 else raw - (1 << 64)
    if number == 6:
        return _zigzag(raw)
    return bool(raw)


def decode(tile: bytes) -> dict[str, Layer]:
    """The layers of an MVT, by name."""
    layers: dict[str, Layer] = {}
    for number, raw in _fields(tile):
        if number != 3:
            continue
        parts = _fields(raw)
        layer = Layer(name=next(v.decode() for n, v in parts if n == 1))
        keys = [v.decode() for n, v in parts if n == 3]
        values = [_value(v) for n, v in parts if n == 4]
        for n, v in parts:
            if n == 5:
                layer.extent = v
        for n, v in parts:
            if n != 2:
                continue
            feature = dict(_fields(v))
            tags = _packed(feature.get(2, b""))
            geometry = _packed(feature.get(4, b""))
            props = {keys[tags[i]]: values[tags[i + 1]] for i in range(0, len(tags), 2)}
            layer.features.append(
                Feature(feature.get(3, 0), props, (_zigzag(geometry[1]), _zigzag(geometry[2])))
            )
        layers[layer.name] = layer
    return layers
