"""Versioned, append-only model registry with ``champion``/``challenger`` aliases.

Engine-free: plain files under a root directory, safe with concurrent writers.
"""

from pipeline.registry.errors import (
    FeatureMismatchError,
    ModelIntegrityError,
    ModelNotFoundError,
    RegistryError,
)
from pipeline.registry.records import AliasEvent, AliasState, AliasUpdate, LoadedModel, ModelVersion
from pipeline.registry.refs import ALIASES, Alias, ModelRef, parse_ref
from pipeline.registry.registry import ModelRegistry

__all__ = [
    "ALIASES",
    "Alias",
    "AliasEvent",
    "AliasState",
    "AliasUpdate",
    "FeatureMismatchError",
    "LoadedModel",
    "ModelIntegrityError",
    "ModelNotFoundError",
    "ModelRef",
    "ModelRegistry",
    "ModelVersion",
    "RegistryError",
    "parse_ref",
]
