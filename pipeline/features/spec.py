"""The feature set, defined once.

Every model input is a :class:`FeatureSpec`: a name, the entity it describes, the
statistic and its window. Both evaluators (offline over a DataFrame, online over
per-card state) compute the same *primitives* (per-window count, sum, sum of
squares and max of a card's earlier amounts; the gap to its previous
transaction; per-terminal delayed counts) and turn them into feature values
with the one set of formulas in :mod:`pipeline.features.derive`. The names and
their order here are the model's input contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Entity = Literal["transaction", "card", "terminal"]

HOUR_MS = 3_600_000
DAY_MS = 86_400_000

#: Card windows (ms) whose primitives the evaluators keep.
CARD_WINDOWS_MS: tuple[int, ...] = (HOUR_MS, DAY_MS, 7 * DAY_MS, 30 * DAY_MS)
#: The longest card window: how much history the online state retains.
CARD_HISTORY_MS = max(CARD_WINDOWS_MS)
#: Terminal windows (ms), each ending ``label_delay`` before the transaction.
TERMINAL_WINDOWS_MS: tuple[int, ...] = (DAY_MS, 7 * DAY_MS, 30 * DAY_MS)
#: How far back the age of a terminal's last known fraud is looked for.
TERMINAL_FRAUD_LOOKBACK_MS = 30 * DAY_MS
#: The handbook's label delay, the default everywhere a delay is not given.
DEFAULT_LABEL_DELAY_MS = 7 * DAY_MS

#: Bumped whenever a definition below changes meaning; stored with each model.
FEATURE_SET_VERSION = "2"


@dataclass(frozen=True)
class FeatureSpec:
    """One model input: what it measures and in words why it may matter."""

    name: str
    entity: Entity
    stat: str
    window_ms: int = 0
    text: str = ""


def _card(stat: str, window_ms: int, text: str) -> FeatureSpec:
    label = _window_label(window_ms)
    return FeatureSpec(f"card_{stat}_{label}", "card", stat, window_ms, text.format(w=label))


def _terminal(stat: str, window_ms: int, text: str) -> FeatureSpec:
    label = _window_label(window_ms)
    return FeatureSpec(
        f"terminal_{stat}_{label}", "terminal", stat, window_ms, text.format(w=label)
    )


def _window_label(window_ms: int) -> str:
    if window_ms % DAY_MS == 0:
        return f"{window_ms // DAY_MS}d"
    return f"{window_ms // HOUR_MS}h"


FEATURES: tuple[FeatureSpec, ...] = (
    # --- the handbook's 15 inputs --------------------------------------------
    FeatureSpec("amount", "transaction", "amount", 0, "transaction amount"),
    FeatureSpec("is_weekend", "transaction", "is_weekend", 0, "made on a weekend"),
    FeatureSpec("is_night", "transaction", "is_night", 0, "made at night (hour <= 6 UTC)"),
    *(
        spec
        for w in (DAY_MS, 7 * DAY_MS, 30 * DAY_MS)
        for spec in (
            _card("count", w, "card's transaction count over {w}"),
            _card("mean_amount", w, "card's mean amount over {w}"),
        )
    ),
    *(
        spec
        for w in TERMINAL_WINDOWS_MS
        for spec in (
            _terminal("count", w, "terminal's transaction count over {w} (before the label delay)"),
            _terminal("fraud_rate", w, "terminal's known fraud rate over {w}"),
        )
    ),
    # --- additions, all computable online within the label delay -------------
    _card("count", HOUR_MS, "burst of card transactions in the last {w}"),
    _card("amount_to_mean", 30 * DAY_MS, "amount far above the card's usual ({w} mean)"),
    _card("amount_zscore", 30 * DAY_MS, "amount unusual for the card ({w} z-score)"),
    _card("amount_to_max", 30 * DAY_MS, "amount above the card's largest in {w}"),
    _card("amount_to_mean", 7 * DAY_MS, "amount far above the card's recent mean ({w})"),
    _card("max_to_mean", 7 * DAY_MS, "card had an outsized amount in the last {w}"),
    FeatureSpec(
        "card_seconds_since_previous",
        "card",
        "seconds_since_previous",
        0,
        "time since the card's previous transaction",
    ),
    FeatureSpec(
        "terminal_days_since_known_fraud",
        "terminal",
        "days_since_known_fraud",
        TERMINAL_FRAUD_LOOKBACK_MS,
        "terminal had a confirmed fraud recently",
    ),
    FeatureSpec(
        "terminal_fraud_count_30d",
        "terminal",
        "fraud_count",
        30 * DAY_MS,
        "terminal's confirmed frauds over 30d",
    ),
)

FEATURE_NAMES: tuple[str, ...] = tuple(spec.name for spec in FEATURES)
FEATURES_BY_NAME: dict[str, FeatureSpec] = {spec.name: spec for spec in FEATURES}
#: The handbook's 15 baseline inputs, for the published-benchmark comparison.
BASELINE_FEATURE_NAMES: tuple[str, ...] = FEATURE_NAMES[:15]


def describe(name: str) -> str:
    """Human-readable text of a feature (falls back to its name)."""
    spec = FEATURES_BY_NAME.get(name)
    return spec.text if spec is not None and spec.text else name
