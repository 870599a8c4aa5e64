"""The schema set: every ``.avsc`` parsed once, indexed by record name and local id.

Layout of the schemas directory:

- ``<Name>.avsc``: the current schema of record ``fraud.pipeline.<Name>``;
- ``versions/<Name>.v<N>.avsc``: older versions, kept so old data stays readable;
- ``ids.json``: the local id table ``id -> {name, version, fingerprint}``. The
  highest version of a name is its current schema. ``fingerprint`` (16 hex
  digits of the SHA-256 of the Parsing Canonical Form) is checked at load, so a
  schema whose wire layout changed without a new id is refused.

To evolve a record: copy ``<Name>.avsc`` to ``versions/<Name>.v<N>.avsc``, edit
``<Name>.avsc`` (new fields with defaults), add id ``max + 1`` with version
``N + 1``; the load error message prints the fingerprint to put there.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import fastavro
from fastavro.schema import to_parsing_canonical_form

from pipeline.serde.errors import SchemaError

NAMESPACE: Final = "fraud.pipeline"
IDS_FILE: Final = "ids.json"
TIME_ATTRIBUTE: Final = "time"
"""Field attribute marking a ``long`` as epoch milliseconds UTC (``"time": "epoch-millis"``)."""


class RecordName(StrEnum):
    """The records of the pipeline (short names; full name is ``fraud.pipeline.<name>``)."""

    TRANSACTION = "Transaction"
    DECISION = "Decision"
    ALERT = "Alert"
    LABEL = "Label"
    MODEL_CONTROL = "ModelControl"
    DRIFT_EVENT = "DriftEvent"
    RETRAIN_REQUEST = "RetrainRequest"
    OUTCOME = "Outcome"
    MONITOR_STATS = "MonitorStats"
    TERMINAL_HISTORY = "TerminalHistory"


def default_schemas_dir() -> Path:
    """The repository's ``schemas/`` directory."""
    from pipeline.settings import REPO_ROOT

    return REPO_ROOT / "schemas"


def fingerprint(parsed_schema: Any) -> str:
    """16 hex digits of the SHA-256 of the schema's Parsing Canonical Form."""
    canonical = to_parsing_canonical_form(parsed_schema)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SchemaVersion:
    """One version of one record schema, parsed once."""

    schema_id: int
    name: str
    version: int
    raw: Mapping[str, Any] = field(repr=False)
    parsed: Any = field(repr=False)
    canonical: str = field(repr=False)
    time_fields: frozenset[str] = field(repr=False)

    @property
    def full_name(self) -> str:
        return f"{NAMESPACE}.{self.name}"

    @property
    def schema_str(self) -> str:
        """The schema as JSON text (what a Schema Registry stores)."""
        return json.dumps(self.raw, separators=(",", ":"))

    @classmethod
    def from_raw(
        cls, raw: Mapping[str, Any], *, schema_id: int = -1, version: int = 0
    ) -> SchemaVersion:
        """Parse a schema given as a JSON object (used for registry-provided schemas too)."""
        try:
            parsed = fastavro.parse_schema(dict(raw))
        except Exception as exc:  # fastavro raises several unrelated types
            raise SchemaError(f"invalid Avro schema {raw.get('name')!r}: {exc}") from exc
        full_name = str(parsed.get("name", "")) if isinstance(parsed, dict) else ""
        time_fields = frozenset(
            str(f["name"]) for f in raw.get("fields", ()) if f.get(TIME_ATTRIBUTE) == "epoch-millis"
        )
        return cls(
            schema_id=schema_id,
            name=full_name.rpartition(".")[2],
            version=version,
            raw=raw,
            parsed=parsed,
            canonical=to_parsing_canonical_form(parsed),
            time_fields=time_fields,
        )


class SchemaCatalog:
    """All known schema versions; the current one per record is the reader schema."""

    def __init__(self, versions: Iterable[SchemaVersion]) -> None:
        self._by_id: dict[int, SchemaVersion] = {}
        self._current: dict[str, SchemaVersion] = {}
        for version in versions:
            if version.schema_id in self._by_id:
                raise SchemaError(f"schema id {version.schema_id} used twice")
            self._by_id[version.schema_id] = version
            known = self._current.get(version.name)
            if known is None or version.version > known.version:
                self._current[version.name] = version

    @classmethod
    def load(cls, schemas_dir: Path | None = None) -> SchemaCatalog:
        """Read and parse every schema listed in ``schemas_dir/ids.json``."""
        directory = Path(schemas_dir) if schemas_dir is not None else default_schemas_dir()
        table = _read_json(directory / IDS_FILE).get("ids", {})
        latest: dict[str, int] = {}
        for entry in table.values():
            latest[entry["name"]] = max(latest.get(entry["name"], 0), int(entry["version"]))
        versions = []
        for key, entry in table.items():
            name, number = str(entry["name"]), int(entry["version"])
            path = (
                directory / f"{name}.avsc"
                if number == latest[name]
                else directory / "versions" / f"{name}.v{number}.avsc"
            )
            version = SchemaVersion.from_raw(_read_json(path), schema_id=int(key), version=number)
            if version.full_name != f"{NAMESPACE}.{name}":
                raise SchemaError(
                    f"{path} defines {version.full_name}, expected {NAMESPACE}.{name}"
                )
            actual = fingerprint(version.parsed)
            if entry.get("fingerprint") != actual:
                raise SchemaError(
                    f"{path} does not match id {key} in {IDS_FILE} (fingerprint {actual}, "
                    f"table says {entry.get('fingerprint')}); a changed schema needs a new id"
                )
            versions.append(version)
        unlisted = {p.stem for p in directory.glob("*.avsc")} - set(latest)
        if unlisted:
            raise SchemaError(f"schemas without an id in {IDS_FILE}: {sorted(unlisted)}")
        return cls(versions)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._current))

    def current(self, name: str) -> SchemaVersion:
        """The current (reader) schema of a record, by short or full name."""
        try:
            return self._current[name.rpartition(".")[2]]
        except KeyError:
            raise SchemaError(f"unknown record {name!r}; known: {list(self.names)}") from None

    def by_id(self, schema_id: int) -> SchemaVersion | None:
        """The schema registered locally under ``schema_id``, if any."""
        return self._by_id.get(schema_id)

    def versions(self, name: str) -> list[SchemaVersion]:
        """Every known version of a record, oldest first."""
        short = self.current(name).name
        return sorted((v for v in self._by_id.values() if v.name == short), key=lambda v: v.version)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SchemaError(f"schema file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise SchemaError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise SchemaError(f"{path}: expected a JSON object")
    return data
