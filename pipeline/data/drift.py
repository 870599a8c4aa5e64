"""Drift injected into simulated data, and the ``--drift`` SPEC grammar.

A spec lists one or more drift kinds separated by ``;``. Each kind is a name,
``@``, then comma-separated ``key=value`` parameters; ``day`` (the first
simulated day it applies to, counted from 0) is required::

    covariate@day=90,share=0.5,factor=1.8;card_testing@day=90;fraud_rate@day=120,factor=3

Kinds (each at most once) and their parameters, defaults in brackets:

``covariate``
    From ``day`` on, a random ``share`` [0.5] of customers spend ``factor``
    [1.8] times their usual amount (mean and spread both scaled). The
    labelling rules do not change, so more amounts exceed 220 and are fraud.
``card_testing``
    A fraud pattern absent before ``day``: each day ``cards_per_day`` [10]
    random cards see 2..``probes`` [5] small charges in (0, ``probe_max``]
    [2.0] a few minutes apart at one terminal, then a cash-out in
    [``cashout_min``, ``cashout_max``] [100, 300]; all labelled fraud with
    scenario 4.
``fraud_rate``
    From ``day`` on, the number of terminals (2) and cards (3) compromised
    each day is multiplied by ``factor`` [3] (rounded), or set directly with
    ``terminals=N`` / ``customers=N``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Final

from pipeline.data.errors import DriftSpecError

GRAMMAR_HELP: Final = (
    "SPEC is KIND@key=value,... with several kinds separated by ';'. Kinds: "
    "covariate (day, share=0.5, factor=1.8); "
    "card_testing (day, cards_per_day=10, probes=5, probe_max=2.0, cashout_min=100, "
    "cashout_max=300); "
    "fraud_rate (day, factor=3, terminals=N, customers=N)."
)


@dataclass(frozen=True)
class CovariateShift:
    """From ``day`` on, a ``share`` of customers spend ``factor`` times as much."""

    day: int
    share: float = 0.5
    factor: float = 1.8

    def __post_init__(self) -> None:
        _check_day(self.day, "covariate")
        _check(0.0 < self.share <= 1.0, "covariate: share must be in (0, 1]")
        _check(self.factor > 0.0, "covariate: factor must be > 0")


@dataclass(frozen=True)
class CardTesting:
    """From ``day`` on, stolen cards are probed with small charges, then cashed out."""

    day: int
    cards_per_day: int = 10
    probes: int = 5
    probe_max: float = 2.0
    cashout_min: float = 100.0
    cashout_max: float = 300.0

    def __post_init__(self) -> None:
        _check_day(self.day, "card_testing")
        _check(self.cards_per_day >= 1, "card_testing: cards_per_day must be >= 1")
        _check(2 <= self.probes <= 50, "card_testing: probes must be in [2, 50]")
        _check(self.probe_max >= 0.01, "card_testing: probe_max must be >= 0.01")
        _check(
            0.01 <= self.cashout_min <= self.cashout_max,
            "card_testing: need 0.01 <= cashout_min <= cashout_max",
        )


@dataclass(frozen=True)
class FraudRateChange:
    """From ``day`` on, more (or fewer) terminals and cards are compromised each day."""

    day: int
    factor: float = 3.0
    terminals: int | None = None
    customers: int | None = None

    def __post_init__(self) -> None:
        _check_day(self.day, "fraud_rate")
        _check(self.factor >= 0.0, "fraud_rate: factor must be >= 0")
        for name in ("terminals", "customers"):
            value = getattr(self, name)
            _check(value is None or value >= 0, f"fraud_rate: {name} must be >= 0")

    def terminals_per_day(self, base: int) -> int:
        """Compromised terminals per day once this change applies."""
        return self.terminals if self.terminals is not None else round(base * self.factor)

    def customers_per_day(self, base: int) -> int:
        """Compromised customers per day once this change applies."""
        return self.customers if self.customers is not None else round(base * self.factor)


@dataclass(frozen=True)
class DriftSpec:
    """All drift to inject; ``None`` means that kind is absent."""

    covariate: CovariateShift | None = None
    card_testing: CardTesting | None = None
    fraud_rate: FraudRateChange | None = None

    @property
    def is_empty(self) -> bool:
        """True when no drift is injected."""
        return self.covariate is None and self.card_testing is None and self.fraud_rate is None

    @property
    def first_day(self) -> int | None:
        """The earliest day any drift applies, or None without drift."""
        return min(self._days(), default=None)

    @property
    def last_day(self) -> int | None:
        """The latest day a drift kind starts, or None without drift."""
        return max(self._days(), default=None)

    def _days(self) -> list[int]:
        return [k.day for k in (self.covariate, self.card_testing, self.fraud_rate) if k]

    def __str__(self) -> str:
        return format_drift_spec(self)


_KINDS: Final[dict[str, type[Any]]] = {
    "covariate": CovariateShift,
    "card_testing": CardTesting,
    "fraud_rate": FraudRateChange,
}


def parse_drift_spec(spec: str) -> DriftSpec:
    """Parse a SPEC string (see the module docstring); blank means no drift.

    Raises :class:`DriftSpecError` with one message naming the offending part.
    """
    result = DriftSpec()
    for raw in spec.split(";"):
        part = raw.strip()
        if not part:
            continue
        name, sep, params = part.partition("@")
        name = name.strip()
        if name not in _KINDS:
            raise DriftSpecError(
                f"unknown drift kind {name!r} in {part!r}; expected one of {', '.join(_KINDS)}"
            )
        if not sep:
            raise DriftSpecError(f"{name}: missing '@day=N' in {part!r}")
        if getattr(result, name) is not None:
            raise DriftSpecError(f"drift kind {name!r} given more than once")
        kind = _parse_kind(name, _KINDS[name], params)
        result = replace(result, **{name: kind})
    return result


def format_drift_spec(spec: DriftSpec) -> str:
    """The canonical SPEC string for ``spec`` (parses back to an equal spec)."""
    parts = []
    for name in _KINDS:
        kind = getattr(spec, name)
        if kind is None:
            continue
        params = ",".join(
            f"{f.name}={getattr(kind, f.name)}"
            for f in fields(kind)
            if getattr(kind, f.name) is not None
        )
        parts.append(f"{name}@{params}")
    return ";".join(parts)


def _parse_kind(name: str, cls: type[Any], params: str) -> Any:
    types = {f.name: f.type for f in fields(cls)}
    values: dict[str, int | float] = {}
    for item in params.split(","):
        item = item.strip()
        if not item:
            continue
        key, eq, text = item.partition("=")
        key, text = key.strip(), text.strip()
        if not eq or not key or not text:
            raise DriftSpecError(f"{name}: expected key=value, got {item!r}")
        if key not in types:
            raise DriftSpecError(f"{name}: unknown parameter {key!r}; expected {', '.join(types)}")
        if key in values:
            raise DriftSpecError(f"{name}: parameter {key!r} given more than once")
        values[key] = _parse_number(name, key, text, integer="int" in str(types[key]))
    if "day" not in values:
        raise DriftSpecError(f"{name}: 'day' is required (e.g. {name}@day=90)")
    return cls(**values)


def _parse_number(kind: str, key: str, text: str, *, integer: bool) -> int | float:
    try:
        if integer:
            return int(text)
        value = float(text)
    except ValueError:
        expected = "an integer" if integer else "a number"
        raise DriftSpecError(f"{kind}: {key} must be {expected}, got {text!r}") from None
    if not math.isfinite(value):
        raise DriftSpecError(f"{kind}: {key} must be finite, got {text!r}")
    return value


def _check_day(day: int, kind: str) -> None:
    _check(day >= 0, f"{kind}: day must be >= 0")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise DriftSpecError(message)
