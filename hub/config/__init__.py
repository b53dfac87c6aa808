"""The hub's configuration: models, the YAML loader with positions, and the JSON Schema.

Imports are lazy so that ``import hub.config`` costs nothing until something is used (``hub --help`` stays fast).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.config.loader import (
        LoadedConfig,
        default_config_path,
        format_errors,
        interpolate,
        load_config,
        validate_config_text,
    )
    from hub.config.models import HubConfig, build_config_model
    from hub.config.schema import config_json_schema

_EXPORTS = {
    "LoadedConfig": "hub.config.loader",
    "default_config_path": "hub.config.loader",
    "format_errors": "hub.config.loader",
    "interpolate": "hub.config.loader",
    "load_config": "hub.config.loader",
    "validate_config_text": "hub.config.loader",
    "HubConfig": "hub.config.models",
    "build_config_model": "hub.config.models",
    "config_json_schema": "hub.config.schema",
}

__all__ = [
    "HubConfig",
    "LoadedConfig",
    "build_config_model",
    "config_json_schema",
    "default_config_path",
    "format_errors",
    "interpolate",
    "load_config",
    "validate_config_text",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hub.config' has no attribute {name!r}")
    return getattr(import_module(module), name)
