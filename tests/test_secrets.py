"""Secret references, the keyring commands, and redaction of secrets in text and log records."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backends.fail import Keyring as NoKeyring

from hub.config.loader import validate_config_text
from hub.errors import ConfigError
from hub.logsetup import (
    CHATTY_LOGGERS,
    HumanFormatter,
    JsonFormatter,
    RedactingFilter,
    install_record_redaction,
    setup_logging,
)
from hub.redact import (
    MASK,
    clear_secrets,
    redact,
    redact_data,
    register_secret,
    sanitize_headers,
    sanitize_url,
)
from hub.secrets import (
    NO_KEYRING_MESSAGE,
    SecretRefParts,
    delete_secret,
    list_secret_names,
    parse_secret_ref,
    resolve_secret,
    set_secret,
)

from .cli_support import all_output, hub_env, invoke, restored_logging, run_hub
from .config import FAKE_SPECS
from .secrets_backend import ENV_FILE, FileKeyring

SECRET = "s3cr3t-Value-0123456789abcdef"  # distinctive: a match can only be this value


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    clear_secrets()
    yield
    clear_secrets()


@pytest.fixture
def keyring_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working keyring (entries in a JSON file), for this process."""
    previous = keyring.get_keyring()  # before the file is set, so detection never picks the test backend
    path = tmp_path / "keyring.json"
    monkeypatch.setenv(ENV_FILE, str(path))
    keyring.set_keyring(FileKeyring())
    yield path
    keyring.set_keyring(previous)


@pytest.fixture
def no_keyring() -> Iterator[None]:
    """No usable keyring backend, as on a headless server."""
    previous = keyring.get_keyring()
    keyring.set_keyring(NoKeyring())
    yield
    keyring.set_keyring(previous)


# --------------------------------------------------------------------------- references


@pytest.mark.parametrize(
    ("ref", "parts"),
    [
        ("env:HUBSPOT_TOKEN", SecretRefParts("env", "HUBSPOT_TOKEN")),
        ("file:secrets/api.key", SecretRefParts("file", "secrets/api.key")),
        ("file:/run/secrets/token", SecretRefParts("file", "/run/secrets/token")),
        ("keyring:audience-hub/crm", SecretRefParts("keyring", "crm", "audience-hub")),
        ("keyring:other-app/a/b", SecretRefParts("keyring", "a/b", "other-app")),
    ],
)
def test_references_parse_and_print_back(ref: str, parts: SecretRefParts) -> None:
    assert parse_secret_ref(ref) == parts
    assert str(parts) == ref


@pytest.mark.parametrize(
    "ref",
    [SECRET, "keyring:no-name-given", "env:9STARTS_WITH_DIGIT", "env:HAS SPACE", "file:two words", f"Bearer {SECRET}",
     f"env:{SECRET}-with-dash"],
)
def test_a_malformed_reference_is_never_echoed(ref: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_secret_ref(ref)
    assert ref not in str(info.value)
    assert SECRET not in str(info.value)
    assert "keyring:SERVICE/NAME, env:NAME or file:PATH" in str(info.value)


def test_a_secret_pasted_into_the_config_is_rejected_without_echo() -> None:
    text = f"sources:\n  crm:\n    type: hubspot\n    token: {SECRET}\n"
    with pytest.raises(ConfigError) as info:
        validate_config_text(text, filename="hub.yaml", specs=FAKE_SPECS, environ={})
    assert str(info.value) == (
        "hub.yaml:4:12: sources.crm.token: must be a secret reference (keyring:SERVICE/NAME, env:NAME or "
        "file:PATH), not the secret itself"
    )


# --------------------------------------------------------------------------- env:


def test_env_reference_resolves_and_is_registered_for_redaction(tmp_path: Path) -> None:
    value = resolve_secret("env:CRM_TOKEN", base_dir=tmp_path, environ={"CRM_TOKEN": SECRET})
    assert value.get_secret_value() == SECRET
    assert SECRET not in repr(value)
    assert redact(f"sent {SECRET}.") == f"sent {MASK}."


def test_env_errors_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as missing:
        resolve_secret("env:CRM_TOKEN", base_dir=tmp_path, environ={})
    assert missing.value.message == "environment variable CRM_TOKEN is not set (referenced as env:CRM_TOKEN)"
    with pytest.raises(ConfigError) as empty:
        resolve_secret("env:CRM_TOKEN", base_dir=tmp_path, environ={"CRM_TOKEN": ""})
    assert empty.value.message == "environment variable CRM_TOKEN is empty (referenced as env:CRM_TOKEN)"


# --------------------------------------------------------------------------- file:


def test_file_reference_is_relative_to_the_config_and_drops_one_newline(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "crm.key").write_text(SECRET + "\n", encoding="utf-8")
    (tmp_path / "crlf.key").write_bytes(SECRET.encode() + b"\r\n")
    (tmp_path / "two.key").write_text(SECRET + "\n\n", encoding="utf-8")
    assert resolve_secret("file:keys/crm.key", base_dir=tmp_path, environ={}).get_secret_value() == SECRET
    assert resolve_secret("file:crlf.key", base_dir=tmp_path, environ={}).get_secret_value() == SECRET
    assert resolve_secret("file:two.key", base_dir=tmp_path, environ={}).get_secret_value() == SECRET + "\n"
    assert redact(SECRET) == MASK


def test_file_reference_accepts_an_absolute_path(tmp_path: Path) -> None:
    secret_file = tmp_path / "run" / "secrets" / "token"
    secret_file.parent.mkdir(parents=True)
    secret_file.write_text(SECRET, encoding="utf-8")
    elsewhere = tmp_path / "config-dir"
    assert resolve_secret(f"file:{secret_file}", base_dir=elsewhere, environ={}).get_secret_value() == SECRET


def test_a_bare_file_name_is_read_from_the_credentials_directory_first(tmp_path: Path) -> None:
    creds, config_dir = tmp_path / "creds", tmp_path / "etc"
    creds.mkdir()
    config_dir.mkdir()
    (creds / "crm-token").write_text(SECRET, encoding="utf-8")
    (config_dir / "crm-token").write_text("the-copy-beside-the-config", encoding="utf-8")
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    assert resolve_secret("file:crm-token", base_dir=config_dir, environ=env).get_secret_value() == SECRET
    # Not there: the file beside the config is used.
    (config_dir / "other").write_text("beside-the-config", encoding="utf-8")
    assert resolve_secret("file:other", base_dir=config_dir, environ=env).get_secret_value() == "beside-the-config"
    # A path with a folder is never looked up in the credentials directory.
    (creds / "sub").mkdir()
    (creds / "sub" / "key").write_text("from-credentials", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        resolve_secret("file:sub/key", base_dir=config_dir, environ=env)
    assert str(config_dir / "sub" / "key") in info.value.message
    assert str(creds) not in info.value.message


def test_file_errors_name_the_files_never_the_content(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    with pytest.raises(ConfigError) as missing:
        resolve_secret("file:crm-token", base_dir=tmp_path, environ=env)
    assert missing.value.message == (
        f"cannot read secret file {creds / 'crm-token'} or {tmp_path / 'crm-token'} (file:crm-token): "
        "No such file or directory"
    )
    (tmp_path / "empty.key").write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError) as empty:
        resolve_secret("file:empty.key", base_dir=tmp_path, environ={})
    assert empty.value.message == f"secret file {tmp_path / 'empty.key'} (file:empty.key) is empty"
    (tmp_path / "binary.key").write_bytes(b"\xff\xfe" + SECRET.encode())
    with pytest.raises(ConfigError) as binary:
        resolve_secret("file:binary.key", base_dir=tmp_path, environ={})
    assert binary.value.message == f"secret file {tmp_path / 'binary.key'} (file:binary.key) is not UTF-8 text"
    (tmp_path / "a-dir").mkdir()
    with pytest.raises(ConfigError) as directory:
        resolve_secret("file:a-dir", base_dir=tmp_path, environ={})
    assert directory.value.message.startswith(f"cannot read secret file {tmp_path / 'a-dir'} (file:a-dir): ")
    for exc in (missing, empty, binary, directory):
        assert SECRET not in str(exc.value)


# --------------------------------------------------------------------------- keyring:


def test_keyring_set_resolve_list_delete(tmp_path: Path, keyring_file: Path) -> None:
    set_secret("crm-token", SECRET)
    set_secret("shop-token", "another-value-1234")
    ref = "keyring:audience-hub/crm-token"
    assert resolve_secret(ref, base_dir=tmp_path).get_secret_value() == SECRET
    rows = list_secret_names()
    assert rows == [
        {"name": "crm-token", "ref": ref, "status": "ok", "used_by": ""},
        {"name": "shop-token", "ref": "keyring:audience-hub/shop-token", "status": "ok", "used_by": ""},
    ]
    assert SECRET not in json.dumps(rows)
    delete_secret("crm-token")
    assert [r["name"] for r in list_secret_names()] == ["shop-token"]
    with pytest.raises(ConfigError) as gone:
        resolve_secret(ref, base_dir=tmp_path)
    assert gone.value.message == (
        "no secret 'crm-token' in keyring service 'audience-hub' (store it with `hub secrets set crm-token`)"
    )
    with pytest.raises(ConfigError) as again:
        delete_secret("crm-token")
    assert again.value.message == "no secret 'crm-token' in keyring service 'audience-hub'"


def test_keyring_entries_of_another_service_suggest_the_keyring_tool(tmp_path: Path, keyring_file: Path) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_secret("keyring:other-app/token", base_dir=tmp_path)
    assert info.value.message == (
        "no secret 'token' in keyring service 'other-app' (store it with `keyring set other-app token`)"
    )


@pytest.mark.parametrize("name", ["", "has space", "tab\there", "__names__"])
def test_invalid_secret_names_are_refused(name: str, keyring_file: Path) -> None:
    with pytest.raises(ConfigError, match="invalid secret name"):
        set_secret(name, SECRET)
    assert not keyring_file.exists() or SECRET not in keyring_file.read_text(encoding="utf-8")


def test_an_empty_value_is_refused(keyring_file: Path) -> None:
    with pytest.raises(ConfigError, match="refusing to store an empty value for 'crm'"):
        set_secret("crm", "")


def test_without_a_keyring_every_operation_says_so_in_one_line(tmp_path: Path, no_keyring: None) -> None:
    for call in (
        lambda: resolve_secret("keyring:audience-hub/crm", base_dir=tmp_path),
        lambda: set_secret("crm", SECRET),
        lambda: delete_secret("crm"),
        lambda: list_secret_names(),
    ):
        with pytest.raises(ConfigError) as info:
            call()
        assert info.value.message == NO_KEYRING_MESSAGE
    assert "\n" not in NO_KEYRING_MESSAGE
    for alternative in ("env:NAME", "file:PATH", "$CREDENTIALS_DIRECTORY", "keyrings.cryptfile"):
        assert alternative in NO_KEYRING_MESSAGE


def test_without_a_keyring_the_config_references_are_still_listed(tmp_path: Path, no_keyring: None) -> None:
    (tmp_path / "mail.key").write_text(SECRET, encoding="utf-8")
    text = """\
sources:
  crm: {type: hubspot, token: keyring:audience-hub/crm}
  shop: {type: shopify, shop: x, token: env:SHOP_TOKEN_NOT_SET}
destinations:
  news: {type: mailchimp, api_key: file:mail.key}
"""
    loaded = validate_config_text(text, filename="hub.yaml", base_dir=tmp_path, specs=FAKE_SPECS, environ={})
    rows = {r["ref"]: r for r in list_secret_names(loaded)}
    assert rows == {
        "keyring:audience-hub/crm": {
            "name": "crm", "ref": "keyring:audience-hub/crm", "status": "keyring unavailable",
            "used_by": "sources.crm.token",
        },
        "env:SHOP_TOKEN_NOT_SET": {
            "name": "env:SHOP_TOKEN_NOT_SET", "ref": "env:SHOP_TOKEN_NOT_SET",
            "status": "environment variable SHOP_TOKEN_NOT_SET is not set (referenced as env:SHOP_TOKEN_NOT_SET)",
            "used_by": "sources.shop.token",
        },
        "file:mail.key": {
            "name": "file:mail.key", "ref": "file:mail.key", "status": "ok", "used_by": "destinations.news.api_key",
        },
    }


# --------------------------------------------------------------------------- checking a config's secrets


def test_check_secrets_covers_destinations_and_skips_disabled_entries(tmp_path: Path) -> None:
    text = """\
sources:
  old:
    type: hubspot
    enabled: false
    token: env:SHARED_TOKEN
  crm:
    type: hubspot
    token: env:SHARED_TOKEN
  paused:
    type: hubspot
    enabled: false
    token: env:ONLY_FOR_PAUSED
destinations:
  news: {type: mailchimp, api_key: file:missing.key}
"""
    loaded = validate_config_text(text, filename="hub.yaml", base_dir=tmp_path, specs=FAKE_SPECS, environ={})
    errors = [str(e) for e in loaded.check_secrets()]
    assert errors == [
        # Pointed at the enabled entry's use, not the disabled one written first.
        "hub.yaml:8:12: sources.crm.token: environment variable SHARED_TOKEN is not set "
        "(referenced as env:SHARED_TOKEN)",
        f"hub.yaml:14:36: destinations.news.api_key: cannot read secret file {tmp_path / 'missing.key'} "
        "(file:missing.key): No such file or directory",
    ]
    with_disabled = [e.field for e in loaded.check_secrets(include_disabled=True)]
    assert with_disabled == ["sources.old.token", "sources.paused.token", "destinations.news.api_key"]


# --------------------------------------------------------------------------- redaction of text


def test_registered_secrets_are_masked_longest_first() -> None:
    register_secret("abcd1234")
    register_secret("abcd1234efgh5678")
    assert redact("x abcd1234efgh5678 y abcd1234 z") == f"x {MASK} y {MASK} z"


def test_short_values_are_not_registered() -> None:
    register_secret("abc")
    register_secret("")
    register_secret(None)
    assert redact("abc is not a secret") == "abc is not a secret"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer eyJhbGci.x.y", f"Authorization: Bearer {MASK}"),
        ("authorization=Basic dXNlcjpwYXNz", f"authorization=Basic {MASK}"),
        ("{'X-Api-Key': 'k-123456'}", f"{{'X-Api-Key': '{MASK}'}}"),
        ('{"Authorization": "Zoho-oauthtoken 1000.abc"}', f'{{"Authorization": "Zoho-oauthtoken {MASK}"}}'),
        ("x-shopify-access-token: shpat_0123 sent", f"x-shopify-access-token: {MASK} sent"),
        ("Proxy-Authorization: Basic abc)", f"Proxy-Authorization: Basic {MASK})"),
        ("GET https://api.test/v1?hapikey=abc&limit=10", f"GET https://api.test/v1?hapikey={MASK}&limit=10"),
        ("POST /oauth?client_secret=s&refresh_token=r", f"POST /oauth?client_secret={MASK}&refresh_token={MASK}"),
        ("GET https://x.test/v1?api_key=abc: HTTP 404", f"GET https://x.test/v1?api_key={MASK}: HTTP 404"),
        ("(see https://x.test/?access_token=abc.)", f"(see https://x.test/?access_token={MASK}.)"),
        ("https://x.test/?KEY=a.b.c#frag", f"https://x.test/?KEY={MASK}#frag"),
        ("https://x.test/?keyword=shoes&page=2", "https://x.test/?keyword=shoes&page=2"),
    ],
)
def test_auth_headers_and_key_parameters_are_masked(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(redact(text)) == expected  # masking twice changes nothing more


def test_redact_data_keeps_json_valid() -> None:
    register_secret(SECRET)
    data = {"error": 'vendor said {"request": "https://x.test/v1?api_key=abc"}', f"key-{SECRET}": [SECRET, 1, None]}
    out = json.loads(json.dumps(redact_data(data)))
    assert out == {
        "error": f'vendor said {{"request": "https://x.test/v1?api_key={MASK}"}}',
        f"key-{MASK}": [MASK, 1, None],
    }


def test_sanitize_url_and_headers() -> None:
    register_secret(SECRET)
    assert sanitize_url(f"https://user:{SECRET}@api.test/v1/x?api_key=k1&limit=5") == (
        f"https://{MASK}@api.test/v1/x?api_key={MASK}&limit=5"
    )
    assert sanitize_headers({"Authorization": "Bearer t", "X-Note": f"token {SECRET}", "Accept": "a/b"}) == {
        "Authorization": MASK, "X-Note": f"token {MASK}", "Accept": "a/b",
    }


# --------------------------------------------------------------------------- redaction of log records


def _record_with_everything(logger: logging.Logger) -> None:
    try:
        raise RuntimeError(f"rejected {SECRET}")
    except RuntimeError:
        logger.error("token %s header %s", SECRET, "Authorization: Bearer raw-bearer-value", exc_info=True,
                     stack_info=True)


def test_the_handler_filter_masks_message_args_traceback_and_stack() -> None:
    register_secret(SECRET)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))  # a plain formatter: only the filter masks
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test.redaction.filter")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        with restored_logging():
            logging.setLogRecordFactory(logging.LogRecord)
            _record_with_everything(logger)
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert SECRET not in out and "raw-bearer-value" not in out
    assert f"token {MASK} header Authorization: Bearer {MASK}" in out
    assert f"RuntimeError: rejected {MASK}" in out
    assert "Stack (most recent call last)" in out


def test_once_installed_every_handler_receives_masked_records(caplog: pytest.LogCaptureFixture) -> None:
    # A handler the hub did not install (journald, a log shipper, this capture) sees masked records too.
    register_secret(SECRET)
    caplog.set_level(logging.DEBUG, logger="test.redaction.factory")
    with restored_logging():
        install_record_redaction()
        install_record_redaction()  # idempotent: one wrapper
        _record_with_everything(logging.getLogger("test.redaction.factory"))
    assert caplog.records
    assert SECRET not in caplog.text and "raw-bearer-value" not in caplog.text
    assert f"RuntimeError: rejected {MASK}" in caplog.text
    record = caplog.records[-1]
    assert record.getMessage() == f"token {MASK} header Authorization: Bearer {MASK}"


def test_formatters_mask_records_that_bypassed_the_filter() -> None:
    register_secret(SECRET)
    record = logging.makeLogRecord({"name": "hub.x", "levelno": logging.INFO, "levelname": "INFO",
                                    "msg": "token %s", "args": (SECRET,)})
    assert HumanFormatter().format(record).endswith(f"INFO    hub.x: token {MASK}")
    extra = logging.makeLogRecord({"name": "hub.x", "levelno": logging.INFO, "levelname": "INFO",
                                   "msg": "done", "url": f"https://x.test/?token={SECRET}", "headers": {"a": SECRET}})
    line = json.loads(JsonFormatter().format(extra))
    assert line["msg"] == "done" and line["logger"] == "hub.x" and line["level"] == "INFO"
    assert line["url"] == f"https://x.test/?token={MASK}"
    assert line["headers"] == {"a": MASK}


def test_json_log_lines_stay_valid_json_where_masking_meets_escaped_quotes() -> None:
    register_secret(SECRET)
    message = 'vendor said {"request": "https://x.test/v1?api_key=%s"}'
    record = logging.makeLogRecord({"name": "hub.x", "levelno": logging.WARNING, "levelname": "WARNING",
                                    "msg": message, "args": (SECRET,)})
    RedactingFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == f'vendor said {{"request": "https://x.test/v1?api_key={MASK}"}}'


def test_a_log_call_with_bad_arguments_neither_raises_nor_leaks(capsys: pytest.CaptureFixture[str]) -> None:
    register_secret(SECRET)
    stream = io.StringIO()
    with restored_logging():
        setup_logging("INFO", "human", stream=stream)
        logging.getLogger("hub.test").info("%d items for %s", SECRET)  # wrong argument count and type
    assert SECRET not in stream.getvalue()
    assert f"log arguments not matching the format: ('{MASK}',)" in stream.getvalue()
    assert "Logging error" not in capsys.readouterr().err


def test_setup_logging_is_idempotent_and_validates_its_settings() -> None:
    with restored_logging():
        first = setup_logging("info", "json", stream=io.StringIO())
        second = setup_logging("DEBUG", "human", stream=io.StringIO())
        root = logging.getLogger()
        assert first not in root.handlers and second in root.handlers
        assert root.level == logging.DEBUG
        assert all(logging.getLogger(n).level == logging.NOTSET for n in CHATTY_LOGGERS)
        setup_logging("WARNING", "human", stream=io.StringIO())
        assert all(logging.getLogger(n).level == logging.WARNING for n in CHATTY_LOGGERS)
    with pytest.raises(ConfigError, match="invalid log level 'LOUD'"):
        setup_logging("LOUD")
    with pytest.raises(ConfigError, match="invalid log format 'xml'"):
        setup_logging("INFO", "xml")


# --------------------------------------------------------------------------- `hub secrets`, in-process


def test_hub_secrets_set_list_delete(tmp_path: Path, keyring_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no config.yaml here: only the keyring is listed
    monkeypatch.delenv("HUB_CONFIG", raising=False)
    stored = invoke(["secrets", "set", "crm-token"], input=f"{SECRET}\n{SECRET}\n")
    assert stored.exit_code == 0, all_output(stored)
    assert "stored crm-token; reference it as keyring:audience-hub/crm-token" in stored.stdout
    assert SECRET not in all_output(stored)  # the prompt does not echo
    assert json.loads(keyring_file.read_text(encoding="utf-8"))["audience-hub"]["crm-token"] == SECRET

    listed = invoke(["secrets", "list"])
    assert listed.exit_code == 0 and listed.stdout == "crm-token\tok\n"
    as_json = invoke(["secrets", "list", "--json"])
    assert json.loads(as_json.stdout) == [
        {"name": "crm-token", "ref": "keyring:audience-hub/crm-token", "status": "ok", "used_by": ""}
    ]

    deleted = invoke(["secrets", "delete", "crm-token"])
    assert deleted.exit_code == 0 and deleted.stdout == "deleted crm-token\n"
    assert json.loads(invoke(["secrets", "list", "--json"]).stdout) == []
    again = invoke(["secrets", "delete", "crm-token"])
    assert again.exit_code == 2
    assert again.stderr == "error: no secret 'crm-token' in keyring service 'audience-hub'\n"
    for result in (listed, as_json, deleted, again):
        assert SECRET not in all_output(result)


def test_hub_secrets_set_refuses_mismatched_confirmation(keyring_file: Path) -> None:
    result = invoke(["secrets", "set", "crm-token"], input=f"{SECRET}\nsomething-else\n")
    assert result.exit_code != 0
    assert not keyring_file.exists() or SECRET not in keyring_file.read_text(encoding="utf-8")
    assert SECRET not in all_output(result)


@pytest.mark.parametrize(
    "args", [["secrets", "set", "crm-token"], ["secrets", "list"], ["secrets", "delete", "crm-token"]]
)
def test_hub_secrets_without_a_keyring_is_one_line_and_exit_2(
    args: list[str], tmp_path: Path, no_keyring: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HUB_CONFIG", raising=False)
    result = invoke(args, input=f"{SECRET}\n{SECRET}\n")
    assert result.exit_code == 2
    assert result.stderr == f"error: {NO_KEYRING_MESSAGE}\n"
    assert result.stdout == ""  # nothing was asked: the value is never typed for nothing
    assert "Traceback" not in all_output(result)


def test_hub_secrets_list_shows_config_references_and_their_state(
    tmp_path: Path, keyring_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hub.registry

    monkeypatch.setattr(hub.registry, "connectors", lambda: FAKE_SPECS)
    monkeypatch.setenv("SHOP_TOKEN", SECRET)
    monkeypatch.delenv("MISSING_TOKEN", raising=False)
    set_secret("crm", "stored-crm-token-value")
    set_secret("unused", "stored-unused-value")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "sources:\n"
        "  crm: {type: hubspot, token: keyring:audience-hub/crm}\n"
        "  shop: {type: shopify, shop: x, token: env:SHOP_TOKEN, fallback_tokens: [env:MISSING_TOKEN]}\n",
        encoding="utf-8",
    )
    result = invoke(["secrets", "list", "--config", str(cfg)])
    assert result.exit_code == 0, all_output(result)
    assert result.stdout.splitlines() == [
        "env:MISSING_TOKEN\tenvironment variable MISSING_TOKEN is not set (referenced as env:MISSING_TOKEN)"
        "\t(used by sources.shop.fallback_tokens[0])",
        "env:SHOP_TOKEN\tok\t(used by sources.shop.token)",
        "crm\tok\t(used by sources.crm.token)",
        "unused\tok",
    ]
    for value in (SECRET, "stored-crm-token-value", "stored-unused-value"):
        assert value not in all_output(result)


def test_hub_secrets_list_with_a_missing_explicit_config_is_an_error(tmp_path: Path, keyring_file: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = invoke(["secrets", "list", "--config", str(missing)])
    assert result.exit_code == 2
    assert result.stderr == f"{missing}: config file not found (create one with `hub init {missing}`)\n"


# --------------------------------------------------------------------------- `hub secrets`, as a real process


def test_hub_secrets_in_a_process_without_a_keyring_backend(tmp_path: Path) -> None:
    env = hub_env(PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    for args in (["secrets", "set", "crm"], ["secrets", "list"], ["secrets", "list", "--json"],
                 ["secrets", "delete", "crm"]):
        done = run_hub(args, cwd=tmp_path, env=env, input=f"{SECRET}\n{SECRET}\n")
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr == f"error: {NO_KEYRING_MESSAGE}\n", args
        assert done.stdout == ""
        assert "Traceback" not in done.stderr


def test_hub_secrets_in_processes_sharing_a_working_keyring(tmp_path: Path) -> None:
    store = tmp_path / "keyring.json"
    env = hub_env(PYTHON_KEYRING_BACKEND="tests.secrets_backend.FileKeyring", **{ENV_FILE: str(store)})
    stored = run_hub(["secrets", "set", "crm-token"], cwd=tmp_path, env=env, input=f"{SECRET}\n{SECRET}\n")
    assert stored.returncode == 0, stored.stderr
    assert "stored crm-token; reference it as keyring:audience-hub/crm-token" in stored.stdout
    listed = run_hub(["secrets", "list", "--json"], cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == [
        {"name": "crm-token", "ref": "keyring:audience-hub/crm-token", "status": "ok", "used_by": ""}
    ]
    deleted = run_hub(["secrets", "delete", "crm-token"], cwd=tmp_path, env=env)
    assert deleted.returncode == 0, deleted.stderr
    assert SECRET not in store.read_text(encoding="utf-8")
    for done in (stored, listed, deleted):
        assert SECRET not in done.stdout + done.stderr
        assert "Traceback" not in done.stderr


def test_a_keyring_backend_that_cannot_be_loaded_is_a_config_error(tmp_path: Path) -> None:
    env = hub_env(PYTHON_KEYRING_BACKEND="no_such_module.Keyring")
    done = run_hub(["secrets", "list"], cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert done.stderr == (
        "error: cannot load the keyring backend PYTHON_KEYRING_BACKEND=no_such_module.Keyring: "
        "ModuleNotFoundError: No module named 'no_such_module'\n"
    )
