"""API key (data center from the key's suffix, HTTP Basic) and OAuth (data center from the metadata endpoint);
every way Mailchimp says "bad credentials", including its 200-with-error, is a ConfigError without the secret."""

from __future__ import annotations

import base64

import pytest
from pydantic import SecretStr

from connectors.mailchimp.client import data_center
from connectors.mailchimp.emulator import SANDBOX_API_KEY, SANDBOX_OAUTH_TOKEN
from hub.errors import ConfigError

from .support import SECRETS, WRONG_KEY, Rig


def test_the_data_center_is_the_keys_suffix() -> None:
    assert data_center(SecretStr("0123abcd-us21")) == "us21"
    assert data_center(SecretStr(" 0123abcd-eu1 ")) == "eu1"
    with pytest.raises(ConfigError) as caught:
        data_center(SecretStr("0123abcd0123abcd"))
    assert "0123abcd0123abcd" not in str(caught.value)


def test_an_api_key_goes_to_its_data_center_with_basic_auth(rig: Rig) -> None:
    rig.source().check()
    request = rig.exchanges[0][0]
    assert request.url.host == "us21.api.mailchimp.com" and request.url.path == "/3.0/ping"
    scheme, _, value = request.headers["Authorization"].partition(" ")
    assert scheme == "Basic" and base64.b64decode(value).decode().endswith(f":{SANDBOX_API_KEY}")


def test_an_oauth_token_finds_its_data_center_first(rig: Rig) -> None:
    source = rig.source(api_key=None, access_token="env:MC_TOKEN")
    source.check()
    meta, ping = rig.exchanges[0][0], rig.exchanges[1][0]
    assert (meta.url.host, meta.url.path) == ("login.mailchimp.com", "/oauth2/metadata")
    assert meta.headers["Authorization"] == f"OAuth {SANDBOX_OAUTH_TOKEN}"
    assert ping.url.host == "us21.api.mailchimp.com"
    assert ping.headers["Authorization"] == f"Bearer {SANDBOX_OAUTH_TOKEN}"


def test_the_metadata_endpoints_200_with_an_error_is_a_config_error(rig: Rig) -> None:
    source = rig.source(api_key=None, access_token="env:MC_BAD_TOKEN")
    with pytest.raises(ConfigError, match="rejected the OAuth access token") as caught:
        source.check()
    assert rig.exchanges[0][1].status_code == 200
    assert SECRETS["env:MC_BAD_TOKEN"] not in str(caught.value)


@pytest.mark.parametrize("entry", [{"api_key": "env:MC_WRONG"}, {"api_key": None, "access_token": "env:MC_TOKEN"}])
def test_a_rejected_credential_is_a_config_error_without_the_secret(rig: Rig, entry: dict[str, str | None]) -> None:
    if "access_token" in entry:
        rig.sandbox.inject({"kind": "token_expiry"})  # the owner revoked the app
    with pytest.raises(ConfigError) as caught:
        rig.source(**entry).check()
    assert WRONG_KEY not in str(caught.value) and SANDBOX_OAUTH_TOKEN not in str(caught.value)


def test_a_key_without_data_center_fails_when_the_entry_is_built(rig: Rig) -> None:
    with pytest.raises(ConfigError, match="data-center suffix"):
        rig.source(api_key="env:MC_NO_DC")
    assert rig.exchanges == []


def test_an_unknown_audience_is_a_config_error(rig: Rig) -> None:
    with pytest.raises(ConfigError, match="no Mailchimp audience 'abc0000000'"):
        rig.source(list_ids=["abc0000000"]).check()
    rig.source(list_ids=[rig.list_id]).check()
    rig.sink().check()


def test_the_config_wants_exactly_one_credential() -> None:
    from connectors.mailchimp.config import MailchimpSourceConfig

    with pytest.raises(ValueError, match="exactly one"):
        MailchimpSourceConfig.model_validate({"type": "mailchimp", "api_key": "env:A", "access_token": "env:B"})
    with pytest.raises(ValueError, match="exactly one"):
        MailchimpSourceConfig.model_validate({"type": "mailchimp"})
    with pytest.raises(ValueError):
        MailchimpSourceConfig.model_validate({"type": "mailchimp", "api_key": "env:A", "connections": 11})
