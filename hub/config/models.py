"""The pydantic models of ``config.yaml``.

Connector entries are validated by the model each connector declares (see :mod:`hub.registry`); the
core models here hold what every entry shares. Secrets are never values in the config, only references.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    create_model,
    field_validator,
    model_validator,
)

if TYPE_CHECKING:
    from hub.registry import ConnectorSpec

SECRET_REF_RE = re.compile(r"^(keyring:[^/\s]+/\S+|env:[A-Za-z_][A-Za-z0-9_]*|file:\S+)$")
DURATION_RE = re.compile(r"^(\d+)\s*(s|m|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# What a reference with another scheme looks like (vault:..., op://...): short lowercase letters and a colon.
_SCHEME_RE = re.compile(r"^([a-z][a-z0-9+-]{0,11}):")
SECRET_SCHEMES = ("keyring", "env", "file")
_REF_FORMS = "keyring:SERVICE/NAME, env:NAME or file:PATH"


def _check_secret_ref(value: str) -> str:
    if SECRET_REF_RE.match(value):
        return value
    # Only the scheme is ever echoed, never the value: it may be a pasted secret.
    scheme = _SCHEME_RE.match(value)
    if scheme is None:
        raise ValueError(f"must be a secret reference ({_REF_FORMS}), not the secret itself")
    if scheme.group(1) in SECRET_SCHEMES:
        raise ValueError(f"malformed {scheme.group(1)}: reference (use {_REF_FORMS})")
    raise ValueError(f"unknown secret scheme {scheme.group(1)!r} (use {_REF_FORMS})")


class SecretRefMarker:
    """Marks a field as holding a secret reference, so ``hub secrets list`` and ``hub check`` can find them all."""

    def __repr__(self) -> str:
        return "SecretRefMarker()"


SECRET_REF_MARKER = SecretRefMarker()

SecretRef = Annotated[
    str,
    SECRET_REF_MARKER,
    AfterValidator(_check_secret_ref),
    Field(
        description="A reference to a secret: keyring:SERVICE/NAME, env:NAME or file:PATH",
        json_schema_extra={"pattern": SECRET_REF_RE.pattern},
    ),
]


# Every duration in a config is an interval, a window or a wait; ten years is beyond any of them, and a bound
# keeps date arithmetic (now + every) far from datetime's limits.
MAX_DURATION_DAYS = 3650
_MAX_DURATION_S = MAX_DURATION_DAYS * 86400


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """Parse ``90d``, ``15m``, ``30s`` (or a number of seconds) into a timedelta.

    Raises:
        ValueError: not a duration, or longer than :data:`MAX_DURATION_DAYS` days.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float):
        seconds: float = value
    else:
        m = DURATION_RE.match(value.strip())
        if not m:
            raise ValueError(f"invalid duration {value!r} (use e.g. 30s, 15m, 6h, 90d, 2w)")
        seconds = int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    if not 0 <= seconds <= _MAX_DURATION_S:  # NaN fails this too
        shown = value if isinstance(value, str) else f"{value}s"
        raise ValueError(f"duration {shown!r} is out of range (0s to {MAX_DURATION_DAYS}d)")
    return timedelta(seconds=seconds)


# The five crontab fields with their ranges, as APScheduler's CronTrigger.from_crontab reads them.
_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
                ("day of week", 0, 6))
_CRON_ITEM_RE = re.compile(r"^(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?$")


def check_cron(value: str) -> str:
    """``value`` if it is a 5-field cron expression the daemon's scheduler accepts; ValueError otherwise.

    Numeric fields are checked here; names (``mon-fri``, ``jan``) and other forms are left to APScheduler,
    imported only then (it costs a noticeable part of a second).
    """
    fields = value.split()
    if len(fields) != 5:
        raise ValueError("cron needs 5 fields: minute hour day-of-month month day-of-week")
    simple = True
    for text, (name, low, high) in zip(fields, _CRON_FIELDS, strict=True):
        for item in text.split(","):
            m = _CRON_ITEM_RE.match(item)
            if m is None:
                simple = False
                continue
            first, last, step = m.group(2), m.group(3), m.group(4)
            numbers = [int(n) for n in (first, last) if n is not None]
            if any(not low <= n <= high for n in numbers):
                raise ValueError(f"invalid cron expression {value!r}: {name} {item!r} is out of range {low}-{high}")
            if len(numbers) == 2 and numbers[0] > numbers[1]:
                raise ValueError(f"invalid cron expression {value!r}: {name} range {item!r} runs backwards")
            if step is not None and int(step) == 0:
                raise ValueError(f"invalid cron expression {value!r}: {name} step {item!r} is 0")
    if not simple:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"invalid cron expression {value!r}: {exc}") from None
    return value


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in the config must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class Schedule(StrictModel):
    """When a source runs under ``hub run``: an interval or a cron expression (in the config's timezone)."""

    every: str | None = Field(None, description="Interval, e.g. 15m, 1h, 1d", examples=["15m"])
    cron: str | None = Field(None, description="Cron expression (5 fields), e.g. '0 */2 * * *'")
    jitter: str | None = Field(None, description="Random delay added to each run, e.g. 30s")

    # Checked per field, so an error points at the value that is wrong.
    @field_validator("every")
    @classmethod
    def _interval(cls, value: str | None) -> str | None:
        if value is not None and parse_duration(value) <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value

    @field_validator("jitter")
    @classmethod
    def _jitter(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return check_cron(value) if value is not None else None

    @model_validator(mode="after")
    def _one_of(self) -> Schedule:
        if (self.every is None) == (self.cron is None):
            raise ValueError("set exactly one of 'every' or 'cron'")
        return self


class ConnectionBase(StrictModel):
    """Fields shared by every source and destination entry."""

    type: str = Field(description="Connector type (csv, hubspot, shopify, mailchimp, zoho, ga4, ...)")
    enabled: bool = Field(True, description="Disabled entries are validated but never run")
    base_url: str | None = Field(
        None, description="Override the vendor API base URL (a sandbox, or a proxy)", examples=["http://127.0.0.1:8101"]
    )


class SourceConfigBase(ConnectionBase):
    """A source entry; connectors subclass it with their own options."""

    schedule: Schedule | None = Field(None, description="When `hub run` pulls this source")
    start_date: str | None = Field(None, description="Ignore records older than this date (ISO 8601) on first sync")


class DestinationConfigBase(ConnectionBase):
    """A destination entry; connectors subclass it with their own options."""

    tag_prefix: str = Field("hub:", description="Namespace prefix of every tag the hub writes here")
    segments: list[str] | dict[str, str] = Field(
        default_factory=list,
        description="Segments pushed here: a list of segment names, or a map segment -> tag name",
    )
    create_missing: bool = Field(False, description="Create contacts missing in the destination (off: skip them)")
    source: str | None = Field(
        None,
        description="The source entry that pulls this same account: its record ids address contacts without "
        "lookups (otherwise contacts are looked up by email)",
    )
    require_consent: list[Literal["granted", "pending", "denied", "undeliverable", "unknown"]] | None = Field(
        None,
        description="Only people whose consent is one of these get tags here (default: everyone segmented; people "
        "who objected to profiling never are)",
    )

    # Whether the connector's sink can create contacts; a connector that can sets this to True.
    creates_contacts: ClassVar[bool] = False

    @field_validator("create_missing")
    @classmethod
    def _creatable(cls, value: bool) -> bool:
        # Refused rather than ignored: an admin who asks for it must not believe missing contacts get created.
        if value and not cls.creates_contacts:
            raise ValueError("this destination does not create contacts: missing ones are skipped and counted")
        return value

    @field_validator("tag_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        # Ownership rests on the prefix: an empty one would make every tag in the destination the hub's.
        if not value.strip():
            raise ValueError("must not be empty: the hub only removes tags that carry its prefix")
        return value


class StoreConfig(StrictModel):
    url: str = Field(
        "sqlite:///hub.db",
        description="SQLAlchemy URL: sqlite:///PATH (relative to the config file) or postgresql+psycopg://...",
    )


class ScoringConfig(StrictModel):
    """How RFM, CLV and churn scores are computed."""

    clv_horizon_months: int = Field(12, ge=1, le=120, description="Months of future spend counted in `clv`")
    clv_monthly_discount: float = Field(0.01, ge=0, le=0.5, description="Discount rate per month of future spend")
    lifespan_years: float = Field(3.0, gt=0, le=50, description="Expected customer lifespan of `clv_simple`")
    churn_horizon_days: int = Field(90, ge=7, le=730, description="Churn means no order within this many days")
    min_repeat_buyers: int = Field(
        20, ge=1, description="Fewer repeat buyers than this leave CLV and churn scores empty (too little data)"
    )
    rfm_policy: Literal["auto", "quantile", "fixed"] = Field(
        "auto", description="RFM bins: quintiles with a fixed-bin fallback on ties (auto), always one of them"
    )
    rfm_min_customers: int = Field(50, ge=1, description="Below this many customers RFM uses fixed bins")
    penalizer: Literal["auto"] | Annotated[float, Field(ge=0, le=10)] = Field(
        "auto",
        description="L2 penalizer of the BG/NBD and Gamma-Gamma fits, in the units of lifetimes: auto is maximum "
        "likelihood (a penalty only where it does not converge); `hub model clv` says whether one helps",
    )


class QualityConfig(StrictModel):
    """Thresholds of the checks run on every segment evaluation (`hub check --strict` fails on findings)."""

    min_size: int = Field(20, ge=0, description="A segment with fewer members is flagged too small")
    min_share: float = Field(0.01, ge=0, le=1, description="Nor with a smaller share of the people in scope")
    max_segments: int = Field(30, ge=1, description="More active segments than this is flagged")
    max_overlap: float = Field(0.8, ge=0, le=1, description="Jaccard similarity above this flags near-duplicates")
    max_churn: float = Field(0.5, ge=0, description="Entries + exits above this share of the size flag instability")


class SegmentsConfig(StrictModel):
    rules_dir: str = Field("segment_rules", description="Folder of segment rule YAML files, relative to this file")
    protected_attributes: list[str] | None = Field(
        None,
        description="Attributes rules may not use without an allow_protected reason (default: a built-in list of"
        " special-category and discrimination-prone attributes such as gender, age, ethnicity, religion, health)",
    )
    scoring: ScoringConfig = Field(default_factory=ScoringConfig, description="RFM, CLV and churn settings")
    quality: QualityConfig = Field(default_factory=QualityConfig, description="Segment quality checks")


def extra_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """JSON Schema of a model, for ``hub config schema``."""
    return model.model_json_schema()


# --------------------------------------------------------------------------- the root model

# Entry names end up in CLI arguments, tag namespaces, store rows and job ids: keep them boring.
SLUG_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _check_slug(value: str) -> str:
    if not SLUG_RE.match(value):
        raise ValueError(
            f"invalid name {value!r}: use lowercase letters, digits, '_' and '-', starting with a letter"
            " (at most 63 characters)"
        )
    return value


Slug = Annotated[str, AfterValidator(_check_slug), Field(json_schema_extra={"pattern": SLUG_RE.pattern})]


def check_timezone(value: str) -> str:
    """``value`` if it is an IANA time zone name known to this machine; ValueError otherwise."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin or UTC)") from None
    return value


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


class LoggingConfig(StrictModel):
    """How ``hub`` logs. Secrets are redacted in every format."""

    level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_upper)] = Field(
        "INFO", description="Minimum level logged (the HUB_LOG_LEVEL environment variable overrides it)"
    )
    format: Literal["human", "json"] = Field(
        "human", description="human: one readable line per event; json: one JSON object per line (for log shippers)"
    )


class RetryConfig(StrictModel):
    """Backoff across runs for records a destination could not take this time."""

    base: str = Field("5m", description="Wait after the first failure; doubles with every further one")
    max: str = Field("6h", description="Longest wait between two attempts")
    max_attempts: int = Field(10, ge=1, description="After this many failures a record is skipped for good")

    @field_validator("base", "max")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value


def _both_events() -> list[Literal["entered", "exited"]]:
    return ["entered", "exited"]


class WebhookConfig(StrictModel):
    """An outgoing webhook on segment entry and exit (Zapier, Make, n8n)."""

    url: str = Field(description="Where the events are POSTed", examples=["https://hooks.zapier.com/hooks/catch/1/x/"])
    secret: SecretRef = Field(description="Key of the HMAC-SHA256 signature in the X-Hub-Signature-256 header")
    segments: list[str] | None = Field(None, description="Only these segments (default: every segment)")
    events: list[Literal["entered", "exited"]] = Field(
        default_factory=_both_events, description="Which membership changes are sent"
    )
    include_held_out: bool = Field(False, description="Also send held-out members (off: they stay untouched)")


class PushConfig(StrictModel):
    """How segment tags are pushed: the safety guards, drift handling, retries and webhooks."""

    max_removal_share: float = Field(
        0.25, ge=0, le=1, description="Refuse to remove more than this share of a tag's members in one run"
    )
    removal_guard_min: int = Field(
        10, ge=0, description="The share guard applies from this many removals on (small tags may shrink freely)"
    )
    drift: Literal["restore", "respect"] = Field(
        "respect",
        description="A hub tag someone removed by hand: restore it, or respect the removal (always reported)",
    )
    reconcile_every: str = Field("1d", description="How often the remote tags are read back to detect drift")
    retry: RetryConfig = Field(default_factory=RetryConfig, description="Backoff for records that failed")
    webhooks: dict[Slug, WebhookConfig] = Field(default_factory=dict, description="Outgoing webhooks, by name")

    @field_validator("reconcile_every")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value


class DaemonConfig(StrictModel):
    """How `hub run` schedules and protects the pipeline."""

    failure_threshold: int = Field(
        3, ge=1, description="Pause a source after this many failed runs in a row (a config error pauses at once)"
    )
    sweep: str = Field(
        "0 3 * * *",
        description="Cron expression (config time zone) of the daily full segment evaluation and model refit: "
        "time-window rules change with no new data",
    )
    default_schedule: Schedule | None = Field(
        None, description="Schedule of sources without their own (default: such sources only run by hand)"
    )
    misfire_grace: str = Field("5m", description="A run missed by less than this (the host slept) still runs")
    lock_ttl: str = Field("10m", description="A crashed process's connector lock expires after this long")
    push_after_sync: bool = Field(True, description="Re-evaluate changed people and push right after each sync")
    watch_config: bool = Field(True, description="Reload the config when its file changes (SIGHUP always does)")

    @field_validator("misfire_grace", "lock_ttl")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("sweep")
    @classmethod
    def _cron(cls, value: str) -> str:
        return check_cron(value)


class HubConfig(StrictModel):
    """The whole ``config.yaml``.

    This static class types what the CLI and the daemon read. Validation always goes through
    :func:`build_config_model`, which narrows ``sources`` and ``destinations`` to the installed connectors'
    models. Later sections (``daemon``, ``push``) are added here as fields with defaults, so old files stay valid.
    """

    version: Literal[1] = Field(1, description="Config format version")
    timezone: Annotated[str, AfterValidator(check_timezone)] = Field(
        "UTC", description="IANA time zone for schedules, day boundaries and relative dates", examples=["Europe/Berlin"]
    )
    store: StoreConfig = Field(default_factory=StoreConfig, description="Where the hub keeps its data")
    segments: SegmentsConfig = Field(default_factory=SegmentsConfig, description="Segment rules")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Log level and format")
    push: PushConfig = Field(default_factory=PushConfig, description="Push safety, drift, retries and webhooks")
    daemon: DaemonConfig = Field(default_factory=DaemonConfig, description="How `hub run` schedules the pipeline")
    sources: dict[Slug, SourceConfigBase] = Field(
        default_factory=dict, description="Where contacts and activity come from, by entry name"
    )
    destinations: dict[Slug, DestinationConfigBase] = Field(
        default_factory=dict, description="Where segment tags are pushed, by entry name"
    )

    @field_validator("sources", "destinations", mode="before")
    @classmethod
    def _empty_section(cls, value: object) -> object:
        # `sources:` with every entry commented out is null in YAML; it means "none", not an error.
        return {} if value is None else value


def _entry_type(value: Any) -> Any:
    """The ``type`` of a raw or validated entry: the tag that picks the connector's model."""
    if isinstance(value, Mapping):
        return value.get("type")
    return getattr(value, "type", None)


def _pin_type(model: type[ConnectionBase], name: str) -> type[ConnectionBase]:
    """``model`` with ``type`` narrowed to ``Literal[name]``, so the JSON Schema tells the entries apart."""
    annotation = model.model_fields["type"].annotation
    if getattr(annotation, "__origin__", None) is Literal and annotation is not None and name in annotation.__args__:
        return model
    literal: Any = Literal[name]  # type: ignore[valid-type]
    pinned: type[ConnectionBase] = create_model(  # type: ignore[call-overload]
        model.__name__, __base__=model, __module__=model.__module__,
        type=(literal, Field(description=f"Connector type: {name}")),
    )
    return pinned


def _no_connector(kind: str) -> Any:
    def reject(value: object) -> object:
        raise ValueError(f"no connector that can be a {kind} is installed")

    return Annotated[Any, BeforeValidator(reject)]


def entry_union(models: Mapping[str, type[ConnectionBase]], kind: str) -> Any:
    """One type for ``sources.*`` or ``destinations.*``: the connectors' models, picked by ``type``.

    A callable discriminator (rather than ``Field(discriminator=...)``) works with one member as well as many,
    and gives ``union_tag_invalid`` errors the loader turns into "unknown type ... (did you mean ...?)".
    """
    if not models:
        return _no_connector(kind)
    members = tuple(Annotated[_pin_type(m, n), Tag(n)] for n, m in sorted(models.items()))
    return Annotated[Union[members], Discriminator(_entry_type)]  # noqa: UP007 - a runtime tuple of members


def build_config_model(specs: Mapping[str, ConnectorSpec]) -> type[HubConfig]:
    """The root config model for these connector specs (``hub.registry.connectors()`` in production).

    Args:
        specs: connector specs by type name.

    Returns:
        A subclass of :class:`HubConfig` whose ``sources`` and ``destinations`` validate each entry with the
        model of the connector its ``type`` names.
    """
    sources = {n: s.source_config for n, s in specs.items() if s.source_config is not None}
    destinations = {n: s.destination_config for n, s in specs.items() if s.destination_config is not None}
    base = HubConfig.model_fields
    # The entry types are built at run time from the installed connectors, so they are Any to mypy.
    source_map: Any = dict[Slug, entry_union(sources, "source")]  # type: ignore[misc]
    destination_map: Any = dict[Slug, entry_union(destinations, "destination")]  # type: ignore[misc]
    model: type[HubConfig] = create_model(
        "HubConfig",
        __base__=HubConfig,
        __module__=HubConfig.__module__,
        __doc__=HubConfig.__doc__,
        sources=(source_map, Field(default_factory=dict, description=base["sources"].description)),
        destinations=(
            destination_map,
            Field(default_factory=dict, description=base["destinations"].description),
        ),
    )
    return model
