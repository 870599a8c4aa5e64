"""Avro serde in Confluent framing, with the schema set of the pipeline.

Usage::

    serde = Serde.from_settings(settings)
    payloads = serde.codec("Decision").encode_batch(decisions)
    columns = serde.transactions().decode_columns(values)  # numpy columns + errors
    labels = serde.labels().decode_columns(label_values)
    payloads = encode_decisions(..., schema_id=schema_id_for(serde.codec("Decision")))

Wire format: magic byte 0, 4-byte big-endian schema id, schemaless Avro body.
Ids come from a Schema Registry (subject = record full name) or from
``schemas/ids.json``. Transactions may also arrive as JSON objects.
"""

from pipeline.serde.catalog import RecordName, SchemaCatalog, SchemaVersion
from pipeline.serde.codec import DecodedBatch, RecordCodec
from pipeline.serde.columnar import (
    LabelCodec,
    LabelColumns,
    TransactionCodec,
    TransactionColumns,
)
from pipeline.serde.constraints import Limits
from pipeline.serde.dlq import (
    DLQ_ERROR_MESSAGE,
    DLQ_ERROR_REASON,
    DLQ_FAILED_AT,
    DLQ_HEADERS,
    DLQ_SOURCE_OFFSET,
    DLQ_SOURCE_PARTITION,
    DLQ_SOURCE_TIMESTAMP,
    DLQ_SOURCE_TOPIC,
    DLQ_STAGE,
    DLQ_WORKER,
    dlq_headers,
)
from pipeline.serde.errors import (
    DecodeError,
    EncodeError,
    RecordError,
    SchemaError,
    SerdeError,
)
from pipeline.serde.factory import Serde
from pipeline.serde.fast_encode import (
    encode_decisions,
    encode_labels,
    encode_transactions,
    schema_id_for,
)
from pipeline.serde.framing import HEADER_SIZE, MAGIC_BYTE, frame_header, read_schema_id
from pipeline.serde.ids import LocalSchemaIds, RegistrySchemaIds, SchemaIds

__all__ = [
    "DLQ_ERROR_MESSAGE",
    "DLQ_ERROR_REASON",
    "DLQ_FAILED_AT",
    "DLQ_HEADERS",
    "DLQ_SOURCE_OFFSET",
    "DLQ_SOURCE_PARTITION",
    "DLQ_SOURCE_TIMESTAMP",
    "DLQ_SOURCE_TOPIC",
    "DLQ_STAGE",
    "DLQ_WORKER",
    "HEADER_SIZE",
    "MAGIC_BYTE",
    "DecodeError",
    "DecodedBatch",
    "EncodeError",
    "LabelCodec",
    "LabelColumns",
    "Limits",
    "LocalSchemaIds",
    "RecordCodec",
    "RecordError",
    "RecordName",
    "RegistrySchemaIds",
    "SchemaCatalog",
    "SchemaError",
    "SchemaIds",
    "SchemaVersion",
    "Serde",
    "SerdeError",
    "TransactionCodec",
    "TransactionColumns",
    "dlq_headers",
    "encode_decisions",
    "encode_labels",
    "encode_transactions",
    "frame_header",
    "read_schema_id",
    "schema_id_for",
]
