"""The JSON Schema of config files, for ``hub config schema`` and editor validation and completion.

Editors (VS Code's YAML extension, JetBrains) pick it up from a modeline at the top of ``config.yaml``:
``# yaml-language-server: $schema=./hub-config.schema.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.registry import ConnectorSpec

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_TITLE = "Audience Hub config"


def config_json_schema(specs: Mapping[str, ConnectorSpec] | None = None) -> dict[str, Any]:
    """JSON Schema of the whole config, with every installed connector's entry model and field descriptions.

    Args:
        specs: connector specs (default: the installed connectors).

    Returns:
        A JSON Schema (draft 2020-12) document.
    """
    from hub.config.loader import EXTENSION_PREFIX
    from hub.config.models import SLUG_RE, build_config_model
    from hub.registry import connectors

    model = build_config_model(connectors() if specs is None else specs)
    body = model.model_json_schema(mode="validation")
    body.pop("title", None)
    # Top-level `x-...` keys hold YAML anchors and are ignored by the loader.
    body["patternProperties"] = {f"^{EXTENSION_PREFIX}": {}}
    for section in ("sources", "destinations"):
        prop = body.get("properties", {}).get(section)
        if isinstance(prop, dict) and prop.get("type") == "object":
            # A section with every entry commented out is null in YAML, which the loader reads as "none";
            # entry names must be slugs (patternProperties alone would let any other name through).
            prop["type"] = ["object", "null"]
            prop["propertyNames"] = {"pattern": SLUG_RE.pattern}
    return {"$schema": SCHEMA_DIALECT, "title": SCHEMA_TITLE, **body}
