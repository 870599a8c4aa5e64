"""JSON payloads: one JSON object per message, checked against the same schema.

Conventions: field values are plain JSON (a nullable field is a value or
``null``, not Avro-JSON's ``{"string": ...}``); a missing field takes its schema
default, or fails with ``missing_field``; unknown keys are ignored. Fields
marked ``"time": "epoch-millis"`` (e.g. ``timestamp``) take epoch milliseconds
or an ISO 8601 string, UTC when the string has no offset. Integers are accepted
for ``double``/``float`` fields and stored as floats; booleans are never numbers.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from fastavro.validation import ValidationError, validate

from pipeline.serde.catalog import SchemaVersion
from pipeline.serde.errors import (
    INVALID_VALUE,
    JSON_INVALID,
    MISSING_FIELD,
    WRONG_TYPE,
    DecodeError,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FLOAT_TYPES = ("double", "float")
_MILLISECOND = timedelta(milliseconds=1)


def looks_like_json(payload: bytes) -> bool:
    """Whether a payload is meant as JSON (first non-blank byte is ``{``)."""
    return payload.lstrip()[:1] == b"{"


def record_from_json(payload: bytes, schema: SchemaVersion) -> dict[str, Any]:
    """Parse and validate a JSON object as a record of ``schema``."""
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(JSON_INVALID, f"not valid JSON: {exc}", payload) from None
    if not isinstance(obj, dict):
        raise DecodeError(JSON_INVALID, "not a JSON object", payload)
    record: dict[str, Any] = {}
    for field in schema.raw["fields"]:
        name = field["name"]
        if name in obj:
            value = obj[name]
        elif "default" in field:
            value = copy.deepcopy(field["default"])
        else:
            raise DecodeError(MISSING_FIELD, f"field {name!r} is missing", payload)
        if name in schema.time_fields and isinstance(value, str):
            value = _iso_to_millis(name, value, payload)
        elif field["type"] in _FLOAT_TYPES and type(value) is int:
            value = float(value)
        record[name] = value
    try:
        validate(record, schema.parsed, raise_errors=True)
    except ValidationError as exc:
        detail = "; ".join(str(e) for e in exc.errors) or str(exc)
        raise DecodeError(WRONG_TYPE, detail, payload) from None
    return record


def _iso_to_millis(name: str, text: str, payload: bytes) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise DecodeError(INVALID_VALUE, f"{name} {text!r} is not ISO 8601", payload) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MILLISECOND
