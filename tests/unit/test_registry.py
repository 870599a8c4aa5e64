"""Model registry: versions, integrity, refs, append-only and crash safety."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from pipeline.errors import FraudError
from pipeline.registry import (
    FeatureMismatchError,
    ModelIntegrityError,
    ModelNotFoundError,
    ModelRegistry,
    RegistryError,
    parse_ref,
    storage,
)

FEATURES = ["amount", "hour", "card_tx_1d", "terminal_risk_7d"]
RANGE = ("2018-04-01", "2018-05-31")


def train_booster(seed: int = 0, rounds: int = 5) -> tuple[xgb.Booster, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(300, len(FEATURES)))
    labels = (features[:, 0] + 0.5 * features[:, 3] > 0.3).astype(int)
    params = {"max_depth": 3, "eta": 0.3, "objective": "binary:logistic", "nthread": 1}
    booster = xgb.train(params, xgb.DMatrix(features, label=labels), num_boost_round=rounds)
    return booster, features


def register(registry: ModelRegistry, booster: xgb.Booster, **overrides: object):
    kwargs: dict[str, object] = {
        "features": FEATURES,
        "params": {"max_depth": 3, "eta": 0.3},
        "data_range": RANGE,
        "metrics": {"auc_roc": 0.87, "average_precision": np.float64(0.69)},
    }
    kwargs.update(overrides)
    return registry.register(booster, **kwargs)  # type: ignore[arg-type]


def visible_entries(registry: ModelRegistry) -> list[str]:
    if not registry.directory.exists():
        return []
    return sorted(p.name for p in registry.directory.iterdir() if p.name != ".registry.lock")


def test_round_trip_predicts_identically(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    booster, features = train_booster()
    version = register(
        registry, booster, feature_set_version="fs-2", lineage={"data": "tx.parquet"}
    )

    loaded = registry.load(version.ref, expected_features=FEATURES)

    np.testing.assert_array_equal(
        loaded.booster.inplace_predict(features), booster.inplace_predict(features)
    )
    assert loaded.features == tuple(FEATURES)
    assert version.version == 1 and version.path == tmp_path / "fraud" / "v0001"
    metadata = json.loads((version.path / "metadata.json").read_text())
    assert metadata["features"] == FEATURES
    assert metadata["data_range"] == {"start": RANGE[0], "end": RANGE[1]}
    assert metadata["metrics"] == {"auc_roc": 0.87, "average_precision": 0.69}
    assert metadata["params"] == {"max_depth": 3, "eta": 0.3}
    assert metadata["xgboost_version"] == xgb.__version__
    assert metadata["feature_set_version"] == "fs-2"
    assert metadata["lineage"] == {"parent_version": None, "data": "tx.parquet"}
    assert metadata["artifact"]["file"] == "model.ubj"
    # the artifact is UBJSON that xgboost reads directly, not a pickle
    direct = xgb.Booster(model_file=str(version.path / "model.ubj"))
    assert direct.num_boosted_rounds() == 5


def test_lineage_parent_defaults_to_the_champion(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    booster, _ = train_booster()
    register(registry, booster, alias="champion")
    second = register(registry, booster)
    assert second.parent_version == 1
    third = register(registry, booster, lineage={"parent_version": 2})
    assert third.parent_version == 2


def test_tampered_artifact_is_refused(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    booster, _ = train_booster()
    version = register(registry, booster)
    artifact = version.path / "model.ubj"
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0x01
    artifact.write_bytes(bytes(data))

    with pytest.raises(ModelIntegrityError, match="sha256 mismatch"):
        registry.load("v1")
    with pytest.raises(ModelIntegrityError):
        registry.promote("v1")
    assert registry.aliases().champion is None


def test_missing_artifact_is_an_integrity_error(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    booster, _ = train_booster()
    version = register(registry, booster)
    (version.path / "model.ubj").unlink()
    with pytest.raises(ModelIntegrityError, match="cannot read"):
        registry.load(1)


@pytest.mark.parametrize("ref", ["v7", "7", "challenger", "fraud:v7", "other:v1", "bogus", "v0"])
def test_unknown_ref_lists_what_exists(tmp_path: Path, ref: str) -> None:
    registry = ModelRegistry(tmp_path)
    booster, _ = train_booster()
    register(registry, booster, alias="champion")
    register(registry, booster)
    with pytest.raises(ModelNotFoundError) as caught:
        registry.load(ref)
    message = str(caught.value)
    assert "\n" not in message
    if ref not in {"bogus", "v0", "other:v1"}:
        assert "v1, v2" in message and "champion=v1" in message
    assert isinstance(caught.value, RegistryError) and isinstance(caught.value, FraudError)


def test_empty_registry_says_so(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "nowhere")
    with pytest.raises(ModelNotFoundError, match="empty"):
        registry.resolve("latest")
    assert registry.list_versions() == []
    assert not (tmp_path / "nowhere").exists()  # reading creates nothing


def test_refs_resolve(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    booster, _ = train_booster()
    for _ in range(3):
        register(registry, booster)
    registry.promote("v2")
    registry.promote("3", alias="challenger")
    assert [registry.resolve(r) for r in ("v1", "1", "V1", "fraud:v1", 1)] == [1] * 5
    assert registry.resolve("latest") == 3
    assert registry.resolve("champion") == 2
    assert registry.resolve("fraud:champion") == 2
    assert registry.resolve("challenger") == 3
    assert parse_ref("fraud:latest").latest


def test_feature_mismatch_names_the_difference(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    booster, _ = train_booster()
    register(registry, booster)

    with pytest.raises(FeatureMismatchError, match=r"not in the model: 'merchant'"):
        registry.load("v1", expected_features=[*FEATURES[:3], "merchant"])
    with pytest.raises(FeatureMismatchError, match=r"another order: column 0 is 'amount'"):
        registry.load("v1", expected_features=list(reversed(FEATURES)))
    with pytest.raises(FeatureMismatchError, match="booster reads 4 features but 3"):
        register(registry, booster, features=FEATURES[:3])


def test_booster_feature_names_must_agree(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    booster, _ = train_booster()
    booster.feature_names = ["a", "b", "c", "d"]
    with pytest.raises(FeatureMismatchError, match="booster's feature names differ"):
        register(registry, booster)
    assert visible_entries(registry) == []


def test_bad_inputs_write_nothing(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    booster, _ = train_booster()
    with pytest.raises(RegistryError, match="starts after it ends"):
        register(registry, booster, data_range=("2018-06-01", "2018-04-01"))
    with pytest.raises(RegistryError, match="ISO"):
        register(registry, booster, data_range=("April", "May"))
    with pytest.raises(RegistryError, match="repeated"):
        register(registry, booster, features=["a", "a", "b", "c"])
    with pytest.raises(RegistryError, match="JSON"):
        register(registry, booster, metrics={"auc": object()})
    assert visible_entries(registry) == []


def test_versions_are_append_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = ModelRegistry(tmp_path)
    first_booster, features = train_booster(seed=1)
    first = register(registry, first_booster)
    before = (first.path / "model.ubj").read_bytes(), (first.path / "metadata.json").read_bytes()

    second = register(registry, train_booster(seed=2)[0])
    assert second.version == 2 and second.sha256 != first.sha256
    assert (
        (first.path / "model.ubj").read_bytes(),
        (first.path / "metadata.json").read_bytes(),
    ) == before

    # even if allocation went wrong, an existing version directory is never replaced
    monkeypatch.setattr(ModelRegistry, "_version_numbers", lambda self: [])
    with pytest.raises(RegistryError, match="never overwritten"):
        register(registry, train_booster(seed=3)[0])
    monkeypatch.undo()
    assert (first.path / "model.ubj").read_bytes() == before[0]
    np.testing.assert_array_equal(
        registry.load(1).booster.inplace_predict(features), first_booster.inplace_predict(features)
    )
    assert visible_entries(registry) == ["v0001", "v0002"]


@pytest.mark.parametrize("fail_on_call", [1, 2])
def test_crash_mid_register_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_on_call: int
) -> None:
    registry = ModelRegistry(tmp_path)
    booster, _ = train_booster()
    register(registry, booster)
    real_write = storage.write_file
    calls = 0

    def failing_write(path: Path, data: bytes) -> None:
        nonlocal calls
        calls += 1
        if calls == fail_on_call:
            path.write_bytes(data[: len(data) // 2])  # a torn write, then the crash
            raise OSError("disk full")
        real_write(path, data)

    monkeypatch.setattr(storage, "write_file", failing_write)
    with pytest.raises(OSError, match="disk full"):
        register(registry, booster)
    monkeypatch.undo()

    assert visible_entries(registry) == ["v0001"]
    assert [v.version for v in registry.list_versions()] == [1]
    assert register(registry, booster).version == 2


def test_leftovers_of_a_killed_writer_are_ignored_then_swept(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    booster, _ = train_booster()
    register(registry, booster)
    stale = registry.directory / ".tmp-v0002-dead"
    stale.mkdir()
    (stale / "model.ubj").write_bytes(b"partial")
    (registry.directory / "v12-notes").mkdir()  # not a canonical version directory

    assert [v.version for v in registry.list_versions()] == [1]
    assert registry.resolve("latest") == 1
    assert register(registry, booster).version == 2
    assert not stale.exists()


def test_list_and_show(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    booster, _ = train_booster()
    register(registry, booster, alias="champion")
    register(registry, booster, alias="challenger", data_range=("2018-05-01", "2018-06-30"))

    versions = registry.list_versions()
    assert [v.label for v in versions] == ["v1", "v2"]
    assert versions[1].data_range == ("2018-05-01", "2018-06-30")
    shown = registry.show("challenger")
    assert shown["version"] == 2 and shown["aliases"] == ["challenger"]
    assert shown["ref"] == "fraud:v2" and shown["path"].endswith("v0002")
    assert registry.show("v1")["aliases"] == ["champion"]


def test_metadata_for_another_version_is_refused(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    booster, _ = train_booster()
    register(registry, booster)
    second = register(registry, booster)
    metadata = json.loads((second.path / "metadata.json").read_text())
    metadata["version"] = 1
    (second.path / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ModelIntegrityError, match="describes fraud:v1"):
        registry.load("v2")
