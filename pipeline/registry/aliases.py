"""The ``champion``/``challenger`` aliases: pure state transitions and their storage.

State lives in ``aliases.json`` (replaced atomically), including the stack of
earlier champions that ``rollback`` pops; every move is also appended to
``aliases-history.jsonl`` as an audit trail. Callers hold the registry lock
around read-modify-write.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pipeline.registry import storage
from pipeline.registry.errors import ModelIntegrityError, RegistryError
from pipeline.registry.records import AliasEvent, AliasState
from pipeline.registry.refs import Alias, version_label

ALIASES_FILE = "aliases.json"
HISTORY_FILE = "aliases-history.jsonl"

Transition = tuple[AliasState, tuple[AliasEvent, ...]]


def promote(
    state: AliasState, alias: Alias, version: int, *, reason: str, now: str, action: str = "promote"
) -> Transition:
    """Point ``alias`` at ``version``.

    A new champion pushes the old one onto the rollback stack, and clears the
    challenger if it was the version promoted. A version cannot be challenger
    to itself. Promoting to where an alias already points changes nothing.
    """
    if alias == "challenger":
        if version == state.champion:
            raise RegistryError(
                f"{version_label(version)} is the champion; a challenger must be another version"
            )
        if version == state.challenger:
            return state, ()
        event = AliasEvent(now, "challenger", state.challenger, version, action, reason)
        return _replace(state, now, challenger=version), (event,)

    if version == state.champion:
        return state, ()
    events = [AliasEvent(now, "champion", state.champion, version, action, reason)]
    previous = state.previous_champions
    if state.champion is not None:
        previous = (*previous, state.champion)
    challenger = state.challenger
    if challenger == version:
        events.append(AliasEvent(now, "challenger", version, None, "clear", reason))
        challenger = None
    new_state = _replace(
        state, now, champion=version, challenger=challenger, previous_champions=previous
    )
    return new_state, tuple(events)


def clear(state: AliasState, alias: Alias, *, reason: str, now: str) -> Transition:
    """Unset the challenger (the champion can only be replaced or rolled back)."""
    if alias == "champion":
        raise RegistryError(
            "the champion cannot be cleared; promote another version or roll back instead"
        )
    if state.challenger is None:
        return state, ()
    event = AliasEvent(now, "challenger", state.challenger, None, "clear", reason)
    return _replace(state, now, challenger=None), (event,)


def rollback(state: AliasState, *, reason: str, now: str) -> Transition:
    """Restore the champion before the current one; repeatable down the stack."""
    if state.champion is None:
        raise RegistryError("nothing to roll back: no champion has been set")
    if not state.previous_champions:
        raise RegistryError(
            f"nothing to roll back to: champion {version_label(state.champion)} "
            "has no earlier champion"
        )
    target = state.previous_champions[-1]
    events = [AliasEvent(now, "champion", state.champion, target, "rollback", reason)]
    challenger = state.challenger
    if challenger == target:
        events.append(AliasEvent(now, "challenger", target, None, "clear", reason))
        challenger = None
    new_state = AliasState(
        champion=target,
        challenger=challenger,
        previous_champions=state.previous_champions[:-1],
        updated_at=now,
    )
    return new_state, tuple(events)


def _replace(state: AliasState, now: str, **changes: Any) -> AliasState:
    return dataclasses.replace(state, updated_at=now, **changes)


class AliasStore:
    """Reads and writes the alias files of one model name's directory."""

    def __init__(self, directory: Path) -> None:
        self.aliases_path = directory / ALIASES_FILE
        self.history_path = directory / HISTORY_FILE

    def read(self) -> AliasState:
        """The current state; no file yet means no aliases set."""
        if not self.aliases_path.exists():
            return AliasState()
        try:
            data = storage.read_json(self.aliases_path)
            return AliasState(
                champion=_optional_int(data.get("champion")),
                challenger=_optional_int(data.get("challenger")),
                previous_champions=tuple(int(v) for v in data.get("previous_champions", [])),
                updated_at=data.get("updated_at"),
            )
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise ModelIntegrityError(f"unreadable {self.aliases_path}: {exc}") from exc

    def write(self, state: AliasState, events: tuple[AliasEvent, ...]) -> None:
        """Replace the state atomically, then append the events to the history log."""
        text = storage.dumps_json(state.to_json()) + "\n"
        storage.replace_file(self.aliases_path, text.encode("utf-8"))
        for event in events:
            storage.append_line(self.history_path, storage.dumps_json(event.to_json(), indent=None))

    def history(self) -> list[AliasEvent]:
        """Every recorded alias move, oldest first."""
        if not self.history_path.exists():
            return []
        events = []
        for number, line in enumerate(self.history_path.read_text("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                data = storage.loads_json(line)
                events.append(
                    AliasEvent(
                        time=str(data["time"]),
                        alias=data["alias"],
                        previous=_optional_int(data["from"]),
                        current=_optional_int(data["to"]),
                        action=str(data.get("action", "")),
                        reason=str(data.get("reason", "")),
                    )
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ModelIntegrityError(
                    f"unreadable line {number} of {self.history_path}: {exc}"
                ) from exc
        return events


def _optional_int(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected a version number, got {value!r}")
    return value
