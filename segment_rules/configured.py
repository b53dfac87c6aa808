"""The segmentation core as a config file sets it up: rules folder, protected attributes, scoring, quality."""

from __future__ import annotations

from datetime import datetime
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from .quality import QualitySettings
from .ruleset import DEFAULT_PROTECTED, RuleSet, load_rules
from .scoring import ScoringSettings

if TYPE_CHECKING:
    from hub.config.loader import LoadedConfig
    from hub.store import Store

    from .engine import EvaluationResult


def rules_folder(loaded: LoadedConfig) -> Path:
    """The config's rules folder (relative paths are relative to the config file)."""
    folder = Path(loaded.model.segments.rules_dir).expanduser()
    return folder if folder.is_absolute() else loaded.base_dir / folder


def load_configured_rules(loaded: LoadedConfig) -> RuleSet:
    """The checked rule set of the config's rules folder.

    Raises:
        ConfigErrors: one line per problem in the rule files.
    """
    protected = loaded.model.segments.protected_attributes
    folder = rules_folder(loaded)
    # File names print relative to the current folder, as the config's own name does.
    return load_rules(folder, protected=DEFAULT_PROTECTED if protected is None else protected)


def scoring_settings(loaded: LoadedConfig) -> ScoringSettings:
    """Scoring settings from ``segments.scoring``."""
    return ScoringSettings(**loaded.model.segments.scoring.model_dump())


def quality_settings(loaded: LoadedConfig) -> QualitySettings:
    """Quality thresholds from ``segments.quality``."""
    return QualitySettings(**loaded.model.segments.quality.model_dump())


def evaluate_configured(
    store: Store,
    loaded: LoadedConfig,
    *,
    as_of: datetime | None = None,
    changed_only: bool = False,
    rules: RuleSet | None = None,
) -> EvaluationResult | None:
    """One evaluation as the config sets it up, for the CLI, the daemon and the demo alike.

    Loads the rule files (unless ``rules`` are given), evaluates everyone, or with ``changed_only`` only the
    people whose data changed since the last evaluation, with the config's scoring and quality settings, then
    queues the events of the entries and exits it made for the configured push webhooks.

    Args:
        store: the open store.
        loaded: the validated config.
        as_of: the evaluation time (default: now).
        changed_only: re-evaluate only the people who changed (everyone when nothing was evaluated yet).
        rules: an already loaded rule set of this config.

    Returns:
        The evaluation, or None when ``changed_only`` found nobody changed (nothing was run).

    Raises:
        ConfigErrors: the rule files have problems (one line each).
    """
    from hub.push.service import queue_webhooks

    from .engine import evaluate
    from .report import changed_since_last_run

    people = changed_since_last_run(store) if changed_only else None
    if people == []:
        return None
    rules = rules or load_configured_rules(loaded)
    if not rules.segments:
        from hub.config.loader import display_path
        from hub.errors import ConfigError

        raise ConfigError(
            f"{display_path(rules_folder(loaded))}: no segment rules here (no .yaml file defines a segment): "
            "`hub init` writes the example rules, or set segments.rules_dir to your rules folder"
        )
    result = evaluate(store, rules, as_of=as_of, settings=scoring_settings(loaded),
                      quality=quality_settings(loaded), person_ids=people)
    queue_webhooks(store, loaded.model.push)
    return result


def copy_example_rules(folder: Path, *, overwrite: bool = False) -> list[Path]:
    """Copy the shipped example rule files into ``folder``; existing files are kept unless ``overwrite``.

    Returns:
        The files written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for item in sorted(files("segment_rules").iterdir(), key=lambda t: t.name):
        if not item.name.endswith(".yaml"):
            continue
        target = folder / item.name
        if target.exists() and not overwrite:
            continue
        target.write_text(item.read_text(encoding="utf-8"), encoding="utf-8")
        written.append(target)
    return written
