"""HubSpot constants: API version, base URLs, page sizes, documented limits and the stream table.

Every number here comes from HubSpot's documentation (usage guidelines, the CRM search guide, the lists and
batch API references) or from the OpenAPI files in HubSpot's public spec collection; README.md says which.
"""

from __future__ import annotations

from dataclasses import dataclass

API_BASE_URL = "https://api.hubapi.com"
TOKEN_PATH = "/oauth/v1/token"
# Classic versioned paths (/crm/v3/..., /crm/v4/...), not the date-versioned ones (/crm/objects/2026-03/...).
CRM_VERSION = "v3"
ASSOCIATIONS_VERSION = "v4"

CONTACTS = "contacts"
COMPANIES = "companies"
DEALS = "deals"
OBJECT_TYPE_IDS = {CONTACTS: "0-1", COMPANIES: "0-2", DEALS: "0-3"}

# Paging and batch sizes (the documented maxima).
LIST_PAGE_SIZE = 100  # GET /crm/v3/objects/{type}: at most 100 per page
SEARCH_PAGE_SIZE = 200  # POST .../search: at most 200 per page since 2024
SEARCH_RESULT_CAP = 10_000  # a search query never pages past 10,000 results (400 beyond)
SEARCH_MAX_FILTER_GROUPS = 6
SEARCH_MAX_FILTERS = 18
BATCH_LIMIT = 100  # batch/read, batch/update, batch/upsert: 100 inputs per call
ASSOCIATIONS_BATCH_LIMIT = 1_000  # v4 associations batch/read
ASSOCIATIONS_PAGE_SIZE = 500  # GET /crm/v4/objects/{type}/{id}/associations/{toType}: at most 500 per page
HISTORY_PAGE_SIZE = 50  # a list page that asks for propertiesWithHistory holds at most 50 records
OWNERS_PAGE_SIZE = 500  # GET /crm/v3/owners: at most 500 per page (default 100)
LIST_MEMBERSHIP_BATCH = 100  # ids per add-and-remove call, the same 100 as every CRM batch endpoint
LIST_MEMBERSHIP_PAGE = 250  # GET /crm/v3/lists/{id}/memberships: at most 250
LIST_SEARCH_PAGE = 500  # POST /crm/v3/lists/search: count at most 500

# Property lists travel in the URL of list requests. HubSpot documents no exact URL limit and answers 414
# past it; long lists are split so that each request stays well below what servers commonly accept.
MAX_PROPERTIES_CHARS = 4_000

# Rate limits (usage guidelines): a burst window per account by tier, the CRM search limit (search requests
# are exempt from the burst window: the specs mark them `x-hubspot-rate-limit-exemptions: ten-secondly`), and
# a daily cap for private apps.
BURST_WINDOW_S = 10.0
BURST_LIMITS = {"free": 100, "starter": 100, "professional": 190, "enterprise": 190}
OAUTH_APP_BURST_LIMIT = 110  # public (OAuth) apps, per installed account
DAILY_LIMITS = {"free": 250_000, "starter": 250_000, "professional": 650_000, "enterprise": 1_000_000}
SEARCH_PER_SECOND = 5
# Client-side slack on every window: a request is counted by the server a little after the pacer released
# it, so a window measured exactly would now and then let one through a hair early.
PACING_MARGIN = 0.02
PACING_MIN_MARGIN_S = 0.05
# With the daily cap spent, wait this long before trying again (the cap resets at midnight in the account's
# time zone, which the API does not tell a private app).
DAILY_CAP_RETRY_S = 3_600.0

HEADER_MAX = "X-HubSpot-RateLimit-Max"
HEADER_REMAINING = "X-HubSpot-RateLimit-Remaining"
HEADER_INTERVAL_MS = "X-HubSpot-RateLimit-Interval-Milliseconds"
HEADER_DAILY = "X-HubSpot-RateLimit-Daily"
HEADER_DAILY_REMAINING = "X-HubSpot-RateLimit-Daily-Remaining"

# OAuth access tokens live 30 minutes; refresh this long before they expire.
OAUTH_TOKEN_LIFETIME_S = 1_800
OAUTH_REFRESH_MARGIN_S = 120.0

# Search is eventually consistent: a record changed a moment ago may not be found yet. Incremental windows
# start this far before the previous run's end.
DEFAULT_LOOKBACK = "10m"

# Scopes each call family needs, for the error message when one is missing.
SCOPES = {
    CONTACTS: "crm.objects.contacts.read",
    DEALS: "crm.objects.deals.read",
    "contacts_write": "crm.objects.contacts.write",
    "schemas_contacts_write": "crm.schemas.contacts.write",
    "lists_read": "crm.lists.read",
    "lists_write": "crm.lists.write",
}

# Contact properties the segmentation needs. Values are strings whatever the property type.
CONTACT_PROPERTIES = (
    "email",
    "firstname",
    "lastname",
    "phone",
    "mobilephone",
    "company",
    "country",
    "state",
    "city",
    "lifecyclestage",
    "createdate",
    "lastmodifieddate",
    "hs_object_id",
    # consent
    "hs_email_optout",
    "hs_email_bad_address",
    "hs_email_hard_bounce_reason_enum",
    "hs_email_quarantined",
    "hs_emailconfirmationstatus",
    "hs_legal_basis",
    # marketing email engagement: HubSpot keeps counters and dates on the contact, not events
    "hs_email_delivered",
    "hs_email_open",
    "hs_email_click",
    "hs_email_bounce",
    "hs_email_first_open_date",
    "hs_email_last_open_date",
    "hs_email_last_click_date",
    "hs_email_last_send_date",
)
DEAL_PROPERTIES = (
    "dealname",
    "amount",
    "deal_currency_code",
    "closedate",
    "dealstage",
    "pipeline",
    "createdate",
    "hs_lastmodifieddate",
    "hs_object_id",
)


@dataclass(frozen=True)
class StreamSpec:
    """What varies between the object streams.

    Attributes:
        name: the stream name (also the state key).
        object_type: the CRM object type in the API paths.
        record_type: ``Record.object_type`` of what the stream yields.
        cursor_property: the last-modified property search filters on (contacts name it differently).
        properties: the properties always requested.
        associations: object types whose associated ids each record needs (v4 batch read).
    """

    name: str
    object_type: str
    record_type: str
    cursor_property: str
    properties: tuple[str, ...]
    associations: tuple[str, ...] = ()


STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec(CONTACTS, CONTACTS, "contact", "lastmodifieddate", CONTACT_PROPERTIES),
    StreamSpec(DEALS, DEALS, "deal", "hs_lastmodifieddate", DEAL_PROPERTIES, associations=(CONTACTS,)),
)
STREAM_NAMES = tuple(s.name for s in STREAMS)

# The multiple-checkbox property the property push mode writes, and its group.
DEFAULT_TAG_PROPERTY = "hub_segments"
DEFAULT_TAG_PROPERTY_LABEL = "Audience Hub segments"
DEFAULT_PROPERTY_GROUP = "contactinformation"
TAG_SEPARATOR = ";"
