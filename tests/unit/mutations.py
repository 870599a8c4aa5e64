"""Damaged Avro frames for the decoders' property tests."""

from __future__ import annotations

from hypothesis import strategies as st


def damaged(draw: st.DrawFn, payload: bytes, keep: int, reach: int) -> bytes:
    """``payload`` with up to three bytes flipped, inserted or deleted between
    ``keep`` (the frame header, left intact) and ``reach``."""
    data = bytearray(payload)
    edits = st.tuples(st.sampled_from("fid"), st.integers(keep, reach), st.integers(0, 255))
    for edit, position, byte in draw(st.lists(edits, max_size=3)):
        at = min(position, len(data) - 1)
        if edit == "f":
            data[at] = byte
        elif edit == "i":
            data.insert(at, byte)
        elif len(data) > keep:
            del data[at]
    return bytes(data)
