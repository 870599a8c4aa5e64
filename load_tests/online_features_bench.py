"""Online card-feature evaluator cost per event, against the offline evaluator.

Simulates 40 days, splits the rows by ``card_id % partitions`` into one
:class:`CardStateStore` per partition (as the scorer does), warms the stores with
the first 30 days, then times ``features`` over the remaining days in batches of
``--batch`` rows (each batch split by partition, like a scorer poll). The offline
evaluator's card primitives + assembly over the same rows is the baseline (this
machine is shared and noisy, so the ratio is the stable number). Also checks that
the online card columns match the offline ones. Times are process CPU time (the
machine is shared: wall time would count other people's work), best of ``--repeat``.

Run: .venv/bin/python load_tests/online_features_bench.py [--batch 2000] [--repeat 3]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--days", type=int, default=40)
    parser.add_argument("--warm-days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3, help="best of N timed passes")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()

    from pipeline.data.simulator import SimulatorConfig, simulate
    from pipeline.features import FEATURES, CardStateStore, timestamps_to_ms
    from pipeline.features.derive import assemble
    from pipeline.features.primitives import grouped_card_primitives
    from pipeline.features.spec import DAY_MS

    frame = simulate(
        SimulatorConfig(n_customers=5000, n_terminals=10000, n_days=args.days, seed=args.seed)
    )
    ts = timestamps_to_ms(frame["timestamp"])
    card = frame["card_id"].to_numpy(np.int64)
    amount = frame["amount"].to_numpy(np.float64)
    part = card % args.partitions
    split = int(np.searchsorted(ts, ts[0] + args.warm_days * DAY_MS))
    card_cols = [j for j, spec in enumerate(FEATURES) if spec.entity != "terminal"]

    def warm() -> list[CardStateStore]:
        stores = [CardStateStore() for _ in range(args.partitions)]
        for p, store in enumerate(stores):
            rows = np.flatnonzero(part[:split] == p)
            store.update(card[rows], ts[rows], amount[rows])
        return stores

    def online_pass() -> tuple[float, float, np.ndarray]:
        stores = warm()
        out = np.empty((len(card) - split, len(FEATURES)), np.float32)
        batches = []
        for lo in range(split, len(card), args.batch):
            hi = min(lo + args.batch, len(card))
            p = part[lo:hi]
            batches.append([(lo + w, w + lo - split) for w in _groups(p, args.partitions)])
        spent = 0.0
        spent_dump = 0.0
        for groups in batches:
            start = time.process_time()
            for p, (rows, at) in enumerate(groups):
                out[at] = stores[p].features(card[rows], ts[rows], amount[rows], None)
            spent += time.process_time() - start
            start = time.process_time()
            for p, (rows, _) in enumerate(groups):
                stores[p].dump_cards(np.unique(card[rows]))
            spent_dump += time.process_time() - start
        return spent, spent_dump, out

    def offline_pass() -> tuple[float, np.ndarray]:
        start = time.process_time()
        order = np.argsort(card, kind="stable")
        prims = grouped_card_primitives(card[order], ts[order], amount[order])
        back = np.empty(len(card), np.int64)
        back[order] = np.arange(len(card))
        matrix = assemble(ts, amount, prims.take(back), None)
        return time.process_time() - start, matrix

    online_s = dump_s = offline_s = float("inf")
    online = offline = np.zeros(0, np.float32)
    for _ in range(args.repeat):
        o_s, d_s, online = online_pass()
        online_s, dump_s = min(online_s, o_s), min(dump_s, d_s)
        f_s, offline = offline_pass()
        offline_s = min(offline_s, f_s)
    timed = len(card) - split
    ref = offline[split:][:, card_cols]
    got = online[:, card_cols]
    close = np.isclose(got, ref, rtol=2e-6, atol=1e-5, equal_nan=True)
    report = {
        "rows_total": len(card),
        "rows_timed": timed,
        "batch": args.batch,
        "partitions": args.partitions,
        "online_us_per_event": round(online_s / timed * 1e6, 3),
        "dump_cards_us_per_event": round(dump_s / timed * 1e6, 3),
        "offline_us_per_event": round(offline_s / len(card) * 1e6, 3),
        "online_to_offline": round((online_s / timed) / (offline_s / len(card)), 2),
        "card_columns_match_offline": bool(close.all()),
    }
    print(json.dumps(report))


def _groups(partition: np.ndarray, n: int) -> list[np.ndarray]:
    """Row offsets (within the batch) of each partition, in order."""
    return [np.flatnonzero(partition == p) for p in range(n)]


if __name__ == "__main__":
    main()
