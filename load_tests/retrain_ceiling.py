"""How much of the pre-drift average precision any retrained model can recover.

The drift experiment (``drift_experiment.py``) judges the retrained challenger
against the champion's AP on the week before the drift. Whether that goal is
reachable depends on the post-drift data as much as on the retrain: this script
takes the experiment's layout (same simulator, seed, drift day, feature code,
champion training days, holdout days) offline, without Kafka, and reports

- the champion's AP before and after the drift;
- challengers trained with the product's parameters on several windows that
  end where the retrain's do (the day before the holdout), and with a larger
  model;
- an in-sample bound: a model trained on the holdout days themselves (it has
  seen the rows it is scored on, so no honest retrain can expect to beat it);
- per day around the drift: frauds, and the champion's errors at the alert
  threshold (alert != fraud), which is what the label-based detector sees.

    python load_tests/retrain_ceiling.py --json
    python load_tests/retrain_ceiling.py --kind card_testing --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

import drift_experiment as de
import numpy as np


@dataclass(frozen=True)
class Layout:
    """The drift experiment's default sizes (see its ``--help``)."""

    customers: int = 2000
    days: int = 104
    drift_day: int = 80
    burn_in_days: int = 45
    train_days: int = 21
    holdout_days: int = 7
    label_delay_days: int = 7


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", default="fraud_rate", choices=sorted(de.DRIFT_PARAMS))
    parser.add_argument("--seed", type=int, default=0, help="simulation seed")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    from pipeline.features import FEATURE_NAMES, feature_matrix
    from pipeline.model.metrics import average_precision
    from pipeline.model.params import DEFAULT_PARAMS
    from pipeline.model.training import train_booster
    from pipeline.policy.decision import DecisionPolicy

    layout = Layout()
    began = time.monotonic()
    spec = f"{args.kind}@day={layout.drift_day}{de.DRIFT_PARAMS[args.kind]}"
    print(f"[ceiling] simulating {layout.days} days, drift {spec}", file=sys.stderr)
    frame = de.simulate(layout, layout.days, args.seed, spec)  # type: ignore[arg-type]
    days = de.sim_day(frame)
    features = feature_matrix(frame, layout.label_delay_days * de.DAY_MS)
    labels = frame["is_fraud"].to_numpy().astype(bool)

    def rows(first: int, end: int) -> np.ndarray:
        return (days >= first) & (days < end)

    def train(first: int, end: int, params: Any = DEFAULT_PARAMS) -> Any:
        mask = rows(first, end)
        return train_booster(features[mask], labels[mask], FEATURE_NAMES, params)

    # The retrain as of the end of the simulation: labels mature a label delay
    # earlier, the holdout is the last mature days, training ends before it.
    mature_end = layout.days - layout.label_delay_days
    holdout = (mature_end - layout.holdout_days, mature_end)
    test = rows(*holdout)

    def ap(booster: Any, mask: np.ndarray) -> float:
        return round(
            float(average_precision(labels[mask], booster.inplace_predict(features[mask]))), 4
        )

    champion_first = layout.burn_in_days
    champion = train(champion_first, champion_first + layout.train_days)
    pre = rows(layout.drift_day - 7, layout.drift_day)
    ap_pre = ap(champion, pre)
    larger = DEFAULT_PARAMS.replace(n_estimators=300, learning_rate=0.05)
    windows = {
        "post_drift_only": (layout.drift_day, holdout[0]),
        f"last_{layout.train_days}_days": (holdout[0] - layout.train_days, holdout[0]),
        "since_burn_in": (layout.burn_in_days, holdout[0]),
    }
    challengers: dict[str, dict[str, Any]] = {}
    for name, (first, end) in windows.items():
        print(f"[ceiling] training on days [{first}, {end})", file=sys.stderr)
        challengers[name] = {
            "train_days": [first, end - 1],
            "ap": ap(train(first, end), test),
            "ap_300_trees": ap(train(first, end, larger), test),
        }
    in_sample = ap(train(*holdout), test)

    scores = champion.inplace_predict(features)
    alerts = scores >= DecisionPolicy().review_threshold
    errors = alerts != labels
    daily = {
        int(day): {
            "frauds": int(labels[days == day].sum()),
            "errors": int(errors[days == day].sum()),
        }
        for day in range(champion_first + layout.train_days, holdout[0])
    }
    before = [daily[d] for d in daily if d < layout.drift_day]
    best = max(c["ap"] for c in challengers.values())
    report = {
        "kind": args.kind,
        "spec": spec,
        "seed": args.seed,
        "holdout_days": [holdout[0], holdout[1] - 1],
        "ap_pre_drift": ap_pre,
        "goal_ap": round(0.9 * ap_pre, 4),
        "ap_champion_post_drift": ap(champion, test),
        "challengers": challengers,
        "ap_in_sample_bound": in_sample,
        "best_challenger_to_pre": round(best / ap_pre, 4),
        "in_sample_bound_to_pre": round(in_sample / ap_pre, 4),
        "before_drift_range": {
            "frauds": [min(d["frauds"] for d in before), max(d["frauds"] for d in before)],
            "errors": [min(d["errors"] for d in before), max(d["errors"] for d in before)],
        },
        "daily": daily,
        "seconds": round(time.monotonic() - began, 1),
    }
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            if key != "daily":
                print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
