"""One entry point: the schema set, the id source and the limits, handing out codecs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.serde.catalog import RecordName, SchemaCatalog
from pipeline.serde.codec import RecordCodec
from pipeline.serde.columnar import LabelCodec, TransactionCodec
from pipeline.serde.constraints import Limits
from pipeline.serde.ids import LocalSchemaIds, RegistrySchemaIds, SchemaIds

_COLUMNAR: dict[str, type[RecordCodec]] = {
    RecordName.TRANSACTION: TransactionCodec,
    RecordName.LABEL: LabelCodec,
}
"""Records with a columnar codec; the others get a plain :class:`RecordCodec`."""

if TYPE_CHECKING:
    from pipeline.settings import Settings


class Serde:
    """Hands out one cached codec per record type.

    Schema ids come from a Schema Registry when one is configured, else from
    the local id table. Schemas are parsed once, when the catalog loads.
    """

    def __init__(
        self, catalog: SchemaCatalog, ids: SchemaIds, limits: Limits | None = None
    ) -> None:
        self.catalog = catalog
        self.ids = ids
        self.limits = limits or Limits()
        self._codecs: dict[str, RecordCodec] = {}

    @classmethod
    def local(cls, schemas_dir: Path | None = None, limits: Limits | None = None) -> Serde:
        """Local id table, schemas from ``schemas_dir`` (default: the repository's)."""
        catalog = SchemaCatalog.load(schemas_dir)
        return cls(catalog, LocalSchemaIds(catalog), limits)

    @classmethod
    def with_registry(
        cls,
        registry: str | Any,
        *,
        config: dict[str, str] | None = None,
        schemas_dir: Path | None = None,
        auto_register: bool = True,
        limits: Limits | None = None,
    ) -> Serde:
        """Ids from a Schema Registry, given by URL (``mock://`` for tests) or as a client."""
        if isinstance(registry, str):
            ids = RegistrySchemaIds.from_url(registry, config, auto_register=auto_register)
        else:
            ids = RegistrySchemaIds(registry, auto_register=auto_register)
        return cls(SchemaCatalog.load(schemas_dir), ids, limits)

    @classmethod
    def from_settings(cls, settings: Settings, limits: Limits | None = None) -> Serde:
        """Registry if ``settings.schema_registry_url`` is set, else the local id table."""
        if settings.schema_registry_url:
            return cls.with_registry(
                settings.schema_registry_url,
                config=dict(settings.schema_registry_config),
                schemas_dir=settings.schemas_dir,
                limits=limits,
            )
        return cls.local(settings.schemas_dir, limits)

    def codec(self, name: str) -> RecordCodec:
        """The codec of a record, by short (``Decision``) or full name."""
        reader = self.catalog.current(name)
        codec = self._codecs.get(reader.name)
        if codec is None:
            kind = _COLUMNAR.get(reader.name, RecordCodec)
            codec = kind(reader, self.ids, self.limits)
            self._codecs[reader.name] = codec
        return codec

    def transactions(self) -> TransactionCodec:
        """The Transaction codec, with its columnar decode."""
        codec = self.codec(RecordName.TRANSACTION)
        assert isinstance(codec, TransactionCodec)
        return codec

    def labels(self) -> LabelCodec:
        """The Label codec, with its columnar decode."""
        codec = self.codec(RecordName.LABEL)
        assert isinstance(codec, LabelCodec)
        return codec
