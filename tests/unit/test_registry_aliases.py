"""Registry aliases: promote, challenger handling, rollback, history, atomic alias file."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from pipeline.registry import AliasUpdate, ModelRegistry, RegistryError, storage
from pipeline.registry import aliases as alias_rules
from pipeline.registry.records import AliasState

FEATURES = ["f0", "f1", "f2"]


@pytest.fixture(scope="module")
def booster() -> xgb.Booster:
    rng = np.random.default_rng(3)
    features = rng.normal(size=(100, len(FEATURES)))
    labels = (features[:, 0] > 0).astype(int)
    return xgb.train({"max_depth": 2, "nthread": 1}, xgb.DMatrix(features, label=labels), 3)


@pytest.fixture
def registry(tmp_path: Path, booster: xgb.Booster) -> ModelRegistry:
    registry = ModelRegistry(tmp_path)
    for _ in range(4):
        registry.register(
            booster,
            features=FEATURES,
            params={},
            data_range=("2018-04-01", "2018-04-30"),
            metrics={"auc_roc": 0.8},
        )
    return registry


def test_promote_and_rollback_sequence(registry: ModelRegistry) -> None:
    first = registry.promote("v1", reason="initial")
    assert first.state.champion == 1 and first.changed
    registry.promote("v2", reason="better AP")
    registry.promote("v3", alias="challenger", reason="shadow test")
    update = registry.promote("challenger", reason="won the shadow test")

    assert update.state.champion == 3
    assert update.state.challenger is None  # promoting the challenger clears it
    assert update.state.previous_champions == (1, 2)
    assert [e.describe() for e in update.events] == ["champion: v2 -> v3", "challenger: v3 -> none"]

    back = registry.rollback(reason="alert storm")
    assert back.state.champion == 2 and back.events[0].action == "rollback"
    assert registry.resolve("champion") == 2
    assert registry.rollback().state.champion == 1  # repeatable: further back each time
    with pytest.raises(RegistryError, match="nothing to roll back to: champion v1"):
        registry.rollback()
    assert registry.aliases().champion == 1

    registry.promote("v4")  # a promote after rollbacks starts a new branch
    assert registry.aliases().previous_champions == (1,)
    assert registry.rollback().state.champion == 1

    history = [(e.alias, e.previous, e.current, e.action, e.reason) for e in registry.history()]
    assert history == [
        ("champion", None, 1, "promote", "initial"),
        ("champion", 1, 2, "promote", "better AP"),
        ("challenger", None, 3, "promote", "shadow test"),
        ("champion", 2, 3, "promote", "won the shadow test"),
        ("challenger", 3, None, "clear", "won the shadow test"),
        ("champion", 3, 2, "rollback", "alert storm"),
        ("champion", 2, 1, "rollback", ""),
        ("champion", 1, 4, "promote", ""),
        ("champion", 4, 1, "rollback", ""),
    ]
    raw = (registry.directory / "aliases-history.jsonl").read_text().splitlines()
    assert json.loads(raw[0]).keys() >= {"time", "alias", "from", "to", "reason"}


def test_rollback_without_champion_is_an_error(registry: ModelRegistry) -> None:
    with pytest.raises(RegistryError, match="no champion"):
        registry.rollback()


def test_challenger_rules(registry: ModelRegistry) -> None:
    registry.promote("v1")
    with pytest.raises(RegistryError, match="is the champion"):
        registry.promote("v1", alias="challenger")
    registry.promote("v2", alias="challenger")
    registry.promote("v3")  # another version becomes champion: challenger stays
    assert (registry.aliases().champion, registry.aliases().challenger) == (3, 2)
    registry.rollback()
    assert (registry.aliases().champion, registry.aliases().challenger) == (1, 2)

    cleared = registry.set_alias("challenger", None, reason="rejected")
    assert cleared.state.challenger is None and cleared.events[0].action == "clear"
    with pytest.raises(RegistryError, match="cannot be cleared"):
        registry.set_alias("champion", None)
    moved = registry.set_alias("challenger", "v4")
    assert moved.state.challenger == 4 and moved.events[0].action == "set"


def test_rollback_onto_the_challenger_clears_it(registry: ModelRegistry) -> None:
    registry.promote("v1")
    registry.promote("v2")
    registry.promote("v1", alias="challenger")
    update = registry.rollback()
    assert (update.state.champion, update.state.challenger) == (1, None)


def test_repeated_promote_changes_nothing(registry: ModelRegistry) -> None:
    registry.promote("v2")
    again = registry.promote("champion")
    assert not again.changed and again.state.champion == 2
    assert len(registry.history()) == 1


def test_hook_sees_every_change(tmp_path: Path, booster: xgb.Booster) -> None:
    seen: list[AliasUpdate] = []
    registry = ModelRegistry(tmp_path, on_alias_change=seen.append)
    kwargs = {"features": FEATURES, "params": {}, "data_range": ("2018-04-01", "2018-04-02")}
    registry.register(booster, metrics={}, alias="champion", **kwargs)  # type: ignore[arg-type]
    registry.register(booster, metrics={}, **kwargs)  # type: ignore[arg-type]
    registry.promote("v2")
    registry.promote("v2")  # no change, no call
    registry.rollback()
    assert [u.state.champion for u in seen] == [1, 2, 1]
    assert all(u.name == "fraud" for u in seen)


def test_failed_alias_write_keeps_the_old_file(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.promote("v1")
    before = (registry.directory / "aliases.json").read_bytes()

    def crash(src: object, dst: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        registry.promote("v2")
    monkeypatch.undo()

    assert (registry.directory / "aliases.json").read_bytes() == before
    assert registry.aliases().champion == 1
    assert len(registry.history()) == 1
    assert not [p for p in registry.directory.iterdir() if p.name.startswith(storage.TEMP_PREFIX)]


def test_readers_never_see_a_partial_alias_file(registry: ModelRegistry) -> None:
    registry.promote("v1")
    path = registry.directory / "aliases.json"
    stop = threading.Event()
    seen: set[int] = set()
    errors: list[Exception] = []

    def read_loop() -> None:
        while not stop.is_set():
            try:
                seen.add(json.loads(path.read_bytes())["champion"])
            except Exception as exc:
                errors.append(exc)

    reader = threading.Thread(target=read_loop)
    reader.start()
    try:
        for round_number in range(40):
            registry.promote(f"v{round_number % 4 + 1}")
    finally:
        stop.set()
        reader.join()
    assert errors == []
    assert seen <= {1, 2, 3, 4} and len(seen) > 1


def test_transitions_are_pure() -> None:
    state = AliasState(champion=1, challenger=2, previous_champions=())
    new_state, events = alias_rules.promote(state, "champion", 2, reason="r", now="t")
    assert state.champion == 1  # input untouched
    assert (new_state.champion, new_state.challenger, new_state.previous_champions) == (
        2,
        None,
        (1,),
    )
    assert [e.to_json()["to"] for e in events] == [2, None]
