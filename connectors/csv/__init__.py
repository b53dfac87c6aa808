"""CSV source: contacts, orders and events from exported files (a point of sale, a spreadsheet, a shop).

Only the config model is imported here; the registry loads this module to list connectors, and reading files
needs nothing until a source is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.registry import ConnectorSpec, lazy

from .config import CsvSourceConfig

if TYPE_CHECKING:
    from hub.registry import BuildContext

    from .source import CsvSource


def build_source(config: CsvSourceConfig, name: str, ctx: BuildContext) -> CsvSource:
    """Build the CSV source ``name`` from its validated entry; paths are relative to ``ctx.base_dir``."""
    from .source import CsvSource

    return CsvSource(config, name, ctx.base_dir)


def check_files(config: CsvSourceConfig, name: str, ctx: BuildContext) -> None:
    """The offline check of ``hub check``: each entry's files exist and their headers fit the mapping.

    The same check the source runs before a sync, so ``hub check`` and ``hub sync`` cannot disagree.
    """
    build_source(config, name, ctx).check()


CONNECTOR = ConnectorSpec(
    name="csv",
    summary="Contacts, orders and events from CSV exports, incremental by file content",
    source_config=CsvSourceConfig,
    build_source=build_source,
    conformance=lazy(f"{__name__}.conformance:kit"),
    check_local=check_files,
)

__all__ = ["CONNECTOR", "CsvSourceConfig", "build_source", "check_files"]
