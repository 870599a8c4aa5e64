"""Records of the registry: a stored version, a loaded model, alias state and its changes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.registry.errors import ModelIntegrityError
from pipeline.registry.refs import Alias, version_label

if TYPE_CHECKING:
    import xgboost

METADATA_FILE = "metadata.json"
METADATA_SCHEMA = 1


@dataclass(frozen=True)
class ModelVersion:
    """One immutable version as stored on disk (``<root>/<name>/v0003/``)."""

    name: str
    version: int
    path: Path
    created_at: str
    artifact_file: str
    sha256: str
    features: tuple[str, ...]
    feature_set_version: str
    data_range: tuple[str, str]
    metrics: Mapping[str, Any]
    params: Mapping[str, Any]
    lineage: Mapping[str, Any]
    xgboost_version: str
    metadata: Mapping[str, Any] = field(repr=False)

    @property
    def label(self) -> str:
        """``"v3"``."""
        return version_label(self.version)

    @property
    def ref(self) -> str:
        """The fully qualified reference, ``"fraud:v3"``."""
        return f"{self.name}:{self.label}"

    @property
    def artifact_path(self) -> Path:
        return self.path / self.artifact_file

    @property
    def parent_version(self) -> int | None:
        parent = self.lineage.get("parent_version")
        return parent if isinstance(parent, int) else None

    @classmethod
    def from_metadata(cls, path: Path, data: Mapping[str, Any]) -> ModelVersion:
        """Build from a parsed ``metadata.json``; a malformed one is an integrity error."""
        try:
            artifact = data["artifact"]
            data_range = data["data_range"]
            if Path(str(artifact["file"])).name != artifact["file"]:
                raise ValueError(f"artifact file {artifact['file']!r} is not a plain file name")
            return cls(
                name=str(data["name"]),
                version=int(data["version"]),
                path=path,
                created_at=str(data["created_at"]),
                artifact_file=str(artifact["file"]),
                sha256=str(artifact["sha256"]),
                features=tuple(str(name) for name in data["features"]),
                feature_set_version=str(data.get("feature_set_version", "")),
                data_range=(str(data_range["start"]), str(data_range["end"])),
                metrics=dict(data.get("metrics", {})),
                params=dict(data.get("params", {})),
                lineage=dict(data.get("lineage", {})),
                xgboost_version=str(data.get("xgboost_version", "")),
                metadata=dict(data),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelIntegrityError(
                f"malformed {path / METADATA_FILE}: {type(exc).__name__}: {exc}"
            ) from exc


@dataclass(frozen=True)
class LoadedModel:
    """A verified booster together with the version it was loaded from."""

    booster: xgboost.Booster
    version: ModelVersion

    @property
    def features(self) -> tuple[str, ...]:
        """Feature names in the column order the booster expects."""
        return self.version.features

    @property
    def metadata(self) -> Mapping[str, Any]:
        return self.version.metadata


@dataclass(frozen=True)
class AliasState:
    """Where the aliases point, plus the champions that ``rollback`` can restore."""

    champion: int | None = None
    challenger: int | None = None
    previous_champions: tuple[int, ...] = ()
    updated_at: str | None = None

    def get(self, alias: Alias) -> int | None:
        return self.champion if alias == "champion" else self.challenger

    def aliases_of(self, version: int) -> list[Alias]:
        """The aliases that point at ``version`` (for listings)."""
        found: list[Alias] = []
        if self.champion == version:
            found.append("champion")
        if self.challenger == version:
            found.append("challenger")
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "champion": self.champion,
            "challenger": self.challenger,
            "previous_champions": list(self.previous_champions),
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class AliasEvent:
    """One alias move, as appended to ``aliases-history.jsonl``."""

    time: str
    alias: Alias
    previous: int | None
    current: int | None
    action: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "alias": self.alias,
            "from": self.previous,
            "to": self.current,
            "action": self.action,
            "reason": self.reason,
        }

    def describe(self) -> str:
        """``"champion: v2 -> v3"``."""
        return f"{self.alias}: {version_label(self.previous)} -> {version_label(self.current)}"


@dataclass(frozen=True)
class AliasUpdate:
    """The result of promote/rollback/set_alias: the new state and what moved.

    ``events`` is empty when nothing changed (e.g. promoting the champion again).
    Callers publish this (e.g. as a model-control message) so scorers hot-swap.
    """

    name: str
    state: AliasState
    events: tuple[AliasEvent, ...]

    @property
    def changed(self) -> bool:
        return bool(self.events)
