"""Shopify's official Admin API schemas, loaded from the shared specs folder: what the emulator validates and
answers queries against.

The schemas are Shopify's and are never copied into this project: they are read from ``$HUB_SPECS_DIR/shopify``
(default ``../shared/specs/shopify`` beside the project). Each version is built once per process, under a lock,
from its introspection JSON with ``assume_valid=True`` (Shopify's schema breaks a newer spec rule on deprecated
interface fields, which ``graphql-core`` would otherwise reject). Without them the emulator serves the smaller
schema of :mod:`.emulator_fallback`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from graphql import GraphQLSchema

logger = logging.getLogger(__name__)

SPECS_ENV = "HUB_SPECS_DIR"
FILE_PATTERN = "admin-graphql-{version}.introspection.json"

_lock = threading.Lock()
_schemas: dict[Path, GraphQLSchema] = {}


def specs_dir() -> Path:
    """The Shopify specs folder: ``$HUB_SPECS_DIR/shopify``, else ``../shared/specs/shopify`` beside the project."""
    root = os.environ.get(SPECS_ENV)
    base = Path(root) if root else Path(__file__).resolve().parents[2].parent / "shared" / "specs"
    return base / "shopify"


def shipped_versions(folder: Path | None = None) -> list[str]:
    """The API versions whose introspection file is present, oldest first."""
    where = folder or specs_dir()
    prefix, suffix = FILE_PATTERN.split("{version}")
    if not where.is_dir():
        return []
    return sorted(p.name[len(prefix) : -len(suffix)] for p in where.glob(FILE_PATTERN.format(version="*")))


def schema_file(version: str, folder: Path | None = None) -> Path | None:
    """The schema file validating ``version``: its own, else the newest shipped one older than it, else the oldest."""
    where = folder or specs_dir()
    versions = shipped_versions(where)
    if not versions:
        return None
    older = [v for v in versions if v <= version]
    chosen = older[-1] if older else versions[0]
    return where / FILE_PATTERN.format(version=chosen)


def load_schema(path: Path) -> GraphQLSchema:
    """The schema in introspection file ``path``, built once per process."""
    with _lock:
        cached = _schemas.get(path)
        if cached is None:
            from graphql import build_client_schema

            with path.open("rb") as f:
                data = json.load(f)
            cached = build_client_schema(data.get("data", data), assume_valid=True)
            _schemas[path] = cached
        return cached


def schema_for(version: str) -> GraphQLSchema | None:
    """The schema validating ``version``, or None when no spec file is present."""
    path = schema_file(version)
    return load_schema(path) if path is not None else None


def serving_schema(version: str) -> tuple[GraphQLSchema, bool]:
    """The schema the emulator answers ``version`` with, and whether it is the official one (else the fallback)."""
    official = schema_for(version)
    if official is not None:
        return official, True
    from .emulator_fallback import fallback_schema

    return fallback_schema(), False


def validation_errors(version: str, document: str) -> tuple[str, ...]:
    """graphql-core's validation messages for ``document`` under the schema serving ``version`` (empty: valid).

    Without the official schema, a message says the fallback schema was used: a field it lacks may well exist.
    """
    schema, official = serving_schema(version)
    messages = _validate(schema, document)
    if messages and not official:
        note = f" (the sandbox serves a reduced schema: {SPECS_ENV} holds no official Admin schema)"
        return tuple(m + note for m in messages)
    return messages


@lru_cache(maxsize=1024)
def _validate(schema: GraphQLSchema, document: str) -> tuple[str, ...]:
    from graphql import GraphQLError, parse, validate

    try:
        ast = parse(document)
    except GraphQLError as exc:
        return (exc.message,)
    return tuple(e.message for e in validate(schema, ast))
