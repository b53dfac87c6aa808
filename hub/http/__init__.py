"""The HTTP core shared by every vendor connector: client, retry, pacing, pagination, auth, error mapping.

Typical use in a connector::

    pacer = ctx.shared.setdefault(f"hubspot:{account}", Pacer({"general": WindowLimit(100, 10)}))
    transport = ctx.transports.get("hubspot")
    client = make_client(base_url, auth=BearerAuth(token), pacer=pacer, transport=transport)
    cursor = BodyCursorPaginator("paging.next.after", "after")
    for page in paginate(client, "GET", "/crm/v3/objects/contacts", cursor):
        ...
"""

from __future__ import annotations

from hub.http.auth import (
    BasicAuth,
    BearerAuth,
    HeaderTokenAuth,
    OAuth2RefreshAuth,
    OAuthToken,
    TokenRequestParams,
    form_token_request,
    query_token_request,
)
from hub.http.client import (
    DEFAULT_TIMEOUT,
    DEFAULT_USER_AGENT,
    HttpClient,
    counting_scope,
    make_client,
    scope_stats,
)
from hub.http.errors import (
    HttpError,
    NotFoundError,
    StatusOverride,
    error_for_response,
    raise_for_response,
    retry_after_seconds,
)
from hub.http.pacer import Limiter, Pacer, RateLimitHeaders, TokenBucket, WindowLimit
from hub.http.paginate import (
    BodyCursorPaginator,
    LinkHeaderPaginator,
    OffsetPaginator,
    PageRequest,
    PageTokenPaginator,
    Paginator,
    paginate,
)
from hub.http.retry import NO_RETRY, RetryPolicy

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_USER_AGENT",
    "NO_RETRY",
    "BasicAuth",
    "BearerAuth",
    "BodyCursorPaginator",
    "HeaderTokenAuth",
    "HttpClient",
    "HttpError",
    "Limiter",
    "LinkHeaderPaginator",
    "NotFoundError",
    "OAuth2RefreshAuth",
    "OAuthToken",
    "OffsetPaginator",
    "Pacer",
    "PageRequest",
    "PageTokenPaginator",
    "Paginator",
    "RateLimitHeaders",
    "RetryPolicy",
    "StatusOverride",
    "TokenBucket",
    "TokenRequestParams",
    "WindowLimit",
    "counting_scope",
    "error_for_response",
    "form_token_request",
    "make_client",
    "paginate",
    "query_token_request",
    "raise_for_response",
    "retry_after_seconds",
    "scope_stats",
]
