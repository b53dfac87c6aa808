"""Authentication as ``httpx.Auth`` subclasses: static tokens, HTTP Basic, and the OAuth 2 refresh-token flow.

Every secret is registered with :func:`hub.redact.register_secret` before it is put on a request, so it is
masked in logs and error text from then on.

The OAuth refresh request is sent through the same client (it is yielded from the auth flow), so it uses the
client's transport: an in-process sandbox sees it too.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr

from hub.errors import ConfigError, TransientError
from hub.http.errors import retry_after_seconds
from hub.redact import redact, register_secret, sanitize_url

logger = logging.getLogger(__name__)

# Fields of a token response that are never kept in OAuthToken.extra (they are secrets).
_SECRET_FIELDS = frozenset({"access_token", "refresh_token", "id_token"})


class BearerAuth(httpx.Auth):
    """``Authorization: Bearer <token>`` (HubSpot private apps, GA4 with a ready token).

    Args:
        token: the access token.
        scheme: the scheme word, for vendors that use another one.
    """

    def __init__(self, token: SecretStr, *, scheme: str = "Bearer") -> None:
        self._token = token
        self._scheme = scheme

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        value = self._token.get_secret_value()
        register_secret(value)
        request.headers["Authorization"] = f"{self._scheme} {value}"
        yield request


class BasicAuth(httpx.Auth):
    """HTTP Basic (Mailchimp: any user name, the API key as password).

    Args:
        username: the user name (not secret).
        password: the password or API key.
    """

    def __init__(self, username: str, password: SecretStr) -> None:
        self._username = username
        self._password = password

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        secret = self._password.get_secret_value()
        encoded = base64.b64encode(f"{self._username}:{secret}".encode()).decode("ascii")
        register_secret(secret)
        register_secret(encoded)  # the encoded form would slip past a mask of the raw key
        request.headers["Authorization"] = f"Basic {encoded}"
        yield request


class HeaderTokenAuth(httpx.Auth):
    """A token in a header of the vendor's choosing (Shopify ``X-Shopify-Access-Token``).

    Args:
        header_name: the header to set.
        token: its value.
        prefix: text before the token (e.g. ``"Token "``), empty by default.
    """

    def __init__(self, header_name: str, token: SecretStr, *, prefix: str = "") -> None:
        self._header = header_name
        self._token = token
        self._prefix = prefix

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        value = self._token.get_secret_value()
        register_secret(value)
        request.headers[self._header] = f"{self._prefix}{value}"
        yield request


@dataclass(frozen=True)
class TokenRequestParams:
    """What a token request is built from; passed to a :data:`TokenRequestBuilder`."""

    token_url: str
    client_id: str
    client_secret: SecretStr
    refresh_token: SecretStr
    scope: str | None = None

    def fields(self) -> dict[str, str]:
        """The standard refresh-token grant fields (RFC 6749 section 6)."""
        out = {
            "grant_type": "refresh_token",
            "client_id": self.client_id,
            "client_secret": self.client_secret.get_secret_value(),
            "refresh_token": self.refresh_token.get_secret_value(),
        }
        if self.scope:
            out["scope"] = self.scope
        return out


TokenRequestBuilder = Callable[[TokenRequestParams], httpx.Request]


def form_token_request(params: TokenRequestParams) -> httpx.Request:
    """The standard shape: ``POST`` form fields (HubSpot ``/oauth/v1/token``, Google)."""
    return httpx.Request(
        "POST", params.token_url, data=params.fields(), headers={"Accept": "application/json"}
    )


def query_token_request(params: TokenRequestParams) -> httpx.Request:
    """Fields as query parameters of a ``POST`` (Zoho ``/oauth/v2/token``)."""
    return httpx.Request(
        "POST", params.token_url, params=params.fields(), headers={"Accept": "application/json"}
    )


@dataclass(frozen=True)
class OAuthToken:
    """A freshly issued access token.

    Args:
        access_token: the token.
        expires_at: when it expires, on the auth's clock (None: unknown).
        refresh_token: a new refresh token when the vendor rotated it, else None.
        extra: the response's other, non-secret fields (Zoho ``api_domain``, ``scope``, ``token_type``).
    """

    access_token: SecretStr
    expires_at: float | None
    refresh_token: SecretStr | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class OAuth2RefreshAuth(httpx.Auth):
    """OAuth 2 refresh-token flow: refresh ahead of expiry, one refresh at a time, one retry on 401.

    Share one instance between all streams of an account (keep it in ``BuildContext.shared``): the lock then
    makes concurrent streams wait for a single refresh instead of each burning the refresh token.

    Args:
        token_url: the absolute token endpoint URL.
        client_id: the OAuth client id.
        client_secret: the OAuth client secret.
        refresh_token: the long-lived refresh token.
        scope: scopes to request, if the vendor wants them on refresh.
        scheme: the ``Authorization`` scheme word (Zoho: ``Zoho-oauthtoken``).
        access_token: a still-valid access token to start with, if known.
        expires_at: its expiry on ``clock``.
        margin_s: refresh this long before expiry, so a token never dies mid-request.
        default_expires_in: assumed lifetime when the token response has no ``expires_in``.
        build_token_request: shapes the token request (:func:`form_token_request` or
            :func:`query_token_request`).
        on_token: called with every new token (to cache it across runs).
        on_rotate: called with the new refresh token when the vendor rotates it (to persist it).
        clock: POSIX seconds (injectable for tests).
    """

    requires_response_body = True

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: SecretStr,
        refresh_token: SecretStr,
        *,
        scope: str | None = None,
        scheme: str = "Bearer",
        access_token: SecretStr | None = None,
        expires_at: float | None = None,
        margin_s: float = 60.0,
        default_expires_in: float = 3600.0,
        build_token_request: TokenRequestBuilder = form_token_request,
        on_token: Callable[[OAuthToken], None] | None = None,
        on_rotate: Callable[[SecretStr], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._params = TokenRequestParams(token_url, client_id, client_secret, refresh_token, scope)
        self._scheme = scheme
        self._access = access_token
        self._expires_at = expires_at
        self._margin = margin_s
        self._default_expires_in = default_expires_in
        self._build = build_token_request
        self._on_token = on_token
        self._on_rotate = on_rotate
        self._clock = clock
        self._lock = threading.Lock()
        self.refreshes = 0
        for secret in (client_secret, refresh_token, access_token):
            if secret is not None:
                register_secret(secret.get_secret_value())

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        # The lock is held across the yielded refresh request on purpose: other threads wait for this refresh
        # and then use its token. A sync flow is driven by one thread from start to end, so this is safe.
        with self._lock:
            if self._needs_refresh():
                yield from self._refresh()
            used = self._access
        self._sign(request, used)
        response = yield request
        if response.status_code != 401:
            return
        with self._lock:
            if (
                self._access is used
            ):  # nobody refreshed since we signed: the token was revoked or expired early
                logger.info("access token rejected with 401; refreshing once and retrying")
                yield from self._refresh()
            fresh = self._access
        self._sign(request, fresh)
        yield request

    def async_auth_flow(self, request: httpx.Request) -> Any:
        raise NotImplementedError("OAuth2RefreshAuth supports the sync httpx.Client only")

    def _needs_refresh(self) -> bool:
        if self._access is None:
            return True
        return self._expires_at is not None and self._clock() >= self._expires_at - self._margin

    def _sign(self, request: httpx.Request, token: SecretStr | None) -> None:
        if token is not None:
            request.headers["Authorization"] = f"{self._scheme} {token.get_secret_value()}"

    def _refresh(self) -> Generator[httpx.Request, httpx.Response, None]:
        response = yield self._build(self._params)
        # This class drives sync_auth_flow itself, which bypasses httpx's reading of ``requires_response_body``:
        # over a real connection the token answer is still a stream until read here.
        response.read()
        token = self._parse(response)
        register_secret(token.access_token.get_secret_value())
        self._access = token.access_token
        self._expires_at = token.expires_at
        self.refreshes += 1
        if token.refresh_token is not None:
            register_secret(token.refresh_token.get_secret_value())
            self._params = TokenRequestParams(
                self._params.token_url,
                self._params.client_id,
                self._params.client_secret,
                token.refresh_token,
                self._params.scope,
            )
            if self._on_rotate is not None:
                self._on_rotate(token.refresh_token)
        if self._on_token is not None:
            self._on_token(token)
        logger.info("refreshed OAuth access token at %s", sanitize_url(self._params.token_url))

    def _parse(self, response: httpx.Response) -> OAuthToken:
        where = f"OAuth token refresh at {sanitize_url(self._params.token_url)}"
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(
                f"{where}: HTTP {response.status_code}",
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )
        body = _json_object(response)
        error = body.get("error")
        # Zoho answers a bad refresh token with 200 + {"error": "invalid_code"}; treat any error body alike.
        if response.status_code >= 400 or error:
            raise ConfigError(f"{where} was rejected: {_oauth_error(response.status_code, body)}")
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise ConfigError(f"{where}: the response has no access_token")
        return OAuthToken(
            access_token=SecretStr(access),
            expires_at=self._clock() + _expires_in(body.get("expires_in"), self._default_expires_in),
            refresh_token=self._rotated(body.get("refresh_token")),
            extra={k: v for k, v in body.items() if k not in _SECRET_FIELDS},
        )

    def _rotated(self, value: object) -> SecretStr | None:
        if isinstance(value, str) and value and value != self._params.refresh_token.get_secret_value():
            return SecretStr(value)
        return None


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _expires_in(value: object, default: float) -> float:
    try:
        return float(value) if value is not None else default  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default


def _oauth_error(status: int, body: Mapping[str, Any]) -> str:
    code = str(body.get("error") or f"HTTP {status}")
    description = str(body.get("error_description") or body.get("message") or "")
    hint = "the refresh token or client credentials are invalid, expired or revoked; re-authorise the app"
    detail = f"{code} ({description})" if description else code
    return redact(f"{detail}: {hint}")
