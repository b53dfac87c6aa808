"""The official Admin API schemas shipped in ``$HUB_SPECS_DIR/shopify``, for contract checks.

They are Shopify's and never copied here; without them the checks skip, saying so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import pytest

from connectors.shopify.emulator_schema import FILE_PATTERN, load_schema, specs_dir

if TYPE_CHECKING:
    from graphql import GraphQLSchema

# The versions the contract covers: the oldest one the connector supports and the pinned one.
VERSIONS = ("2025-01", "2026-07")


def shipped_schemas() -> dict[str, GraphQLSchema]:
    """The schemas of :data:`VERSIONS` that are present, by version."""
    found: dict[str, GraphQLSchema] = {}
    for version in VERSIONS:
        path = specs_dir() / FILE_PATTERN.format(version=version)
        if path.is_file():
            found[version] = load_schema(path)
    return found


def require_schema(version: str) -> GraphQLSchema:
    """The schema of ``version``; skips the test when its file is absent."""
    path = specs_dir() / FILE_PATTERN.format(version=version)
    if not path.is_file():
        pytest.skip(f"Shopify Admin schema {path.name} not found under {specs_dir()} (set HUB_SPECS_DIR)")
    return load_schema(path)


def errors_for(schema: GraphQLSchema, document: str) -> list[str]:
    """graphql-core's parse and validation errors of ``document``."""
    from graphql import GraphQLError, parse, validate

    try:
        ast = parse(document)
    except GraphQLError as exc:
        return [exc.message]
    return [e.message for e in validate(schema, ast)]


def invalid_documents(documents: Iterable[str], schemas: Mapping[str, GraphQLSchema]) -> list[str]:
    """``version: first line: errors`` for every document some schema rejects."""
    problems = []
    for document in sorted(documents):
        for version, schema in schemas.items():
            errors = errors_for(schema, document)
            if errors:
                head = document.strip().splitlines()[0][:80]
                problems.append(f"{version}: {head}: {'; '.join(errors)}")
    return problems
