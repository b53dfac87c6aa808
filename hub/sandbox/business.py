"""One seeded synthetic business, shared by every vendor emulator and by the CSV exports of ``hub demo``.

A mid-sized European online shop (prices in EUR) with a till in its own store, a CRM, an email tool and web
analytics. ``Business.generate(contacts, seed, as_of)`` is deterministic for its three arguments and holds
about three years of history before ``as_of``. Everything is immutable: emulators copy what they mutate.

Generative model (all draws from one ``numpy`` generator, vectorised, in a fixed order):

- **People** sign up over three years, more of them recently. Names, places (country -> region -> city) and
  phones come from small tables; canonical emails are lowercase and unique, on reserved ``.example``
  domains (never a real mailbox). About 12 % are B2B-ish (a company, CRM deals).
- **Purchases** follow a BG/NBD-like process. 70 % of people are latent buyers: the first order comes soon
  after sign-up; then orders arrive as a Poisson process whose rate is Gamma-distributed across people
  (heterogeneity), and after every order the buyer drops out for good with a Beta-distributed probability.
  This yields one-time buyers, repeat buyers, lapsed customers (dropped out long ago) and never-buyers, with
  recency and frequency spread out. 4 % of buyers are latent VIPs: a higher rate, lower dropout, bigger
  baskets.
- **Order values** are skewed: each buyer has a lognormal mean spend, each order a lognormal basket size
  around it, filled with products of mostly the buyer's favourite category (mean > median). A few orders
  are refunded, partially refunded or cancelled; some online orders are presented in the buyer's local
  currency. About 15 % of orders are placed at the shop's till (channel ``pos``: the CSV export), the rest
  online (Shopify).
- **Email**: a newsletter every 14 days for two years. Members (about 75 % of people) are subscribed,
  unsubscribed, cleaned or pending; unsubscribes and hard bounces happen in a campaign and end the sends.
  The open probability is logistic in a latent engagement trait that rises with the purchase rate and the
  number of orders, and falls 60 days after a buyer drops out, so engagement correlates with purchases;
  clicks follow opens.
- **Web sessions** precede online orders (converted sessions) and also happen without buying (browse
  sessions with a product category), including people who view a category and never buy.
- **Deals**: B2B people have 1-3 CRM deals (lognormal amounts; won, lost, or open with a future close date).
- **Vendor presence**: every person is known to a subset of the tools (shop ~85 %, HubSpot ~70 %, email
  ~75 %, overlapping realistically); the email *as seen by each tool* sometimes differs from the canonical
  one by case, surrounding whitespace, or (rarely) is another address in one tool.

People, orders, deals and campaigns are frozen dataclasses with stable integer ``key`` values (1-based);
emulators derive vendor-like ids from them. Email activity and web sessions are columnar ``numpy`` arrays
(:class:`EmailActivity`, :class:`Sessions`) because they run into millions of rows for large businesses.
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

DEFAULT_AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
SHOP_CURRENCY = "EUR"
VENDORS = ("shopify", "hubspot", "zoho", "mailchimp", "ga4", "pos")
"""Where a person can be known. ``pos`` is the shop's till, exported as CSV."""

EMAIL_CONSENT = ("subscribed", "unsubscribed", "cleaned", "pending", "not_subscribed")
EMAIL_EVENT_KINDS = ("open", "click", "bounce", "unsubscribe")
SESSION_SOURCES = ("organic", "direct", "email", "paid", "social")
LATENT_SEGMENTS = ("vip", "repeat", "one_time", "lapsed", "never")

_DAY = 86400.0
_HISTORY_DAYS = 1095.0
_CAMPAIGN_DAYS = 730.0
_CAMPAIGN_EVERY_DAYS = 14.0

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

# ------------------------------------------------------------------------------------------ tables

_FIRST_NAMES = (
    "Anna", "Lukas", "Marie", "Jonas", "Sophie", "Leon", "Emma", "Felix", "Mia", "Paul", "Hannah", "Elias",
    "Lena", "Noah", "Laura", "Finn", "Julia", "Ben", "Sarah", "Jan", "Lea", "Tim", "Clara", "Max", "Jürgen",
    "Zoë", "Chloé", "Louis", "Camille", "Hugo", "Giulia", "Marco", "Sofia", "Luca", "Lucía", "Pablo", "Daan",
    "Sanne", "Emily", "James", "Olivia", "Jack", "Michael", "Jessica", "Piotr", "Zofia", "Björn", "Ines",
)  # fmt: skip
_LAST_NAMES = (
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann",
    "Koch", "Richter", "Klein", "Wolf", "Schröder", "Neumann", "Schwarz", "Zimmermann", "Braun", "Krüger",
    "Hofmann", "Hartmann", "Lange", "Schmitt", "Werner", "Krause", "Meier", "Lehmann", "Huber", "Gruber",
    "Dubois", "Martin", "Bernard", "Rossi", "Russo", "García", "Fernández", "de Vries", "Jansen", "Peeters",
    "Smith", "Jones", "Taylor", "Brown", "Kowalski", "Nowak", "O'Brien", "Nielsen",
)  # fmt: skip
_Place = tuple[str, float, str, str, float, tuple[tuple[str, tuple[str, ...]], ...]]
# country, share, phone prefix, presentment currency, rate from EUR, ((region, (cities...)), ...)
_PLACES: tuple[_Place, ...] = (
    ("DE", 0.45, "+49", "EUR", 1.0, (
        ("Bayern", ("München", "Nürnberg", "Augsburg")), ("Berlin", ("Berlin",)), ("Hamburg", ("Hamburg",)),
        ("Nordrhein-Westfalen", ("Köln", "Düsseldorf", "Dortmund")), ("Hessen", ("Frankfurt am Main",)),
        ("Baden-Württemberg", ("Stuttgart", "Freiburg")),
    )),
    ("AT", 0.10, "+43", "EUR", 1.0, (
        ("Wien", ("Wien",)), ("Salzburg", ("Salzburg",)), ("Tirol", ("Innsbruck",)),
    )),
    ("CH", 0.07, "+41", "CHF", 0.94, (("Zürich", ("Zürich",)), ("Bern", ("Bern",)), ("Genève", ("Genève",)))),
    ("FR", 0.07, "+33", "EUR", 1.0, (("Île-de-France", ("Paris",)), ("Auvergne-Rhône-Alpes", ("Lyon",)))),
    ("NL", 0.07, "+31", "EUR", 1.0, (("Noord-Holland", ("Amsterdam",)), ("Zuid-Holland", ("Rotterdam",)))),
    ("IT", 0.05, "+39", "EUR", 1.0, (("Lombardia", ("Milano",)), ("Lazio", ("Roma",)))),
    ("ES", 0.04, "+34", "EUR", 1.0, (("Madrid", ("Madrid",)), ("Cataluña", ("Barcelona",)))),
    ("BE", 0.04, "+32", "EUR", 1.0, (("Bruxelles", ("Bruxelles",)), ("Antwerpen", ("Antwerpen",)))),
    ("GB", 0.05, "+44", "GBP", 0.86, (("England", ("London", "Manchester")), ("Scotland", ("Edinburgh",)))),
    ("US", 0.03, "+1", "USD", 1.08, (("California", ("San Francisco",)), ("New York", ("New York",)))),
    ("PL", 0.03, "+48", "PLN", 4.30, (("Mazowieckie", ("Warszawa",)), ("Małopolskie", ("Kraków",)))),
)  # fmt: skip
_CONSUMER_DOMAINS = (
    "example.com", "example.net", "example.org", "mail.example", "post.example", "web.example",
)  # fmt: skip
_COMPANY_WORDS = ("Alpen", "Nord", "Rhein", "Blau", "Stern", "Berg", "Linden", "Falk", "Kiefer", "Hansa")
_COMPANY_SUFFIXES = ("GmbH", "AG", "KG", "Studio", "Handel", "Design")
_CATEGORIES = ("Apparel", "Shoes", "Accessories", "Home", "Beauty", "Outdoor", "Kids", "Gifts")
_CATEGORY_WEIGHTS = (0.24, 0.14, 0.14, 0.13, 0.11, 0.10, 0.08, 0.06)
_CATEGORY_BASE_PRICE = (39.0, 79.0, 24.0, 34.0, 19.0, 59.0, 22.0, 15.0)
_PRODUCTS_PER_CATEGORY = 6
_CAMPAIGN_THEMES = (
    "New year favourites", "Winter sale", "Spring arrivals", "Easter picks", "May days", "Summer starts",
    "Summer sale", "Holiday essentials", "Back to routine", "Autumn edit", "Black Friday", "Gift guide",
)  # fmt: skip
_ASCII_FOLD = str.maketrans(
    {"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "é": "e", "è": "e", "ë": "e", "ñ": "n", "ç": "c", "ł": "l",
     "ó": "o", "á": "a", "í": "i", "ø": "o", "å": "a", "î": "i", "'": "", " ": ""}
)  # fmt: skip

# ------------------------------------------------------------------------------------------ records


@dataclass(frozen=True, slots=True)
class VendorView:
    """How one tool knows a person.

    Attributes:
        email: the address as stored there (may differ from the canonical one by case, whitespace, or be
            another address altogether).
        created_at: when the record was created in that tool.
    """

    email: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Person:
    """One person of the business.

    Attributes:
        key: stable integer id (1-based); emulators derive vendor ids from it.
        email: canonical address (lowercase, unique).
        email_consent: one of :data:`EMAIL_CONSENT`, as the email tool has it (``not_subscribed``: not a
            member).
        consent_at: when the member opted in (None for non-members).
        consent_ended_at: when an unsubscribed or cleaned member left (None otherwise).
        objected_to_profiling: objected to profiling (GDPR art. 21): segments must leave them out.
        lifecycle_stage: HubSpot-style stage (subscriber, lead, marketingqualifiedlead, opportunity,
            customer, evangelist).
        company: the employer of B2B-ish people, else None.
        latent: the generator's truth, for checking segmentation: one of :data:`LATENT_SEGMENTS` (``lapsed``:
            bought, dropped out, last order more than 180 days before ``as_of``).
        vendors: the tools that know this person (keys from :data:`VENDORS`), with the email as seen there.
    """

    key: int
    email: str
    first_name: str
    last_name: str
    phone: str | None
    country: str
    region: str
    city: str
    created_at: datetime
    lifecycle_stage: str
    email_consent: str
    consent_at: datetime | None
    consent_ended_at: datetime | None
    objected_to_profiling: bool
    company: str | None
    latent: str
    vendors: Mapping[str, VendorView]

    def email_in(self, vendor: str) -> str | None:
        """The email as ``vendor`` has it, or None when the person is unknown there."""
        view = self.vendors.get(vendor)
        return view.email if view else None


@dataclass(frozen=True, slots=True)
class Product:
    """A catalog product; ``product_type`` is its category."""

    key: int
    sku: str
    title: str
    product_type: str
    price: Decimal


@dataclass(frozen=True, slots=True)
class LineItem:
    """One line of an order."""

    product: int
    sku: str
    title: str
    product_type: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True, slots=True)
class Order:
    """One order, in the shop currency with the buyer's presentment currency beside it.

    Attributes:
        key: stable id (1-based, increasing with ``processed_at``).
        person: the buyer's ``Person.key``.
        channel: ``online`` (the web shop) or ``pos`` (the till, exported as CSV).
        total: amount paid including shipping, in ``currency`` (the shop currency).
        presentment_total: the same in ``presentment_currency`` (what the buyer saw).
        financial_status: ``paid``, ``refunded`` or ``partially_refunded``.
        refunded: amount refunded (0 when paid).
        cancelled_at: set for cancelled orders (which are refunded in full).
        updated_at: the last change (a refund or cancellation after ``processed_at``, never after as_of).
    """

    key: int
    person: int
    processed_at: datetime
    updated_at: datetime
    channel: str
    currency: str
    total: Decimal
    shipping: Decimal
    presentment_currency: str
    presentment_total: Decimal
    financial_status: str
    refunded: Decimal
    cancelled_at: datetime | None
    line_items: tuple[LineItem, ...]

    @property
    def cancelled(self) -> bool:
        """Whether the order was cancelled."""
        return self.cancelled_at is not None


@dataclass(frozen=True, slots=True)
class Deal:
    """A CRM deal of a B2B person; ``stage`` is ``won``, ``lost`` or ``open`` (close date in the future)."""

    key: int
    person: int
    name: str
    amount: Decimal
    stage: str
    created_at: datetime
    close_date: datetime


@dataclass(frozen=True, slots=True)
class Campaign:
    """A newsletter send."""

    key: int
    name: str
    subject: str
    send_time: datetime


@dataclass(frozen=True, slots=True)
class EmailEvent:
    """One email event (``kind`` in :data:`EMAIL_EVENT_KINDS`)."""

    campaign: int
    person: int
    kind: str
    at: datetime


@dataclass(frozen=True, eq=False)
class EmailActivity:
    """Email sends and events as parallel arrays (person and campaign keys, epoch seconds).

    Attributes:
        send_campaign: campaign key of each email sent (one row per recipient of a campaign).
        send_person: person key of each email sent.
        event_campaign: campaign key of each event; rows are sorted by campaign, then time.
        event_person: person key of each event.
        event_kind: index into :data:`EMAIL_EVENT_KINDS`.
        event_at: epoch seconds.
    """

    send_campaign: IntArray
    send_person: IntArray
    event_campaign: IntArray
    event_person: IntArray
    event_kind: IntArray
    event_at: IntArray

    def recipients(self, campaign: int) -> IntArray:
        """Person keys the campaign was sent to (ascending)."""
        keys: IntArray = self.send_person[self.send_campaign == campaign]
        return keys

    def events(self, campaign: int | None = None) -> Iterator[EmailEvent]:
        """Email events, of one campaign or all, in campaign then time order."""
        rows = np.arange(self.event_at.size) if campaign is None else np.flatnonzero(self.event_campaign == campaign)
        for i in rows.tolist():
            yield EmailEvent(
                int(self.event_campaign[i]),
                int(self.event_person[i]),
                EMAIL_EVENT_KINDS[int(self.event_kind[i])],
                _dt(float(self.event_at[i])),
            )


@dataclass(frozen=True, eq=False)
class Sessions:
    """Web sessions of known (logged-in) visitors as parallel arrays, sorted by time.

    Attributes:
        person: person keys.
        started_at: epoch seconds.
        page_views: page views in the session (>= 1).
        category: index into :attr:`Business.categories` of the main category viewed.
        source: index into :data:`SESSION_SOURCES`.
        converted: whether the session ended in an online order.
    """

    person: IntArray
    started_at: IntArray
    page_views: IntArray
    category: IntArray
    source: IntArray
    converted: BoolArray


# ------------------------------------------------------------------------------------------ business


@dataclass(frozen=True, eq=False)
class Business:
    """The seeded business; build it with :meth:`generate`. Compare two with :meth:`fingerprint`."""

    seed: int
    as_of: datetime
    currency: str
    categories: tuple[str, ...]
    people: tuple[Person, ...]
    products: tuple[Product, ...]
    orders: tuple[Order, ...]
    deals: tuple[Deal, ...]
    campaigns: tuple[Campaign, ...]
    email: EmailActivity
    sessions: Sessions
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def generate(cls, contacts: int = 2000, seed: int = 42, as_of: datetime | None = None) -> Business:
        """Generate the business deterministically for ``(contacts, seed, as_of)``.

        Args:
            contacts: number of people (>= 1).
            seed: random seed.
            as_of: the end of history, timezone-aware (default 2026-11-01T00:00Z); history spans three years.

        Raises:
            ValueError: ``contacts`` < 1 or a naive ``as_of``.
        """
        if contacts < 1:
            raise ValueError(f"contacts must be >= 1, got {contacts}")
        as_of = DEFAULT_AS_OF if as_of is None else as_of
        if as_of.tzinfo is None:
            raise ValueError("as_of must be timezone-aware")
        return _Generator(contacts, seed, as_of.astimezone(UTC)).build()

    def person(self, key: int) -> Person:
        """The person with ``key``."""
        return self.people[key - 1]

    def people_in(self, vendor: str) -> list[Person]:
        """People known to ``vendor`` (one of :data:`VENDORS`), by key."""
        return [p for p in self.people if vendor in p.vendors]

    def orders_of(self, person: int) -> list[Order]:
        """Orders of one person, oldest first."""
        by_person: dict[int, list[Order]] | None = self._cache.get("orders_by_person")
        if by_person is None:
            by_person = {}
            for order in self.orders:
                by_person.setdefault(order.person, []).append(order)
            self._cache["orders_by_person"] = by_person
        return list(by_person.get(person, ()))

    def deals_of(self, person: int) -> list[Deal]:
        """Deals of one person."""
        return [d for d in self.deals if d.person == person]

    def summary(self) -> dict[str, Any]:
        """Headline figures: counts, shares and order-value statistics (for logs, the demo and tests)."""
        counts = np.bincount([o.person for o in self.orders], minlength=len(self.people) + 1)[1:]
        totals = np.array([float(o.total) for o in self.orders]) if self.orders else np.zeros(1)
        buyers = int((counts > 0).sum())
        repeat = int((counts > 1).sum())
        return {
            "people": len(self.people),
            "orders": len(self.orders),
            "buyers": buyers,
            "repeat_buyers": repeat,
            "repeat_share": repeat / buyers if buyers else 0.0,
            "order_value_mean": float(totals.mean()),
            "order_value_median": float(np.median(totals)),
            "deals": len(self.deals),
            "campaigns": len(self.campaigns),
            "emails_sent": int(self.email.send_person.size),
            "email_events": int(self.email.event_at.size),
            "sessions": int(self.sessions.person.size),
            "presence": {v: sum(v in p.vendors for p in self.people) for v in VENDORS},
            "latent": {k: sum(p.latent == k for p in self.people) for k in LATENT_SEGMENTS},
        }

    def fingerprint(self) -> str:
        """A SHA-256 over every record and array: equal fingerprints, identical businesses."""
        h = hashlib.sha256()
        h.update(f"{self.seed}|{self.as_of.isoformat()}|{self.currency}".encode())
        groups: tuple[Sequence[object], ...] = (
            self.people,
            self.products,
            self.orders,
            self.deals,
            self.campaigns,
        )
        for group in groups:
            for item in group:
                h.update(repr(item).encode())
        for arrays in (self.email, self.sessions):
            for value in vars(arrays).values():
                h.update(np.ascontiguousarray(value).tobytes())
        return h.hexdigest()

    def write_csv_exports(self, folder: Path, *, offline_only: bool = False) -> dict[str, Path]:
        """Write the exports the CSV source reads (as from a point of sale or a spreadsheet).

        Columns use the CSV source's default field names, so a config needs no ``columns`` mapping. Dates
        are ISO 8601 in UTC, amounts have a ``.`` decimal point, the encoding is UTF-8.

        - ``contacts.csv``: ``id`` (``C`` + key), ``email`` (as the till, else the shop, has it: case and
          whitespace mismatches included), ``first_name``, ``last_name``, ``phone``, ``country``, ``city``,
          ``consent`` (subscribed, unsubscribed, pending, cleaned, objected, or ``no`` for non-members),
          ``created_at``, ``lifecycle_stage``.
        - ``orders.csv``: ``id`` (``O`` + key), ``customer_id``, ``email``, ``occurred_at``, ``amount`` (the
          total in the shop currency), ``currency``, ``status`` (paid, refunded, partially_refunded,
          cancelled), ``channel`` (online, pos), ``items`` (units), ``categories`` (``|``-separated).
        - ``events.csv``: ``id``, ``customer_id``, ``email`` (empty), ``type`` (email_open, email_click,
          email_bounce, email_unsubscribe, session, deal_won), ``occurred_at``, ``amount``, ``currency``,
          ``campaign``, ``category``, ``page_views``.

        Args:
            folder: where to write (created if missing).
            offline_only: only what the till knows: people with in-store orders, the ``pos`` orders, and an
                events.csv with just its header (email and web data then come from the vendor sandboxes,
                so nothing is counted twice). By default everything is exported, for a CSV-only demo.

        Returns:
            The written paths by kind (``contacts``, ``orders``, ``events``).
        """
        folder.mkdir(parents=True, exist_ok=True)
        people = [p for p in self.people if "pos" in p.vendors] if offline_only else list(self.people)
        orders = [o for o in self.orders if o.channel == "pos"] if offline_only else list(self.orders)
        paths = {kind: folder / f"{kind}.csv" for kind in ("contacts", "orders", "events")}
        _write_csv(paths["contacts"], _CONTACT_COLUMNS, (_contact_row(p) for p in people))
        _write_csv(paths["orders"], _ORDER_COLUMNS, (_order_row(o, self.person(o.person)) for o in orders))
        _write_csv(paths["events"], _EVENT_COLUMNS, () if offline_only else _event_rows(self))
        return paths


# ------------------------------------------------------------------------------------------ generation


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(round(epoch), UTC)


@lru_cache(maxsize=65536)
def _money(cents: int) -> Decimal:
    return Decimal(int(cents)).scaleb(-2)


class _Generator:
    """Draws the business in a fixed order from one generator (see the module docstring)."""

    def __init__(self, n: int, seed: int, as_of: datetime) -> None:
        self.n = n
        self.seed = seed
        self.as_of = as_of
        self.t0 = as_of.timestamp()
        self.rng = np.random.default_rng(seed)

    def epoch(self, days: Any) -> Any:
        """Days relative to as_of (negative: past) -> epoch seconds."""
        return self.t0 + np.asarray(days) * _DAY

    def datetimes(self, days: FloatArray) -> list[datetime]:
        """Days relative to as_of -> aware UTC datetimes in whole seconds (vectorised)."""
        seconds = np.round(self.t0 + days * _DAY).astype("datetime64[s]")
        return [d.replace(tzinfo=UTC) for d in seconds.tolist()]

    def build(self) -> Business:
        rng, n = self.rng, self.n
        created = -_HISTORY_DAYS * rng.random(n) ** 1.4  # more sign-ups recently
        b2b = rng.random(n) < 0.12
        buyer = rng.random(n) < 0.70
        vip = buyer & (rng.random(n) < 0.04)
        rate, buy_person, buy_day, dropped_at = self.purchases(created, buyer, vip)
        order_count = np.bincount(buy_person, minlength=n)
        favourite = rng.choice(len(_CATEGORIES), size=n, p=_CATEGORY_WEIGHTS)
        place = self.places()
        products = _catalog()
        orders = self.orders(buy_person, buy_day, vip, favourite, place, products)
        engagement = self.engagement(rate, order_count)
        membership = self.membership(created, order_count)
        campaigns, email = self.email(membership, engagement, dropped_at)
        sessions = self.sessions(created, orders, engagement, favourite, order_count)
        deals, deal_stage = self.deals(created, b2b)
        last_buy = np.full(n, -np.inf)
        np.maximum.at(last_buy, buy_person, buy_day)
        latent = [
            _latent(v, c, d, lb)
            for v, c, d, lb in zip(
                vip.tolist(), order_count.tolist(), dropped_at.tolist(), last_buy.tolist(), strict=True
            )
        ]
        presence = self.presence(b2b, orders, sessions, membership)
        people = self.people(
            created, b2b, order_count, place, membership, engagement, latent, presence, deal_stage
        )
        return Business(
            seed=self.seed,
            as_of=self.as_of,
            currency=SHOP_CURRENCY,
            categories=_CATEGORIES,
            people=people,
            products=products,
            orders=tuple(o for o, _ in orders),
            deals=deals,
            campaigns=campaigns,
            email=email,
            sessions=sessions,
        )

    # ------------------------------------------------------------------ purchases (BG/NBD-like)

    def purchases(
        self, created: FloatArray, buyer: BoolArray, vip: BoolArray
    ) -> tuple[FloatArray, IntArray, FloatArray, FloatArray]:
        """Purchase days of the buyers: (rate per year, person index, day, dropout day or nan), by day."""
        rng, n = self.rng, self.n
        rate = rng.gamma(0.9, 2.6 / 0.9, n) * np.where(vip, 3.0, 1.0)  # purchases per year
        dropout = rng.beta(1.1, 2.4, n) * np.where(vip, 0.3, 1.0)
        t = created + rng.exponential(10.0, n)
        active = buyer & (t < 0)
        persons, days = [np.flatnonzero(active)], [t[active]]
        alive = active & (rng.random(n) >= dropout)
        dropped_at = np.where(active & ~alive, t, np.nan)
        for _ in range(120):  # an order cap per person; high-rate VIPs reach ~60 over three years
            idx = np.flatnonzero(alive)
            if idx.size == 0:
                break
            t[idx] += rng.exponential(365.0 / np.maximum(rate[idx], 1e-3))
            inside = t[idx] < 0
            done, idx = idx[~inside], idx[inside]
            alive[done] = False
            persons.append(idx)
            days.append(t[idx])
            drop = idx[rng.random(idx.size) < dropout[idx]]
            alive[drop] = False
            dropped_at[drop] = t[drop]
        person = np.concatenate(persons).astype(np.int64)
        day = np.concatenate(days)
        order = np.lexsort((person, day))
        return rate, person[order], day[order], dropped_at

    def orders(
        self,
        person: IntArray,
        day: FloatArray,
        vip: BoolArray,
        favourite: IntArray,
        place: IntArray,
        products: tuple[Product, ...],
    ) -> list[tuple[Order, int]]:
        """Orders (with the category of their first line, for sessions) in time order."""
        rng, m = self.rng, person.size
        store_goer = rng.random(self.n) < 0.25
        pos = rng.random(m) < np.where(store_goer[person], 0.55, 0.02)
        mean_spend = np.exp(rng.normal(math.log(48.0), 0.5, self.n)) * np.where(vip, 1.8, 1.0)
        basket = mean_spend[person] * np.exp(rng.normal(-0.1, 0.45, m))
        n_items = 1 + rng.poisson(np.maximum(basket / 40.0 - 1.0, 0.0))
        item_order = np.repeat(np.arange(m), n_items)
        k = item_order.size
        other = rng.choice(len(_CATEGORIES), k, p=_CATEGORY_WEIGHTS)
        category = np.where(rng.random(k) < 0.6, favourite[person][item_order], other)
        product = category * _PRODUCTS_PER_CATEGORY + rng.integers(0, _PRODUCTS_PER_CATEGORY, k)
        quantity = 1 + (rng.random(k) < 0.1)
        price_cents = np.array([int(p.price * 100) for p in products])[product]
        subtotal = np.bincount(item_order, weights=price_cents * quantity, minlength=m).astype(np.int64)
        shipping = np.where(~pos & (subtotal < 6000), 490, 0)
        total = subtotal + shipping
        status_draw = rng.random(m)
        refund_lag = rng.uniform(2.0, 20.0, m)
        partial_share = rng.uniform(0.15, 0.6, m)
        local = rng.random(m) < 0.7  # some foreign buyers still pay in EUR
        processed = self.datetimes(day)
        lines = _line_items(products)
        starts = np.concatenate(([0], np.cumsum(n_items)[:-1])).astype(np.int64)
        first_category = (product[starts] // _PRODUCTS_PER_CATEGORY).tolist() if m else []
        item_keys = (product * 2 + quantity - 1).tolist()  # index into ``lines``
        rows = zip(
            person.tolist(), processed, pos.tolist(), total.tolist(), shipping.tolist(), status_draw.tolist(),
            refund_lag.tolist(), partial_share.tolist(), local.tolist(), place[person].tolist(),
            starts.tolist(), n_items.tolist(),
            strict=True,
        )  # fmt: skip
        result: list[tuple[Order, int]] = []
        for i, (who, at, is_pos, cents, ship, draw, lag, share, in_local, code, start, count) in enumerate(
            rows
        ):
            country = _PLACES[code // 100]
            currency, fx = (country[3], country[4]) if in_local and not is_pos else (SHOP_CURRENCY, 1.0)
            cancelled_at, refunded, status = None, 0, "paid"
            if not is_pos and draw < 0.015:
                cancelled_at, refunded, status = at + timedelta(hours=lag), cents, "refunded"
            elif draw < 0.05:
                refunded, status = cents, "refunded"
            elif draw < 0.08:
                refunded, status = int(cents * share), "partially_refunded"
            # A refund lands days later, but never after as_of (history ends there).
            updated = at if status == "paid" else min(cancelled_at or at + timedelta(days=lag), self.as_of)
            order = Order(
                key=i + 1,
                person=who + 1,
                processed_at=at,
                updated_at=max(updated, at),
                channel="pos" if is_pos else "online",
                currency=SHOP_CURRENCY,
                total=_money(cents),
                shipping=_money(ship),
                presentment_currency=currency,
                presentment_total=_money(round(cents * fx)),
                financial_status=status,
                refunded=_money(refunded),
                cancelled_at=cancelled_at,
                line_items=tuple(lines[j] for j in item_keys[start : start + count]),
            )
            result.append((order, first_category[i]))
        return result

    # ------------------------------------------------------------------ places, engagement, email

    def places(self) -> IntArray:
        """Per person: country index * 100 + region index * 10 + city index."""
        rng, n = self.rng, self.n
        shares = np.array([c[1] for c in _PLACES])
        country = rng.choice(len(_PLACES), n, p=shares / shares.sum())
        u, v = rng.random(n), rng.random(n)
        codes = np.empty(n, dtype=np.int64)
        for ci, c in enumerate(_PLACES):
            mask = country == ci
            regions = c[5]
            region = (u[mask] * len(regions)).astype(np.int64)
            sizes = np.array([len(r[1]) for r in regions])[region]
            city = (v[mask] * sizes).astype(np.int64)
            codes[mask] = ci * 100 + region * 10 + city
        return codes

    def engagement(self, rate: FloatArray, order_count: IntArray) -> FloatArray:
        """Base probability of opening a newsletter, rising with the latent purchase rate and orders."""
        z = self.rng.normal(0.0, 1.0, self.n)
        logit = -1.3 + 0.8 * z + 0.35 * np.log1p(rate) * (order_count > 0) + 0.25 * np.log1p(order_count)
        result: FloatArray = 1.0 / (1.0 + np.exp(-logit))
        return result

    def membership(self, created: FloatArray, order_count: IntArray) -> dict[str, Any]:
        """Email-tool membership: status (index into EMAIL_CONSENT), opt-in and exit days, objections."""
        rng, n = self.rng, self.n
        member = rng.random(n) < np.where(order_count > 0, 0.78, 0.70)
        status = np.where(member, rng.choice(4, n, p=[0.80, 0.12, 0.05, 0.03]), 4)
        opt_in = np.minimum(created + rng.exponential(4.0, n), -0.01)
        opt_in = np.where(status == 3, -rng.uniform(0.0, 20.0, n), opt_in)  # pending: signed up lately
        leaves = (status == 1) | (status == 2)
        exit_day = np.where(leaves, opt_in + rng.random(n) * (-opt_in), np.nan)
        objected = rng.random(n) < 0.015
        return {"status": status, "opt_in": opt_in, "exit": exit_day, "objected": objected}

    def email(
        self, membership: dict[str, Any], engagement: FloatArray, dropped_at: FloatArray
    ) -> tuple[tuple[Campaign, ...], EmailActivity]:
        """Campaigns every 14 days and their sends, opens, clicks, bounces and unsubscribes."""
        rng = self.rng
        days = np.arange(-_CAMPAIGN_DAYS + 0.375, -0.5, _CAMPAIGN_EVERY_DAYS)  # at 09:00 UTC
        sent = self.datetimes(days)
        campaigns = tuple(
            Campaign(i + 1, f"Newsletter {at:%Y-%m-%d}", _CAMPAIGN_THEMES[at.month - 1], at)
            for i, at in enumerate(sent)
        )
        status, opt_in, exit_day = membership["status"], membership["opt_in"], membership["exit"]
        # Members leave in the first campaign after their exit time (the unsubscribe link, the hard bounce).
        exit_idx = np.searchsorted(days, np.nan_to_num(exit_day, nan=np.inf))
        last_day = np.where(exit_idx < days.size, days[np.minimum(exit_idx, days.size - 1)], np.inf)
        lapse = np.nan_to_num(dropped_at, nan=np.inf) + 60.0
        sends: list[tuple[IntArray, IntArray]] = []
        events: list[tuple[Any, Any, Any, Any]] = []
        for ci, d in enumerate(days.tolist()):
            who = np.flatnonzero((status < 3) & (opt_in <= d) & (last_day >= d))
            sends.append((np.full(who.size, ci + 1), who + 1))
            p_open = engagement[who] * np.where(lapse[who] < d, 0.35, 1.0)
            leaving = last_day[who] == d
            opened = (rng.random(who.size) < p_open) | (leaving & (status[who] == 1))
            bounced = (leaving & (status[who] == 2)) | (rng.random(who.size) < 0.003)
            opened &= ~bounced
            clicked = opened & (rng.random(who.size) < 0.12 + 0.3 * engagement[who])
            unsub = leaving & (status[who] == 1)
            open_at = d + rng.exponential(0.3, who.size)
            click_at = open_at + rng.exponential(0.004, who.size)
            kinds = (
                (0, opened, open_at),
                (1, clicked, click_at),
                (2, bounced, np.full(who.size, d + 0.001)),
                (3, unsub, click_at + 0.001),
            )
            for kind, mask, at in kinds:
                idx = np.flatnonzero(mask)
                events.append((np.full(idx.size, ci + 1), who[idx] + 1, np.full(idx.size, kind), at[idx]))
        cols = [np.concatenate(parts) for parts in zip(*events, strict=True)]
        at = np.minimum(self.epoch(cols[3]), self.t0 - 1).round()
        order = np.lexsort((at, cols[0]))
        activity = EmailActivity(
            send_campaign=np.concatenate([s[0] for s in sends]).astype(np.int64),
            send_person=np.concatenate([s[1] for s in sends]).astype(np.int64),
            event_campaign=cols[0][order].astype(np.int64),
            event_person=cols[1][order].astype(np.int64),
            event_kind=cols[2][order].astype(np.int64),
            event_at=at[order].astype(np.int64),
        )
        return campaigns, activity

    def sessions(
        self,
        created: FloatArray,
        orders: list[tuple[Order, int]],
        engagement: FloatArray,
        favourite: IntArray,
        order_count: IntArray,
    ) -> Sessions:
        """Converted sessions shortly before online orders, plus browse sessions."""
        rng, n = self.rng, self.n
        online = [(o, c) for o, c in orders if o.channel == "online"]
        conv_person = np.array([o.person for o, _ in online], dtype=np.int64)
        conv_at = np.array([o.processed_at.timestamp() for o, _ in online], dtype=np.float64)
        conv_cat = np.array([c for _, c in online], dtype=np.int64)
        conv_at = conv_at - rng.uniform(300.0, 5400.0, conv_at.size)
        start = np.maximum(created, -_CAMPAIGN_DAYS)
        browse_rate = np.where(order_count > 0, 3.0, 2.0) * (0.5 + 2.0 * engagement)  # per year
        count = rng.poisson(browse_rate * (-start / 365.0)) * (rng.random(n) < 0.8)
        b_person = np.repeat(np.arange(n), count)
        b_at = self.epoch(start[b_person] * rng.random(b_person.size))
        b_other = rng.choice(len(_CATEGORIES), b_person.size, p=_CATEGORY_WEIGHTS)
        b_cat = np.where(rng.random(b_person.size) < 0.6, favourite[b_person], b_other)
        person = np.concatenate([conv_person, b_person + 1])
        at = np.concatenate([conv_at, b_at]).round().astype(np.int64)
        converted = np.concatenate([np.ones(conv_person.size, bool), np.zeros(b_person.size, bool)])
        category = np.concatenate([conv_cat, b_cat]).astype(np.int64)
        page_views = 1 + rng.geometric(0.25, person.size) + 2 * converted
        source = rng.choice(len(SESSION_SOURCES), person.size, p=[0.35, 0.25, 0.15, 0.15, 0.10])
        order = np.lexsort((person, at))
        return Sessions(
            person=person[order],
            started_at=at[order],
            page_views=page_views[order].astype(np.int64),
            category=category[order],
            source=source[order].astype(np.int64),
            converted=converted[order],
        )

    def deals(self, created: FloatArray, b2b: BoolArray) -> tuple[tuple[Deal, ...], dict[int, set[str]]]:
        """CRM deals of B2B people, and the deal stages of each person (by index)."""
        rng = self.rng
        owners = np.flatnonzero(b2b)
        person = np.repeat(owners, 1 + np.minimum(rng.poisson(0.8, owners.size), 2))
        made = created[person] + rng.random(person.size) * (-created[person])
        close = made + rng.exponential(45.0, person.size)
        won = rng.random(person.size) < 0.45
        amount = np.round(np.exp(rng.normal(math.log(1500.0), 0.8, person.size)), -1).astype(np.int64) * 100
        made_at, close_at = self.datetimes(made), self.datetimes(close)
        deals: list[Deal] = []
        stages: dict[int, set[str]] = {}
        for i, p in enumerate(person.tolist()):
            stage = "open" if close[i] > 0 else ("won" if won[i] else "lost")
            name = f"Deal {i + 1}: {_CATEGORIES[i % len(_CATEGORIES)]} order"
            deals.append(Deal(i + 1, p + 1, name, _money(int(amount[i])), stage, made_at[i], close_at[i]))
            stages.setdefault(p, set()).add(stage)
        return tuple(deals), stages

    # ------------------------------------------------------------------ people

    def presence(
        self,
        b2b: BoolArray,
        orders: list[tuple[Order, int]],
        sessions: Sessions,
        membership: dict[str, Any],
    ) -> BoolArray:
        """Which tools know each person: a (people x VENDORS) boolean matrix."""
        rng, n = self.rng, self.n
        online = np.zeros(n, bool)
        pos = np.zeros(n, bool)
        for o, _ in orders:
            (pos if o.channel == "pos" else online)[o.person - 1] = True
        seen_web = np.zeros(n, bool)
        seen_web[sessions.person - 1] = True
        columns = {
            "shopify": online | (rng.random(n) < 0.62),
            "hubspot": b2b | (rng.random(n) < 0.68),
            "zoho": rng.random(n) < np.where(b2b, 0.7, 0.45),
            "mailchimp": membership["status"] < 4,
            "ga4": seen_web,
            "pos": pos,
        }
        matrix = np.stack([columns[v] for v in VENDORS], axis=1)
        matrix[~matrix.any(axis=1), VENDORS.index("shopify")] = True  # everyone is known somewhere
        return matrix

    def people(
        self,
        created: FloatArray,
        b2b: BoolArray,
        order_count: IntArray,
        place: IntArray,
        membership: dict[str, Any],
        engagement: FloatArray,
        latent: list[str],
        presence: BoolArray,
        deal_stage: dict[int, set[str]],
    ) -> tuple[Person, ...]:
        """The people, with the email each tool has for them."""
        rng, n = self.rng, self.n
        first = rng.integers(0, len(_FIRST_NAMES), n).tolist()
        last = rng.integers(0, len(_LAST_NAMES), n).tolist()
        pattern = rng.integers(0, 5, n)
        domain = rng.integers(0, len(_CONSUMER_DOMAINS), n)
        company = rng.integers(0, len(_COMPANY_WORDS) * len(_COMPANY_SUFFIXES), n)
        has_phone = rng.random(n) < 0.7
        phone_digits = rng.integers(10_000_000, 99_999_999, n)
        mismatch = rng.random((n, len(VENDORS))).tolist()
        other_vendor = rng.integers(0, len(VENDORS), n).tolist()
        lag = rng.exponential(2.0, (n, len(VENDORS))).tolist()
        present = presence.tolist()
        created_at = self.datetimes(created)
        opt_in = self.datetimes(membership["opt_in"])
        exit_at = self.datetimes(np.nan_to_num(membership["exit"]))
        status = membership["status"].tolist()
        objected = membership["objected"].tolist()
        stage = [
            _stage(lt, c > 0, deal_stage.get(i, set()), st, e)
            for i, (lt, c, st, e) in enumerate(
                zip(latent, order_count.tolist(), status, engagement.tolist(), strict=True)
            )
        ]
        emails = _emails(first, last, pattern.tolist(), domain.tolist(), company.tolist(), b2b.tolist())
        phones = [
            f"{_PLACES[c // 100][2]} {d // 10_000:04d} {d % 10_000:04d}" if has else None
            for c, d, has in zip(place.tolist(), phone_digits.tolist(), has_phone.tolist(), strict=True)
        ]
        people: list[Person] = []
        for i, (code, (email, comp)) in enumerate(zip(place.tolist(), emails, strict=True)):
            vendors = {}
            for vi, vendor in enumerate(VENDORS):
                if present[i][vi]:
                    # GA4 never holds an email (a user id only): keep the canonical one there.
                    seen = (
                        email
                        if vendor == "ga4"
                        else _as_seen(email, mismatch[i][vi], vi == other_vendor[i], i)
                    )
                    at = opt_in[i] if vendor == "mailchimp" else created_at[i] + timedelta(days=lag[i][vi])
                    vendors[vendor] = VendorView(seen, min(at, self.as_of))
            country = _PLACES[code // 100]
            region, cities = country[5][(code // 10) % 10]
            people.append(
                Person(
                    key=i + 1,
                    email=email,
                    first_name=_FIRST_NAMES[first[i]],
                    last_name=_LAST_NAMES[last[i]],
                    phone=phones[i],
                    country=country[0],
                    region=region,
                    city=cities[code % 10],
                    created_at=created_at[i],
                    lifecycle_stage=stage[i],
                    email_consent=EMAIL_CONSENT[status[i]],
                    consent_at=opt_in[i] if status[i] < 4 else None,
                    consent_ended_at=exit_at[i] if status[i] in (1, 2) else None,
                    objected_to_profiling=objected[i],
                    company=comp,
                    latent=latent[i],
                    vendors=vendors,
                )
            )
        return tuple(people)


def _line_items(products: tuple[Product, ...]) -> list[LineItem]:
    """Every (product, quantity 1 or 2) line, shared by all orders (they are immutable)."""
    return [LineItem(p.key, p.sku, p.title, p.product_type, q, p.price) for p in products for q in (1, 2)]


def _catalog() -> tuple[Product, ...]:
    products = []
    for ci, category in enumerate(_CATEGORIES):
        for j in range(_PRODUCTS_PER_CATEGORY):
            price = round(_CATEGORY_BASE_PRICE[ci] * (0.55 + 0.3 * j)) - 0.1  # 21.90-style price points
            key = ci * _PRODUCTS_PER_CATEGORY + j + 1
            sku = f"{category[:3].upper()}-{j + 1:03d}"
            products.append(Product(key, sku, f"{category} item {j + 1}", category, Decimal(f"{price:.2f}")))
    return tuple(products)


def _fold(text: str) -> str:
    return text.lower().translate(_ASCII_FOLD)


def _emails(
    first: list[int],
    last: list[int],
    pattern: list[int],
    domain: list[int],
    company: list[int],
    b2b: list[bool],
) -> list[tuple[str, str | None]]:
    """Unique canonical emails, and the company of B2B people (whose address is at the company)."""
    taken: set[str] = set()
    out: list[tuple[str, str | None]] = []
    rows = zip(first, last, pattern, domain, company, b2b, strict=True)
    for key, (fi, la, pat, dom, comp_i, is_b2b) in enumerate(rows, start=1):
        comp = None
        where = _CONSUMER_DOMAINS[dom]
        if is_b2b:
            word, suffix = divmod(comp_i, len(_COMPANY_SUFFIXES))
            comp = f"{_COMPANY_WORDS[word]} {_COMPANY_SUFFIXES[suffix]}"
            where = f"{_fold(_COMPANY_WORDS[word])}-{_fold(_COMPANY_SUFFIXES[suffix])}.example"
        f, ln = _fold(_FIRST_NAMES[fi]), _fold(_LAST_NAMES[la])
        local = (f"{f}.{ln}", f"{f}{ln}", f"{f[0]}.{ln}", f"{f}_{ln}", f"{f}.{ln}{key % 97}")[pat]
        email = f"{local}@{where}"
        if email in taken:
            email = f"{local}.{key}@{where}"
        taken.add(email)
        out.append((email, comp))
    return out


def _as_seen(email: str, draw: float, other: bool, key: int) -> str:
    """The canonical email as one tool has it: mostly equal, sometimes cased, padded or another address."""
    if draw < 0.035:
        local, domain = email.split("@")
        return f"{'.'.join(p.capitalize() for p in local.split('.'))}@{domain.capitalize()}"
    if draw < 0.04:
        return email.upper()
    if draw < 0.055:
        return (f" {email}", f"{email} ", f" {email} ")[key % 3]
    if draw < 0.075 and other:
        local, domain = email.split("@")
        domains = _CONSUMER_DOMAINS
        alternative = domains[(domains.index(domain) + 1) % len(domains)] if domain in domains else domains[0]
        return f"{local}@{alternative}"
    return email


def _latent(vip: bool, orders: int, dropped_at: float, last_buy: float) -> str:
    if orders == 0:
        return "never"
    if vip:
        return "vip"
    if not math.isnan(dropped_at) and last_buy < -180.0:
        return "lapsed"
    return "one_time" if orders == 1 else "repeat"


def _stage(latent: str, bought: bool, deal_stages: set[str], status: int, engagement: float) -> str:
    if latent == "vip":
        return "evangelist"
    if bought or "won" in deal_stages:
        return "customer"
    if "open" in deal_stages:
        return "opportunity"
    if engagement > 0.45:
        return "marketingqualifiedlead"
    return "subscriber" if status == 0 else "lead"


# ------------------------------------------------------------------------------------------ CSV exports

_CONTACT_COLUMNS = (
    "id", "email", "first_name", "last_name", "phone", "country", "city", "consent", "created_at",
    "lifecycle_stage",
)  # fmt: skip
_ORDER_COLUMNS = (
    "id", "customer_id", "email", "occurred_at", "amount", "currency", "status", "channel", "items",
    "categories",
)  # fmt: skip
_EVENT_COLUMNS = (
    "id", "customer_id", "email", "type", "occurred_at", "amount", "currency", "campaign", "category",
    "page_views",
)  # fmt: skip


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows(rows)


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _customer_id(key: int) -> str:
    return f"C{key:06d}"


def _csv_email(person: Person) -> str:
    # The till's own spelling when it knows the person, else the shop's: exports carry the tools' mismatches.
    return person.email_in("pos") or person.email_in("shopify") or person.email


def _contact_row(p: Person) -> list[object]:
    consent = "no" if p.email_consent == "not_subscribed" else p.email_consent
    if p.objected_to_profiling:
        consent = "objected"
    return [
        _customer_id(p.key), _csv_email(p), p.first_name, p.last_name, p.phone or "", p.country, p.city,
        consent, _iso(p.created_at), p.lifecycle_stage,
    ]  # fmt: skip


def _order_row(o: Order, p: Person) -> list[object]:
    status = "cancelled" if o.cancelled else o.financial_status
    categories = "|".join(dict.fromkeys(li.product_type for li in o.line_items))
    units = sum(li.quantity for li in o.line_items)
    return [
        f"O{o.key:07d}", _customer_id(o.person), _csv_email(p), _iso(o.processed_at), str(o.total),
        o.currency, status, o.channel, units, categories,
    ]  # fmt: skip


def _event_rows(b: Business) -> Iterator[list[object]]:
    email = b.email
    for i in range(email.event_at.size):
        person, campaign = int(email.event_person[i]), int(email.event_campaign[i])
        kind = EMAIL_EVENT_KINDS[int(email.event_kind[i])]
        at = _iso(_dt(float(email.event_at[i])))
        yield [f"E{i + 1:08d}", _customer_id(person), "", f"email_{kind}", at, "", "",
               b.campaigns[campaign - 1].name, "", ""]  # fmt: skip
    s = b.sessions
    for i in range(s.person.size):
        at = _iso(_dt(float(s.started_at[i])))
        yield [f"S{i + 1:08d}", _customer_id(int(s.person[i])), "", "session", at, "", "", "",
               b.categories[int(s.category[i])], int(s.page_views[i])]  # fmt: skip
    for d in b.deals:
        if d.stage == "won":
            yield [f"D{d.key:06d}", _customer_id(d.person), "", "deal_won", _iso(d.close_date), str(d.amount),
                   b.currency, "", "", ""]  # fmt: skip
