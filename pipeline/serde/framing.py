"""Confluent wire framing: magic byte 0, a 4-byte big-endian schema id, the Avro body."""

from __future__ import annotations

import struct
from typing import Final

from pipeline.serde.errors import BAD_MAGIC, TRUNCATED, DecodeError

MAGIC_BYTE: Final = 0
HEADER_SIZE: Final = 5
_HEADER = struct.Struct(">bI")


def frame_header(schema_id: int) -> bytes:
    """The 5-byte prefix of every framed Avro payload written with ``schema_id``."""
    return _HEADER.pack(MAGIC_BYTE, schema_id)


def read_schema_id(payload: bytes) -> int:
    """The schema id of a framed payload; :class:`DecodeError` if the frame is wrong."""
    if len(payload) < HEADER_SIZE:
        if payload and payload[0] != MAGIC_BYTE:
            raise DecodeError(BAD_MAGIC, f"first byte is {payload[0]}, expected 0", payload)
        raise DecodeError(TRUNCATED, f"{len(payload)} bytes, shorter than the header", payload)
    magic, schema_id = _HEADER.unpack_from(payload)
    if magic != MAGIC_BYTE:
        raise DecodeError(BAD_MAGIC, f"first byte is {payload[0]}, expected 0", payload)
    return int(schema_id)
