"""Where schema ids come from: the local id table or a Confluent Schema Registry.

With a registry, subjects follow the *record name strategy*: the subject of a
record is its full name (``fraud.pipeline.Transaction``), whatever topic it is
written to. Topic names are configurable and one record travels on one topic,
so the record name is the stable key, and one codec serves any topic.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Protocol

from pipeline.serde.catalog import SchemaCatalog, SchemaVersion
from pipeline.serde.errors import SchemaError, SerdeError

_MAX_UNKNOWN_IDS = 4096


class SchemaIds(Protocol):
    """Maps schemas to wire ids and back."""

    def id_for(self, schema: SchemaVersion) -> int:
        """The id to frame records written with ``schema``."""
        ...

    def writer_schema(self, schema_id: int) -> SchemaVersion | None:
        """The schema that wrote ``schema_id``; ``None`` when the id is unknown."""
        ...


class LocalSchemaIds:
    """Ids from the catalog's fixed table (``schemas/ids.json``)."""

    def __init__(self, catalog: SchemaCatalog) -> None:
        self._catalog = catalog

    def id_for(self, schema: SchemaVersion) -> int:
        return schema.schema_id

    def writer_schema(self, schema_id: int) -> SchemaVersion | None:
        return self._catalog.by_id(schema_id)


class RegistrySchemaIds:
    """Ids from a Confluent Schema Registry, cached; subjects by record name.

    ``auto_register`` registers the current schema on first use (the registry's
    compatibility rules still apply); without it the schema must already be
    registered. Unknown ids are remembered so garbage input does not hammer the
    registry. A registry that cannot be reached raises :class:`SerdeError`:
    that is an outage, not bad data.
    """

    def __init__(self, client: Any, *, auto_register: bool = True) -> None:
        self._client = client
        self._auto_register = auto_register
        self._ids: dict[str, int] = {}
        self._schemas: dict[int, SchemaVersion | None] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_url(
        cls, url: str, config: dict[str, str] | None = None, *, auto_register: bool = True
    ) -> RegistrySchemaIds:
        """Connect to the registry at ``url`` (``mock://...`` gives an in-memory one)."""
        from confluent_kafka.schema_registry import SchemaRegistryClient

        conf: dict[str, Any] = {"url": url, **(config or {})}
        return cls(SchemaRegistryClient.new_client(conf), auto_register=auto_register)

    def id_for(self, schema: SchemaVersion) -> int:
        cached = self._ids.get(schema.canonical)
        if cached is not None:
            return cached
        from confluent_kafka.schema_registry import Schema

        subject = schema.full_name
        registry_schema = Schema(schema.schema_str, "AVRO")
        try:
            if self._auto_register:
                schema_id = int(self._client.register_schema(subject, registry_schema))
            else:
                schema_id = int(self._client.lookup_schema(subject, registry_schema).schema_id)
        except Exception as exc:
            raise SerdeError(f"schema registry refused {subject}: {exc}") from exc
        with self._lock:
            self._ids[schema.canonical] = schema_id
            self._schemas.setdefault(schema_id, schema)
        return schema_id

    def writer_schema(self, schema_id: int) -> SchemaVersion | None:
        if schema_id in self._schemas:
            return self._schemas[schema_id]
        from confluent_kafka.schema_registry import SchemaRegistryError

        try:
            registered = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code != 404:
                raise SerdeError(f"schema registry lookup of id {schema_id} failed: {exc}") from exc
            found = None
        except Exception as exc:
            raise SerdeError(f"schema registry lookup of id {schema_id} failed: {exc}") from exc
        else:
            found = self._parse(schema_id, registered.schema_str)
        with self._lock:
            if found is not None or len(self._schemas) < _MAX_UNKNOWN_IDS:
                self._schemas[schema_id] = found
        return found

    @staticmethod
    def _parse(schema_id: int, schema_str: str) -> SchemaVersion | None:
        try:
            raw = json.loads(schema_str)
        except ValueError:
            return None
        if not isinstance(raw, dict):
            return None  # not a record schema: cannot be one of ours
        try:
            return SchemaVersion.from_raw(raw, schema_id=schema_id)
        except SchemaError:
            return None
