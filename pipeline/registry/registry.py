"""The versioned, append-only model registry on the local filesystem.

Layout (see ``models/README.md``)::

    <root>/<name>/v0001/model.ubj        booster as UBJSON (never pickle)
    <root>/<name>/v0001/metadata.json    sha256, features, params, data range, metrics, lineage
    <root>/<name>/aliases.json           champion, challenger, earlier champions
    <root>/<name>/aliases-history.jsonl  every alias move
    <root>/<name>/.registry.lock         flock serialising writers

A version directory is built under a temporary name and renamed into place, so
readers never see a half-written version; writers serialise on the lock file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.registry import aliases as alias_rules
from pipeline.registry import storage
from pipeline.registry.errors import (
    FeatureMismatchError,
    ModelIntegrityError,
    ModelNotFoundError,
    RegistryError,
)
from pipeline.registry.features import duplicates, feature_difference
from pipeline.registry.records import (
    METADATA_FILE,
    METADATA_SCHEMA,
    AliasEvent,
    AliasState,
    AliasUpdate,
    LoadedModel,
    ModelVersion,
)
from pipeline.registry.refs import ALIASES, Alias, parse_ref, validate_name, version_label

if TYPE_CHECKING:
    import xgboost

ARTIFACT_FILE = "model.ubj"
LOCK_FILE = ".registry.lock"
_VERSION_DIR_RE = re.compile(r"^v(\d+)$")

AliasHook = Callable[[AliasUpdate], None]


class ModelRegistry:
    """Versions of one model name under ``root``; engine-free (no Kafka).

    ``on_alias_change`` is called with the :class:`AliasUpdate` after every
    alias move has been made durable (e.g. to publish a model-control message
    so scorers hot-swap). An exception from it propagates; the move stands.
    """

    def __init__(
        self, root: Path | str, name: str = "fraud", *, on_alias_change: AliasHook | None = None
    ) -> None:
        self.root = Path(root)
        self.name = validate_name(name)
        self.directory = self.root / self.name
        self.on_alias_change = on_alias_change
        self._aliases = alias_rules.AliasStore(self.directory)

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.root)!r}, {self.name!r})"

    # --- writing versions -------------------------------------------------

    def register(
        self,
        booster: xgboost.Booster,
        *,
        features: Sequence[str],
        params: Mapping[str, Any],
        data_range: tuple[str, str],
        metrics: Mapping[str, Any],
        lineage: Mapping[str, Any] | None = None,
        feature_set_version: str = "",
        alias: Alias | None = None,
    ) -> ModelVersion:
        """Store ``booster`` as the next version and return it.

        ``features`` is the column order the booster was trained on;
        ``data_range`` the (start, end) ISO dates of its training data.
        ``lineage`` defaults its ``parent_version`` to the champion at
        registration time. With ``alias`` the new version is also promoted.
        Nothing is visible unless the whole version was written.
        """
        import xgboost

        feature_list = _checked_features(booster, features)
        start, end = _checked_data_range(data_range)
        if alias is not None and alias not in ALIASES:
            raise RegistryError(f"unknown alias {alias!r}: use one of {', '.join(ALIASES)}")
        try:
            artifact = bytes(booster.save_raw("ubj"))
        except xgboost.core.XGBoostError as exc:
            raise RegistryError(f"cannot serialise the booster: {exc}") from exc
        digest = hashlib.sha256(artifact).hexdigest()

        update: AliasUpdate | None = None
        with self._locked():
            self._sweep_temporaries()
            state = self._aliases.read()
            version = max(self._version_numbers(), default=0) + 1
            metadata: dict[str, Any] = {
                "schema": METADATA_SCHEMA,
                "name": self.name,
                "version": version,
                "created_at": storage.utc_now(),
                "artifact": {
                    "file": ARTIFACT_FILE,
                    "format": "ubj",
                    "sha256": digest,
                    "bytes": len(artifact),
                },
                "xgboost_version": xgboost.__version__,
                "num_boosted_rounds": booster.num_boosted_rounds(),
                "features": feature_list,
                "feature_set_version": feature_set_version,
                "data_range": {"start": start, "end": end},
                "params": dict(params),
                "metrics": dict(metrics),
                "lineage": {"parent_version": state.champion, **dict(lineage or {})},
            }
            try:
                text = storage.dumps_json(metadata) + "\n"
            except (TypeError, ValueError) as exc:
                raise RegistryError(f"metadata is not JSON-serialisable: {exc}") from exc
            final = self._version_dir(version)
            self._write_version_dir(final, artifact, text.encode("utf-8"))
            registered = ModelVersion.from_metadata(final, storage.loads_json(text))
            if alias is not None:
                update = self._apply_locked(
                    lambda current, now: alias_rules.promote(
                        current, alias, version, reason="registered with alias", now=now
                    )
                )
        if update is not None:
            self._notify(update)
        return registered

    def _write_version_dir(self, final: Path, artifact: bytes, metadata: bytes) -> None:
        temp = Path(
            tempfile.mkdtemp(prefix=f"{storage.TEMP_PREFIX}{final.name}-", dir=final.parent)
        )
        try:
            storage.write_file(temp / ARTIFACT_FILE, artifact)
            storage.write_file(temp / METADATA_FILE, metadata)
            storage.fsync_dir(temp)
            if final.exists():  # append-only: never replace an existing version
                raise RegistryError(f"{final} already exists; versions are never overwritten")
            os.rename(temp, final)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        storage.fsync_dir(final.parent)

    # --- reading versions -------------------------------------------------

    def resolve(self, ref: str | int) -> int:
        """The version number ``ref`` names (``champion``, ``v3``, ``3``, ``latest``, ``fraud:v3``)."""
        parsed = parse_ref(ref)
        if parsed.name is not None and parsed.name != self.name:
            raise ModelNotFoundError(
                f"{ref!r} names model {parsed.name!r}, but this registry holds {self.name!r} "
                f"({self.directory})"
            )
        versions = self._version_numbers()
        if parsed.latest:
            if not versions:
                raise ModelNotFoundError(f"no 'latest' model: {self._inventory(versions)}")
            return versions[-1]
        if parsed.alias is not None:
            target = self._aliases.read().get(parsed.alias)
            if target is None:
                raise ModelNotFoundError(
                    f"alias {parsed.alias!r} is not set: {self._inventory(versions)}"
                )
            if target not in versions:
                raise ModelIntegrityError(
                    f"alias {parsed.alias!r} points at {version_label(target)}, which is missing "
                    f"from {self.directory}"
                )
            return target
        assert parsed.version is not None
        if parsed.version not in versions:
            raise ModelNotFoundError(
                f"no model {version_label(parsed.version)}: {self._inventory(versions)}"
            )
        return parsed.version

    def get(self, ref: str | int) -> ModelVersion:
        """The stored metadata of ``ref`` (the artifact is not read)."""
        return self._read_version(self.resolve(ref))

    def load(self, ref: str | int, expected_features: Sequence[str] | None = None) -> LoadedModel:
        """Load the booster of ``ref`` after checking its sha256 and, if given, its features.

        Raises :class:`ModelIntegrityError` for a tampered or unreadable
        artifact and :class:`FeatureMismatchError` when the model's feature list
        (names and order) differs from ``expected_features``.
        """
        import xgboost

        version = self.get(ref)
        if expected_features is not None:
            difference = feature_difference(version.features, list(expected_features))
            if difference is not None:
                raise FeatureMismatchError(
                    f"model {version.ref} does not match the expected features: {difference}"
                )
        artifact = self._read_verified_artifact(version)
        booster = xgboost.Booster()
        try:
            booster.load_model(bytearray(artifact))
        except xgboost.core.XGBoostError as exc:
            raise ModelIntegrityError(f"cannot load {version.artifact_path}: {exc}") from exc
        if booster.num_features() != len(version.features):
            raise ModelIntegrityError(
                f"model {version.ref} reads {booster.num_features()} features but its metadata "
                f"lists {len(version.features)}"
            )
        return LoadedModel(booster=booster, version=version)

    def verify(self, ref: str | int) -> ModelVersion:
        """Check the artifact of ``ref`` against its sha256 without loading it."""
        version = self.get(ref)
        self._read_verified_artifact(version)
        return version

    def list_versions(self) -> list[ModelVersion]:
        """Every stored version, oldest first."""
        return [self._read_version(number) for number in self._version_numbers()]

    def show(self, ref: str | int) -> dict[str, Any]:
        """The metadata of ``ref`` plus its path and the aliases pointing at it."""
        version = self.get(ref)
        data = dict(version.metadata)
        data["ref"] = version.ref
        data["path"] = str(version.path)
        data["aliases"] = list(self._aliases.read().aliases_of(version.version))
        return data

    # --- aliases ------------------------------------------------------------

    def aliases(self) -> AliasState:
        """Where ``champion`` and ``challenger`` point now."""
        return self._aliases.read()

    def history(self) -> list[AliasEvent]:
        """Every alias move, oldest first."""
        return self._aliases.history()

    def promote(self, ref: str | int, alias: Alias = "champion", reason: str = "") -> AliasUpdate:
        """Point ``alias`` at ``ref`` after verifying its artifact.

        The previous champion is remembered for :meth:`rollback`; promoting the
        challenger to champion clears the challenger.
        """
        return self._move(alias, ref, reason, action="promote")

    def set_alias(self, alias: Alias, ref: str | int | None, reason: str = "") -> AliasUpdate:
        """Point ``alias`` at ``ref``, or clear it with ``None`` (challenger only)."""
        return self._move(alias, ref, reason, action="set")

    def rollback(self, reason: str = "") -> AliasUpdate:
        """Restore the champion before the current one; call again to go further back."""
        with self._locked():

            def step(state: AliasState, now: str) -> alias_rules.Transition:
                new_state, events = alias_rules.rollback(state, reason=reason, now=now)
                if new_state.champion is not None:  # refuse to restore a damaged artifact
                    self._read_verified_artifact(self._read_version(new_state.champion))
                return new_state, events

            update = self._apply_locked(step)
        self._notify(update)
        return update

    def _move(
        self, alias: Alias, ref: str | int | None, reason: str, *, action: str
    ) -> AliasUpdate:
        if alias not in ALIASES:
            raise RegistryError(f"unknown alias {alias!r}: use one of {', '.join(ALIASES)}")
        with self._locked():
            if ref is None:
                update = self._apply_locked(
                    lambda state, now: alias_rules.clear(state, alias, reason=reason, now=now)
                )
            else:
                version = self.verify(ref).version
                update = self._apply_locked(
                    lambda state, now: alias_rules.promote(
                        state, alias, version, reason=reason, now=now, action=action
                    )
                )
        self._notify(update)
        return update

    def _apply_locked(
        self, transition: Callable[[AliasState, str], alias_rules.Transition]
    ) -> AliasUpdate:
        state, events = transition(self._aliases.read(), storage.utc_now())
        if events:
            self._aliases.write(state, events)
        return AliasUpdate(name=self.name, state=self._aliases.read(), events=events)

    def _notify(self, update: AliasUpdate) -> None:
        if update.changed and self.on_alias_change is not None:
            self.on_alias_change(update)

    # --- internals ----------------------------------------------------------

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        return storage.exclusive_lock(self.directory / LOCK_FILE)

    def _sweep_temporaries(self) -> None:
        """Remove leftovers of writers killed mid-write (safe: we hold the lock)."""
        for entry in self.directory.iterdir():
            if entry.name.startswith(storage.TEMP_PREFIX):
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)

    def _version_numbers(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        numbers = []
        for entry in self.directory.iterdir():
            match = _VERSION_DIR_RE.match(entry.name)
            canonical = match is not None and entry.name == f"v{int(match.group(1)):04d}"
            if match and canonical and entry.is_dir():
                numbers.append(int(match.group(1)))
        return sorted(numbers)

    def _version_dir(self, version: int) -> Path:
        return self.directory / f"v{version:04d}"

    def _read_version(self, version: int) -> ModelVersion:
        path = self._version_dir(version)
        try:
            data = storage.read_json(path / METADATA_FILE)
        except (OSError, ValueError) as exc:
            raise ModelIntegrityError(
                f"unreadable metadata of {version_label(version)}: {exc}"
            ) from exc
        if not isinstance(data, dict):
            raise ModelIntegrityError(f"malformed {path / METADATA_FILE}: not a JSON object")
        record = ModelVersion.from_metadata(path, data)
        if record.version != version or record.name != self.name:
            raise ModelIntegrityError(
                f"{path / METADATA_FILE} describes {record.ref}, not {self.name}:{version_label(version)}"
            )
        return record

    def _read_verified_artifact(self, version: ModelVersion) -> bytes:
        try:
            artifact = version.artifact_path.read_bytes()
        except OSError as exc:
            raise ModelIntegrityError(f"cannot read the artifact of {version.ref}: {exc}") from exc
        actual = hashlib.sha256(artifact).hexdigest()
        if actual != version.sha256:
            raise ModelIntegrityError(
                f"sha256 mismatch for {version.artifact_path}: expected {version.sha256}, "
                f"found {actual}; the artifact was modified or corrupted"
            )
        return artifact

    def _inventory(self, versions: list[int]) -> str:
        if not versions:
            return f"the registry {self.name!r} is empty ({self.directory})"
        labels = [version_label(v) for v in versions]
        if len(labels) > 8:
            labels = [*labels[:3], "...", *labels[-3:]]
        state = self._aliases.read()
        return (
            f"registry {self.name!r} has {len(versions)} version(s): {', '.join(labels)}; "
            f"champion={version_label(state.champion)}, challenger={version_label(state.challenger)}"
        )


def _checked_features(booster: xgboost.Booster, features: Sequence[str]) -> list[str]:
    if isinstance(features, str):
        raise RegistryError("features must be a sequence of names, not one string")
    names = [str(name) for name in features]
    if not names:
        raise RegistryError("features must not be empty")
    repeated = duplicates(names)
    if repeated:
        raise RegistryError(f"repeated feature names: {', '.join(repeated)}")
    if booster.num_features() != len(names):
        raise FeatureMismatchError(
            f"the booster reads {booster.num_features()} features but {len(names)} were named"
        )
    if booster.feature_names is not None:
        difference = feature_difference(list(booster.feature_names), names)
        if difference is not None:
            raise FeatureMismatchError(f"the booster's feature names differ: {difference}")
    return names


def _checked_data_range(data_range: tuple[Any, Any]) -> tuple[str, str]:
    try:
        start, end = data_range
    except (TypeError, ValueError) as exc:
        raise RegistryError("data_range must be a (start, end) pair") from exc
    texts = [
        value.isoformat() if isinstance(value, dt.date) else str(value) for value in (start, end)
    ]
    try:
        parsed = [dt.datetime.fromisoformat(text) for text in texts]
    except ValueError as exc:
        raise RegistryError(f"data_range must hold ISO dates or times: {exc}") from exc
    try:
        reversed_range = parsed[0] > parsed[1]
    except TypeError:  # one naive, one aware: order unknown
        reversed_range = False
    if reversed_range:
        raise RegistryError(f"data_range starts after it ends: {texts[0]} > {texts[1]}")
    return texts[0], texts[1]
