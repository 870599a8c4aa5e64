"""Message values and keys of a replay, built for a whole chunk of rows at once.

Avro goes through the vectorized encoders of :mod:`pipeline.serde.fast_encode`
(byte-identical to fastavro); JSON is one object per message, the form the
Transaction codec accepts (timestamps as epoch ms).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from pipeline.data.io import timestamps_ms
from pipeline.replay.errors import ReplayError
from pipeline.serde import Serde, encode_labels, encode_transactions, schema_id_for

PayloadFormat = Literal["avro", "json"]
FORMATS: tuple[PayloadFormat, ...] = ("avro", "json")


@dataclass(frozen=True)
class ReplayColumns:
    """The frame's columns as numpy arrays (``is_fraud``/``fraud_scenario`` may be absent)."""

    transaction_id: npt.NDArray[np.int64]
    timestamp_ms: npt.NDArray[np.int64]
    card_id: npt.NDArray[np.int64]
    terminal_id: npt.NDArray[np.int64]
    amount: npt.NDArray[np.float64]
    is_fraud: npt.NDArray[np.int8] | None
    fraud_scenario: npt.NDArray[np.int8] | None

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> ReplayColumns:
        def optional(name: str) -> npt.NDArray[np.int8] | None:
            if name not in frame.columns:
                return None
            return np.asarray(frame[name].to_numpy(), dtype=np.int8)

        return cls(
            transaction_id=np.asarray(frame["transaction_id"].to_numpy(), np.int64),
            timestamp_ms=timestamps_ms(frame),
            card_id=np.asarray(frame["card_id"].to_numpy(), np.int64),
            terminal_id=np.asarray(frame["terminal_id"].to_numpy(), np.int64),
            amount=np.asarray(frame["amount"].to_numpy(), np.float64),
            is_fraud=optional("is_fraud"),
            fraud_scenario=optional("fraud_scenario"),
        )


def card_keys(card_ids: npt.NDArray[np.int64]) -> list[bytes]:
    """Message keys: the card id in decimal ASCII (so every producer agrees on partitions)."""
    return [b"%d" % card for card in card_ids.tolist()]


class PayloadEncoder:
    """Encodes chunks of transactions and labels in one format."""

    def __init__(self, serde: Serde, fmt: PayloadFormat, label_source: str = "replay") -> None:
        if fmt not in FORMATS:
            raise ReplayError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
        self.fmt = fmt
        self.label_source = label_source
        self._transaction_id = schema_id_for(serde.transactions()) if fmt == "avro" else 0
        self._label_id = schema_id_for(serde.codec("Label")) if fmt == "avro" else 0

    def transactions(self, columns: ReplayColumns, rows: npt.NDArray[np.int64]) -> list[bytes]:
        tx, ts = columns.transaction_id[rows], columns.timestamp_ms[rows]
        card, terminal = columns.card_id[rows], columns.terminal_id[rows]
        amount = columns.amount[rows]
        if self.fmt == "avro":
            return encode_transactions(
                transaction_id=tx,
                timestamp=ts,
                card_id=card,
                terminal_id=terminal,
                amount=amount,
                schema_id=self._transaction_id,
            )
        template = '{"transaction_id":%d,"timestamp":%d,"card_id":%d,"terminal_id":%d,"amount":%s}'
        return [
            (template % (t, s, c, m, repr(a))).encode()
            for t, s, c, m, a in zip(
                tx.tolist(),
                ts.tolist(),
                card.tolist(),
                terminal.tolist(),
                amount.tolist(),
                strict=True,
            )
        ]

    def labels(
        self, columns: ReplayColumns, rows: npt.NDArray[np.int64], delay_ms: int
    ) -> list[bytes]:
        if columns.is_fraud is None:
            raise ReplayError("labels asked for, but the data has no is_fraud column")
        tx, card = columns.transaction_id[rows], columns.card_id[rows]
        fraud = columns.is_fraud[rows]
        known_at = columns.timestamp_ms[rows] + np.int64(delay_ms)
        scenario = None if columns.fraud_scenario is None else columns.fraud_scenario[rows]
        if self.fmt == "avro":
            return encode_labels(
                transaction_id=tx,
                card_id=card,
                is_fraud=fraud,
                label_timestamp=known_at,
                source=self.label_source,
                fraud_scenario=scenario,
                schema_id=self._label_id,
            )
        scenarios = [0] * len(rows) if scenario is None else scenario.tolist()
        source = _json_string(self.label_source)
        return [
            (
                f'{{"transaction_id":{t},"card_id":{c},"is_fraud":{"true" if f else "false"},'
                f'"label_timestamp":{k},"source":{source},'
                f'"fraud_scenario":{s if s > 0 else "null"}}}'
            ).encode()
            for t, c, f, k, s in zip(
                tx.tolist(),
                card.tolist(),
                fraud.tolist(),
                known_at.tolist(),
                scenarios,
                strict=True,
            )
        ]


def _json_string(text: str) -> str:
    return json.dumps(text)
