"""Comparison of a model's feature list with the one a caller scores with."""

from __future__ import annotations

from collections.abc import Sequence

_SHOWN = 5


def feature_difference(model: Sequence[str], expected: Sequence[str]) -> str | None:
    """Describe how ``model`` differs from ``expected``; ``None`` when identical.

    Order matters: a booster reads columns by position, so the same names in
    another order would silently score garbage.
    """
    model, expected = list(model), list(expected)
    if model == expected:
        return None
    model_set, expected_set = set(model), set(expected)
    parts = []
    missing = [name for name in expected if name not in model_set]
    extra = [name for name in model if name not in expected_set]
    if missing:
        parts.append(f"expected but not in the model: {_names(missing)}")
    if extra:
        parts.append(f"in the model but not expected: {_names(extra)}")
    if not parts:
        if len(model) != len(expected):
            parts.append(f"repeated names ({len(model)} model columns, {len(expected)} expected)")
        else:
            position = next(
                i for i, (a, b) in enumerate(zip(model, expected, strict=True)) if a != b
            )
            parts.append(
                f"same names in another order: column {position} is {model[position]!r} "
                f"in the model, {expected[position]!r} expected"
            )
    return "; ".join(parts)


def duplicates(names: Sequence[str]) -> list[str]:
    """Names that occur more than once, in first-seen order."""
    seen: set[str] = set()
    repeated: list[str] = []
    for name in names:
        if name in seen and name not in repeated:
            repeated.append(name)
        seen.add(name)
    return repeated


def _names(names: list[str]) -> str:
    shown = ", ".join(repr(name) for name in names[:_SHOWN])
    more = len(names) - _SHOWN
    return shown + (f" and {more} more" if more > 0 else "")
