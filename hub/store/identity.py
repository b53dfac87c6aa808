"""Identity resolution: which source profiles are the same person, and what the person looks like.

Everything here is pure (no SQL), so the rules can be tested on their own; :mod:`hub.store.repo` loads the
existing identities a page touches, runs a :class:`Resolver` over the page, and writes the outcome.

Rules
-----
- Identity keys: the profile's own ``(source, external_id)``, its normalized email, and each explicit link
  ``{other_source: external_id}``. Profiles sharing any key are one person (connected components), so the
  final grouping does not depend on the order records arrive in.
- Several stored people found for one profile are merged into the lowest person id; the merge is logged with
  its reason. Merges are sticky: a later email change does not split a person again.
- Emails are normalized by stripping and lowercasing only. Provider tricks (Gmail dots, ``+tags``) are not
  undone: on other domains they name different mailboxes, and a wrong merge is worse than a missed one.
- The person's view: for names, phone and email, the first non-empty value over its profiles ordered by
  (live profiles first, then deleted ones, then key-only rows; then source name; then external id). Consent
  is the most restrictive of all its profiles, in the order of :data:`CONSENT_STRICTNESS`, so an opt-out or
  bounce anywhere wins over an opt-in elsewhere. A person is deleted only when every profile a source
  actually described is deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hub.contracts import Consent

# Most restrictive first. UNKNOWN is last: a source that does not track consent says nothing.
CONSENT_STRICTNESS: tuple[Consent, ...] = (
    Consent.OBJECTED,
    Consent.UNDELIVERABLE,
    Consent.DENIED,
    Consent.PENDING,
    Consent.GRANTED,
    Consent.UNKNOWN,
)
_CONSENT_RANK = {c.value: i for i, c in enumerate(CONSENT_STRICTNESS)}
# Invisible characters that survive copy-paste from spreadsheets and web forms.
_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"
# Whitespace (Unicode's, including no-break spaces) and invisible characters, trimmed together in any mix.
_TRIM = "".join(chr(c) for c in range(0x3000 + 1) if chr(c).isspace()) + _INVISIBLE


def normalize_email(raw: str | None) -> str | None:
    """The merge key of an email address: stripped and lowercased, or None when it is not an address.

    Accepts ``Name <x@y>`` and ``mailto:`` forms. Anything without exactly one ``@`` between a non-empty
    local part and domain, or with whitespace inside, is not used as a key (None).
    """
    if not raw:
        return None
    text = raw.strip(_TRIM)
    if text.endswith(">") and "<" in text:
        text = text[text.rindex("<") + 1 : -1].strip()
    text = text.lower()
    if text.startswith("mailto:"):
        text = text[len("mailto:") :]
    local, at, domain = text.partition("@")
    domain = domain.rstrip(".")
    if not at or not local or not domain or "@" in domain:
        return None
    if any(ch.isspace() or ch in "<>," for ch in text):
        return None
    return f"{local}@{domain}"


def strictest_consent(values: Iterable[str]) -> str:
    """The most restrictive consent status among ``values`` (unknown when there are none)."""
    best = Consent.UNKNOWN.value
    for value in values:
        if _CONSENT_RANK.get(value, len(CONSENT_STRICTNESS)) < _CONSENT_RANK[best]:
            best = value
    return best


@dataclass(frozen=True, slots=True)
class Profile:
    """What one identity row says about its person (input to :func:`person_view`)."""

    source: str
    external_id: str | None
    email: str | None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    consent: str = Consent.UNKNOWN.value
    seen: bool = True
    deleted: bool = False
    properties: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class PersonView:
    """The resolved person: what the ``person`` row holds."""

    email: str | None
    first_name: str | None
    last_name: str | None
    phone: str | None
    consent: str
    deleted: bool
    properties: dict[str, Any] | None = None


def _profile_order(p: Profile) -> tuple[bool, bool, str, str, str, str, str, str]:
    # The trailing fields only break ties (several key-only rows of one source), so the view never depends
    # on the order the rows were read in.
    return (
        not p.seen,
        p.deleted,
        p.source,
        p.external_id or "",
        p.email or "",
        p.first_name or "",
        p.last_name or "",
        p.phone or "",
    )


def _first(values: Iterable[str | None]) -> str | None:
    return next((v for v in values if v), None)


def person_view(profiles: Sequence[Profile]) -> PersonView:
    """Resolve a person from its profiles by the module's stable rules (independent of input order)."""
    ordered = sorted(profiles, key=_profile_order)
    described = [p for p in ordered if p.seen]
    return PersonView(
        email=_first(p.email for p in ordered),
        first_name=_first(p.first_name for p in ordered),
        last_name=_first(p.last_name for p in ordered),
        phone=_first(p.phone for p in ordered),
        consent=strictest_consent(p.consent for p in ordered),
        deleted=bool(described) and all(p.deleted for p in described),
        properties=merged_properties(p.properties for p in ordered if not p.deleted),
    )


def merged_properties(parts: Iterable[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """Source properties merged over profiles in view order: the first non-empty value of a name wins."""
    merged: dict[str, Any] = {}
    for part in parts:
        for name, value in (part or {}).items():
            if name not in merged and value not in (None, ""):
                merged[name] = value
    return merged or None


# ----------------------------------------------------------------------------------------------- resolver

IdKey = tuple[str, str]  # (source, external_id)
Key = tuple[str, str, str]  # ("id", source, external_id) or ("email", normalized email, "")


def id_key(source: str, external_id: str) -> Key:
    return ("id", source, external_id)


def email_key(email: str) -> Key:
    return ("email", email, "")


def label(source: str, external_id: str | None) -> str:
    """How an identity is named in merge reasons: ``shopify:123``, or ``shopify (activity)`` for an email
    known only from that source's activities."""
    return f"{source}:{external_id}" if external_id is not None else f"{source} (activity)"


@dataclass(frozen=True, slots=True)
class Claim:
    """One statement that some keys belong to one person: a profile, or an activity's person reference."""

    source: str
    external_id: str | None
    email: str | None
    links: tuple[IdKey, ...] = ()

    def key_list(self) -> list[Key]:
        keys: list[Key] = []
        if self.external_id is not None:
            keys.append(id_key(self.source, self.external_id))
        if self.email is not None:
            keys.append(email_key(self.email))
        keys.extend(id_key(s, e) for s, e in self.links)
        return keys


@dataclass(frozen=True, slots=True)
class Merge:
    """Person ``loser`` (a stored person) was merged into ``winner`` because of ``reason``."""

    winner: int
    loser: int
    reason: str


@dataclass
class Resolver:
    """Page-local identity resolution over stored identities plus the page's claims.

    Person references are stored ids (positive) or temporary ids (negative) for people this page creates;
    the caller allocates real ids for :attr:`new_people` afterwards. Internally a union-find over persons.
    """

    _keys: dict[Key, set[int]] = field(default_factory=dict)
    _labels: dict[tuple[Key, int], str] = field(default_factory=dict)
    _parent: dict[int, int] = field(default_factory=dict)
    _next_temp: int = -1
    new_people: list[int] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)

    def load(self, person_id: int, source: str, external_id: str | None, email: str | None) -> None:
        """Register a stored identity row."""
        name = label(source, external_id)
        if external_id is not None:
            self._add(id_key(source, external_id), person_id, name)
        if email is not None:
            self._add(email_key(email), person_id, name)

    def find(self, ref: int) -> int:
        """The person ``ref`` ended up as (after any merges in this page)."""
        root = ref
        while (parent := self._parent.get(root)) is not None:
            root = parent
        while ref != root:  # path compression keeps later lookups O(1)
            parent = self._parent[ref]
            self._parent[ref] = root
            ref = parent
        return root

    def known(self, key: Key) -> bool:
        """Whether ``key`` already belongs to some person (stored or created in this page)."""
        return key in self._keys

    def resolve(self, claim: Claim) -> int:
        """The person ``claim`` belongs to: found by its keys, created, or the merge of several."""
        found: dict[int, Key] = {}
        for key in claim.key_list():
            for ref in self._keys.get(key, ()):
                found.setdefault(self.find(ref), key)
        if not found:
            person = self._new_person()
        else:
            person = min(found, key=_winner_order)
            for loser in sorted(found, key=_winner_order)[1:]:
                self._merge(person, loser, claim, found)
        name = label(claim.source, claim.external_id)
        for key in claim.key_list():
            self._keys[key] = {person}
            self._labels.setdefault((key, person), name)
        return person

    def _add(self, key: Key, person: int, name: str) -> None:
        self._keys.setdefault(key, set()).add(person)
        self._labels.setdefault((key, person), name)

    def _new_person(self) -> int:
        ref = self._next_temp
        self._next_temp -= 1
        self.new_people.append(ref)
        return ref

    def _merge(self, winner: int, loser: int, claim: Claim, found: dict[int, Key]) -> None:
        self._parent[loser] = winner
        if loser < 0:
            # Never stored: nothing to re-point or explain beyond the identities themselves.
            self.new_people.remove(loser)
            return
        self.merges.append(Merge(winner, loser, self._reason(winner, loser, claim, found)))

    def _reason(self, winner: int, loser: int, claim: Claim, found: dict[int, Key]) -> str:
        me = label(claim.source, claim.external_id)
        own = id_key(claim.source, claim.external_id) if claim.external_id is not None else None
        for key in (found[loser], found[winner]):
            if key[0] == "id" and key != own:
                return f"explicit link {me} -> {key[1]}:{key[2]}"
        sides = {
            ref: self._labels.get((key, ref), f"person {ref}")
            for ref, key in found.items()
            if ref in (winner, loser) and key[0] == "email"
        }
        names = [sides.get(winner, me), sides.get(loser, me)]
        if names[0] == names[1]:
            names[0] = me
        return f"same email {claim.email} from {names[0]} and {names[1]}"


def _winner_order(ref: int) -> tuple[int, int]:
    # Stored people (lowest id) win over people created in this page (earliest created first).
    return (0, ref) if ref > 0 else (1, -ref)
