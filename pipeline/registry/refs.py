"""Parsing of model references such as ``champion``, ``v3``, ``3``, ``latest``, ``fraud:v3``.

A reference is parsed without touching the disk; :class:`ModelRegistry` then
resolves it to a version number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pipeline.registry.errors import ModelNotFoundError

Alias = Literal["champion", "challenger"]
ALIASES: tuple[Alias, ...] = ("champion", "challenger")
LATEST = "latest"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_VERSION_RE = re.compile(r"^[vV]?(\d+)$")
REF_FORMS = "champion, challenger, latest, v3, 3, or a name-qualified form like fraud:v3"


@dataclass(frozen=True)
class ModelRef:
    """A parsed reference: exactly one of ``version``, ``alias`` or ``latest`` is set."""

    name: str | None
    version: int | None = None
    alias: Alias | None = None
    latest: bool = False


def parse_ref(ref: str | int) -> ModelRef:
    """Parse a reference; a malformed one raises :class:`ModelNotFoundError`."""
    if isinstance(ref, int) and not isinstance(ref, bool):
        if ref < 1:
            raise ModelNotFoundError(f"bad model reference {ref!r}: versions start at 1")
        return ModelRef(name=None, version=ref)
    text = str(ref).strip()
    name: str | None = None
    if ":" in text:
        name, _, text = text.partition(":")
        if not _NAME_RE.match(name):
            raise ModelNotFoundError(f"bad model reference {ref!r}: expected {REF_FORMS}")
    lowered = text.lower()
    if lowered == LATEST:
        return ModelRef(name=name, latest=True)
    for alias in ALIASES:
        if lowered == alias:
            return ModelRef(name=name, alias=alias)
    match = _VERSION_RE.match(text)
    if match is None or int(match.group(1)) < 1:
        raise ModelNotFoundError(f"bad model reference {ref!r}: expected {REF_FORMS}")
    return ModelRef(name=name, version=int(match.group(1)))


def version_label(version: int | None) -> str:
    """``3`` -> ``"v3"``; ``None`` -> ``"none"`` (for messages)."""
    return "none" if version is None else f"v{version}"


def validate_name(name: str) -> str:
    """Check a registry model name (a directory name under the root)."""
    if not _NAME_RE.match(name):
        raise ValueError(f"invalid model name {name!r}: use letters, digits, '.', '_', '-'")
    return name
