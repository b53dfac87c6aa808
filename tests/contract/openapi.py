"""Contract checks of HTTP exchanges against a vendor's official OpenAPI file (read from ``HUB_SPECS_DIR``).

The specs are reference data under the vendors' licenses: they are never copied into this repository. Tests
load them from ``HUB_SPECS_DIR`` (default ``../shared/specs`` beside the project) and are skipped, with the
reason, when a file is absent.

Usage::

    api = openapi_spec("hubspot/crm-contacts-v3.json")       # skips the test when the file is absent
    check_request(api, request)                                # what the connector sent
    check_response(api, request, response)                     # what the emulator answered

Both raise ``AssertionError`` naming the operation and every schema violation. The server part of the URL is
ignored: emulators run on localhost with the vendor's paths at the root.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SPECS_ENV = "HUB_SPECS_DIR"


def specs_dir() -> Path:
    """Where the vendors' specs are (``$HUB_SPECS_DIR``, else ``../shared/specs`` next to the project)."""
    return Path(os.environ.get(SPECS_ENV) or ROOT.parent / "shared" / "specs")


def spec_path(relative: str) -> Path:
    """The path of one spec file; skips the calling test when it is absent."""
    path = specs_dir() / relative
    if not path.is_file():
        pytest.skip(f"vendor spec {relative} not found under {specs_dir()} (set {SPECS_ENV}): contract check skipped")
    return path


@cache
def _load(path: str) -> Any:
    from openapi_core import OpenAPI

    spec = json.loads(Path(path).read_text(encoding="utf-8"))
    # Emulators serve the vendor's paths at the root of any host: make the spec's server relative.
    spec["servers"] = [{"url": "/"}]
    return OpenAPI.from_dict(spec)


def openapi_spec(relative: str) -> Any:
    """The parsed spec (cached per file)."""
    return _load(str(spec_path(relative)))


class _Request:
    """An ``httpx.Request`` seen through openapi-core's request protocol."""

    def __init__(self, request: httpx.Request) -> None:
        from openapi_core.datatypes import RequestParameters
        from werkzeug.datastructures import Headers, ImmutableMultiDict

        self._request = request
        query = parse_qsl(request.url.query.decode(), keep_blank_values=True)
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(query),
            header=Headers(list(request.headers.items())),
            cookie=ImmutableMultiDict(),
        )

    @property
    def host_url(self) -> str:
        return f"{self._request.url.scheme}://{self._request.url.netloc.decode()}"

    @property
    def path(self) -> str:
        return self._request.url.path

    @property
    def method(self) -> str:
        return self._request.method.lower()

    @property
    def body(self) -> bytes | None:
        content = self._request.content
        return content or None

    @property
    def content_type(self) -> str:
        return self._request.headers.get("content-type", "").lower()


class _Response:
    def __init__(self, response: httpx.Response) -> None:
        from werkzeug.datastructures import Headers

        self._response = response
        self.headers = Headers(list(response.headers.items()))

    @property
    def data(self) -> bytes:
        return self._response.content

    @property
    def status_code(self) -> int:
        return self._response.status_code

    @property
    def content_type(self) -> str:
        return self._response.headers.get("content-type", "").lower()


def check_request(api: Any, request: httpx.Request) -> None:
    """Assert that ``request`` is valid for its operation in ``api``."""
    try:
        api.validate_request(_Request(request))
    except Exception as exc:  # openapi-core raises several families; all mean "not valid"
        raise AssertionError(f"{request.method} {request.url.path}: {_explain(exc)}") from None


def check_response(api: Any, request: httpx.Request, response: httpx.Response) -> None:
    """Assert that ``response`` is a valid answer to ``request`` in ``api``."""
    response.read()
    try:
        api.validate_response(_Request(request), _Response(response))
    except Exception as exc:
        raise AssertionError(
            f"{request.method} {request.url.path} -> {response.status_code}: {_explain(exc)}"
        ) from None


def _explain(exc: Exception) -> str:
    parts = [f"{type(exc).__name__}: {exc}"]
    cause = exc.__cause__ or exc.__context__
    while cause is not None and len(parts) < 6:
        errors = getattr(cause, "schema_errors", None)
        if errors:
            parts.extend(f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors[:10])
        else:
            parts.append(f"{type(cause).__name__}: {cause}")
        cause = cause.__cause__ or cause.__context__
    return "; ".join(parts)


def recorded(handler: Any) -> tuple[Any, list[tuple[httpx.Request, httpx.Response]]]:
    """Wrap an httpx handler (an emulator or sandbox) to record every exchange, for contract checks."""
    seen: list[tuple[httpx.Request, httpx.Response]] = []

    def wrapper(request: httpx.Request) -> httpx.Response:
        response: httpx.Response = handler(request)
        response.read()
        seen.append((request, response))
        return response

    return wrapper, seen
