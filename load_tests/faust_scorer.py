"""A minimal faust-streaming scorer, for the throughput comparison only.

It does the scorer's work with the same core functions (columnar decode,
per-card online features, one batched XGBoost predict, Decision encoding) in a
Faust agent that takes up to 1000 records at a time, the way a Faust user
would write it. Run by ``scorer_throughput.py`` in a subprocess; it writes
``{"events": n, "seconds": s}`` to ``--result`` once ``--events`` records are
decided, then exits.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np


def create_app(args: argparse.Namespace) -> Any:
    import faust

    from pipeline.features import FEATURE_NAMES, CardStateStore, describe
    from pipeline.policy import DecisionPolicy
    from pipeline.registry import ModelRegistry
    from pipeline.scorer.outputs import BatchRows, encode_decisions
    from pipeline.scoring import ScoringEngine, ServingModel
    from pipeline.serde import Serde

    app = faust.App(
        f"faust-bench-{os.getpid()}",
        broker=f"kafka://{args.bootstrap}",
        store="memory://",
        web_enabled=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        producer_linger_ms=5,
        producer_compression_type=None,  # as the scorer's outputs (ScorerConfig.compression)
        stream_buffer_maxsize=20000,
    )
    source = app.topic(
        args.source, value_type=bytes, key_type=bytes, value_serializer="raw", key_serializer="raw"
    )
    sink = app.topic(
        args.sink, value_type=bytes, key_type=bytes, value_serializer="raw", key_serializer="raw"
    )
    serde = Serde.local()
    tx_codec = serde.transactions()
    decision_codec = serde.codec("Decision")
    loaded = ModelRegistry(Path(args.registry)).load("champion", expected_features=FEATURE_NAMES)
    model = ServingModel.from_loaded(loaded)
    engine = ScoringEngine(model, DecisionPolicy(), describe)
    state = CardStateStore()
    progress = {"events": 0, "first": 0.0}

    @app.agent(source)
    async def score(stream: Any) -> None:
        async for batch in stream.take_events(1000, within=0.05):
            if not progress["first"]:
                progress["first"] = time.monotonic()
            values = [event.value for event in batch]
            keys = [event.key for event in batch]
            cols = tx_codec.decode_columns(values)
            features = state.features(cols.card_id, cols.timestamp, cols.amount, None)
            scored = engine.score(features)
            n = len(cols)
            rows = BatchRows(
                cols.transaction_id,
                cols.timestamp,
                cols.card_id,
                cols.terminal_id,
                cols.amount,
                np.zeros(n, np.int64),
                np.zeros(n, np.int64),
            )
            payloads = encode_decisions(
                decision_codec, rows, features, scored, model, int(time.time() * 1000), 0.0
            )
            for i, payload in zip(cols.indices.tolist(), payloads, strict=True):
                await sink.send(key=keys[i], value=payload)
            progress["events"] += len(batch)
            if progress["events"] >= args.events:
                elapsed = time.monotonic() - progress["first"]
                Path(args.result).write_text(
                    json.dumps({"events": progress["events"], "seconds": elapsed})
                )
                os._exit(0)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--registry", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--result", required=True)
    args = parser.parse_args()
    import faust

    app = create_app(args)
    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
