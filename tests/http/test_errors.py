from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from hub.errors import ConfigError, HubError, TransientError
from hub.http.errors import (
    HttpError,
    NotFoundError,
    error_for_response,
    raise_for_response,
    retry_after_seconds,
)
from hub.redact import clear_secrets, register_secret


@pytest.fixture(autouse=True)
def _forget_secrets() -> None:
    clear_secrets()


def _response(
    status: int, body: str = "", headers: dict[str, str] | None = None, url: str = ""
) -> httpx.Response:
    request = httpx.Request("GET", url or "https://api.example.com/v1/things?apikey=K123456&page=2")
    return httpx.Response(status, text=body, headers=headers, request=request)


@pytest.mark.parametrize(
    ("status", "family"),
    [
        (200, None),
        (204, None),
        (302, None),
        (400, HttpError),
        (401, ConfigError),
        (403, ConfigError),
        (404, NotFoundError),
        (408, TransientError),
        (409, HttpError),
        (422, HttpError),
        (429, TransientError),
        (500, TransientError),
        (501, HttpError),
        (502, TransientError),
        (503, TransientError),
        (504, TransientError),
        (530, TransientError),
    ],
)
def test_status_table(status: int, family: type[HubError] | None) -> None:
    error = error_for_response(_response(status, "oops"))
    if family is None:
        assert error is None
    else:
        assert type(error) is family


def test_http_error_carries_status_and_short_redacted_body() -> None:
    register_secret("sekrit-token-value")
    error = error_for_response(_response(422, "bad field; token sekrit-token-value " + "x" * 1000))
    assert isinstance(error, HttpError)
    assert error.status == 422
    assert "sekrit-token-value" not in str(error)
    assert "sekrit-token-value" not in error.body
    assert len(error.body) < 320
    assert "K123456" not in str(error)  # the apikey query parameter is masked in the URL
    assert "GET https://api.example.com/v1/things" in str(error)


def test_401_message_names_the_problem() -> None:
    error = error_for_response(_response(401, '{"message": "expired"}'))
    assert isinstance(error, ConfigError)
    assert "401" in str(error) and "credentials" in str(error)
    error = error_for_response(_response(403, "missing scope crm.objects.contacts.read"))
    assert "scope" in str(error) and "crm.objects.contacts.read" in str(error)


def test_429_carries_retry_after() -> None:
    error = error_for_response(_response(429, headers={"Retry-After": "7"}))
    assert isinstance(error, TransientError)
    assert error.retry_after == 7.0


def test_allowed_status_is_not_an_error() -> None:
    assert error_for_response(_response(404), allow={404}) is None
    with pytest.raises(NotFoundError):
        raise_for_response(_response(404))


def test_override_maps_a_200_with_error_body() -> None:
    def override(response: httpx.Response) -> HubError | None:
        if response.status_code == 200 and "invalid_token" in response.text:
            return ConfigError("the API key was rejected")
        return None

    assert isinstance(
        error_for_response(_response(200, '{"error": "invalid_token"}'), override=override), ConfigError
    )
    assert error_for_response(_response(200, '{"ok": true}'), override=override) is None
    assert isinstance(error_for_response(_response(500), override=override), TransientError)


def test_retry_after_seconds_and_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("12") == 12.0
    assert retry_after_seconds(" 1.5 ") == 1.5
    assert retry_after_seconds("-3") == 0.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    date = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds(date, now=lambda: now.timestamp()) == pytest.approx(30.0)
    past = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds(past, now=lambda: now.timestamp()) == 0.0
