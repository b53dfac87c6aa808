"""Secret references: ``env:NAME``, ``file:PATH`` and ``keyring:SERVICE/NAME``, resolved at the edge.

The config never holds a secret, only a reference to one. Every value resolved here is registered with
:mod:`hub.redact` before it is returned, so it is masked in logs, errors and JSON output from then on.
Error messages name the variable, file or keyring entry, never a value.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from pydantic import SecretStr

from hub.errors import ConfigError
from hub.redact import register_secret

if TYPE_CHECKING:
    from hub.config.loader import LoadedConfig

DEFAULT_SERVICE = "audience-hub"
# keyring has no way to list entries, so the names stored through `hub secrets set` are kept in this entry.
INDEX_NAME = "__names__"
CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"  # set by systemd for units with LoadCredential=
BACKEND_ENV = "PYTHON_KEYRING_BACKEND"  # keyring's own setting: which backend class to use

NO_KEYRING_MESSAGE = (
    "no OS keyring is available here (usual on a headless server); reference the secret another way: "
    "env:NAME (an environment variable), file:PATH (a file; with systemd LoadCredential= write file:NAME to "
    "read $CREDENTIALS_DIRECTORY/NAME, with Docker secrets write file:/run/secrets/NAME), or install an "
    "encrypted-file keyring backend (pip install keyrings.cryptfile, then "
    "PYTHON_KEYRING_BACKEND=keyrings.cryptfile.cryptfile.CryptFileKeyring)"
)

Scheme = Literal["env", "file", "keyring"]


@dataclass(frozen=True, slots=True)
class SecretRefParts:
    """A parsed secret reference.

    Args:
        scheme: ``env``, ``file`` or ``keyring``.
        target: the variable name, the path, or the keyring entry name.
        service: the keyring service (``keyring:`` only).
    """

    scheme: Scheme
    target: str
    service: str | None = None

    def __str__(self) -> str:
        if self.scheme == "keyring":
            return f"keyring:{self.service}/{self.target}"
        return f"{self.scheme}:{self.target}"


def parse_secret_ref(ref: str) -> SecretRefParts:
    """Split a reference into its parts.

    Raises:
        ConfigError: ``ref`` is not ``env:NAME``, ``file:PATH`` or ``keyring:SERVICE/NAME``.
    """
    from hub.config.models import SECRET_REF_RE

    if not SECRET_REF_RE.match(ref):
        # Never echo it: a malformed reference may be a pasted secret.
        raise ConfigError("not a secret reference (use keyring:SERVICE/NAME, env:NAME or file:PATH)")
    scheme, _, rest = ref.partition(":")
    if scheme == "keyring":
        service, _, name = rest.partition("/")
        return SecretRefParts("keyring", name, service)
    return SecretRefParts("env" if scheme == "env" else "file", rest)


def resolve_secret(ref: str, *, base_dir: Path, environ: Mapping[str, str] | None = None) -> SecretStr:
    """The value a reference points to, registered for redaction.

    Args:
        ref: ``env:NAME``, ``file:PATH`` (relative to ``base_dir``; a bare name is looked up in
            ``$CREDENTIALS_DIRECTORY`` first) or ``keyring:SERVICE/NAME``.
        base_dir: the config file's folder.
        environ: the environment to read (default: ``os.environ``).

    Returns:
        The secret, as a SecretStr.

    Raises:
        ConfigError: the variable, file or keyring entry is missing, empty or unreadable, or no keyring
            backend is available.
    """
    env = os.environ if environ is None else environ
    parts = parse_secret_ref(ref)
    if parts.scheme == "env":
        value = _from_env(parts.target, env)
    elif parts.scheme == "file":
        value = _from_file(parts.target, base_dir, env)
    else:
        value = _from_keyring(parts.service or DEFAULT_SERVICE, parts.target)
    register_secret(value)
    return SecretStr(value)


def _from_env(name: str, env: Mapping[str, str]) -> str:
    value = env.get(name)
    if value is None:
        raise ConfigError(f"environment variable {name} is not set (referenced as env:{name})")
    if not value:
        raise ConfigError(f"environment variable {name} is empty (referenced as env:{name})")
    return value


def _candidates(target: str, base_dir: Path, env: Mapping[str, str]) -> list[Path]:
    path = Path(target).expanduser()
    if path.is_absolute():
        return [path]
    found: list[Path] = []
    creds = env.get(CREDENTIALS_ENV)
    if creds and len(path.parts) == 1:
        # systemd LoadCredential=NAME:... puts the file at $CREDENTIALS_DIRECTORY/NAME.
        found.append(Path(creds) / path)
    found.append(base_dir / path)
    return found


def _from_file(target: str, base_dir: Path, env: Mapping[str, str]) -> str:
    candidates = _candidates(target, base_dir, env)
    path = next((p for p in candidates if p.exists()), candidates[-1])
    try:
        data = path.read_bytes()
    except OSError as exc:
        looked = " or ".join(str(p) for p in candidates)
        raise ConfigError(f"cannot read secret file {looked} (file:{target}): {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"secret file {path} (file:{target}) is not UTF-8 text") from None
    # Editors and `echo` add one newline; a secret never ends with one.
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise ConfigError(f"secret file {path} (file:{target}) is empty")
    return text


def _keyring_failed(exc: Exception, what: str) -> NoReturn:
    from keyring.errors import NoKeyringError

    if isinstance(exc, NoKeyringError):
        raise ConfigError(NO_KEYRING_MESSAGE) from None
    raise ConfigError(f"keyring error while {what}: {type(exc).__name__}: {exc}") from None


def _backend() -> Any:
    """The configured keyring backend; ConfigError when it cannot be loaded (e.g. a bad PYTHON_KEYRING_BACKEND)."""
    import keyring

    try:
        return keyring.get_keyring()
    except Exception as exc:
        named = os.environ.get(BACKEND_ENV)
        what = f"the keyring backend {BACKEND_ENV}={named}" if named else "the keyring backend"
        raise ConfigError(f"cannot load {what}: {type(exc).__name__}: {exc}") from None


def require_keyring(service: str = DEFAULT_SERVICE) -> None:
    """Check that a keyring backend answers, before asking the user for a value to store in it.

    Raises:
        ConfigError: no keyring backend is available (the one-line message names the alternatives), or the
            backend fails.
    """
    from keyring.errors import KeyringError

    backend = _backend()
    try:
        backend.get_password(service, INDEX_NAME)
    except KeyringError as exc:
        _keyring_failed(exc, "opening the keyring")


def _from_keyring(service: str, name: str) -> str:
    from keyring.errors import KeyringError

    backend = _backend()
    try:
        value = backend.get_password(service, name)
    except KeyringError as exc:
        _keyring_failed(exc, f"reading keyring:{service}/{name}")
    if not value:
        hint = f"hub secrets set {name}" if service == DEFAULT_SERVICE else f"keyring set {service} {name}"
        raise ConfigError(f"no secret {name!r} in keyring service {service!r} (store it with `{hint}`)")
    return str(value)


# --------------------------------------------------------------------------- keyring management


def _check_name(name: str) -> None:
    if not name or name == INDEX_NAME or any(c.isspace() for c in name):
        raise ConfigError(f"invalid secret name {name!r} (no spaces; not {INDEX_NAME!r})")


def _read_index(service: str) -> list[str]:
    raw = _backend().get_password(service, INDEX_NAME)
    if not raw:
        return []
    try:
        names = json.loads(raw)
    except ValueError:
        return []  # a damaged index only loses the listing, never a secret
    if not isinstance(names, list):
        return []
    return sorted({n for n in names if isinstance(n, str) and n and not any(c.isspace() for c in n)})


def _write_index(service: str, names: list[str]) -> None:
    _backend().set_password(service, INDEX_NAME, json.dumps(sorted(set(names))))


def set_secret(name: str, value: str, service: str = DEFAULT_SERVICE) -> None:
    """Store a secret in the OS keyring; reference it as ``keyring:SERVICE/NAME``.

    Raises:
        ConfigError: the name is invalid, the value empty, or no keyring backend is available.
    """
    from keyring.errors import KeyringError

    _check_name(name)
    if not value:
        raise ConfigError(f"refusing to store an empty value for {name!r}")
    register_secret(value)
    backend = _backend()
    try:
        backend.set_password(service, name, value)
        _write_index(service, [*_read_index(service), name])
    except KeyringError as exc:
        _keyring_failed(exc, f"storing {name!r}")


def delete_secret(name: str, service: str = DEFAULT_SERVICE) -> None:
    """Delete a secret from the OS keyring.

    Raises:
        ConfigError: there is no such secret, or no keyring backend is available.
    """
    from keyring.errors import KeyringError, PasswordDeleteError

    _check_name(name)
    backend = _backend()
    try:
        try:
            backend.delete_password(service, name)
        except PasswordDeleteError:
            raise ConfigError(f"no secret {name!r} in keyring service {service!r}") from None
        finally:
            # Drop the name from the index even if the entry was already gone.
            _write_index(service, [n for n in _read_index(service) if n != name])
    except KeyringError as exc:
        _keyring_failed(exc, f"deleting {name!r}")


def list_secret_names(
    config: LoadedConfig | None = None, *, service: str = DEFAULT_SERVICE
) -> list[dict[str, str]]:
    """Secret names and whether each resolves; never a value.

    Names come from the keyring index (what ``hub secrets set`` stored) and from the config's references.

    Args:
        config: the loaded config, when there is one.
        service: the keyring service of ``hub secrets set``.

    Returns:
        One row per secret: ``name``, ``ref``, ``status`` (``ok`` or why it does not resolve) and ``used_by``
        (the config fields referencing it, comma-separated; empty when unused).

    Raises:
        ConfigError: there is no config and no keyring backend, so there is nothing to list.
    """
    from keyring.errors import KeyringError

    try:
        stored = _read_index(service)
    except KeyringError as exc:
        if config is None:
            _keyring_failed(exc, "listing secrets")
        stored = []
    except ConfigError:
        if config is None:
            raise
        stored = []  # the config's references are still listed, each with why it does not resolve
    refs: dict[str, list[str]] = {f"keyring:{service}/{n}": [] for n in stored}
    for ref, uses in (config.secret_refs.items() if config is not None else ()):
        refs.setdefault(ref, []).extend(field for _, field in uses)
    base_dir = config.base_dir if config is not None else Path.cwd()
    return [_row(ref, used_by, service, base_dir) for ref, used_by in sorted(refs.items())]


def _row(ref: str, used_by: list[str], service: str, base_dir: Path) -> dict[str, str]:
    parts = parse_secret_ref(ref)
    name = parts.target if parts.scheme == "keyring" and parts.service == service else ref
    try:
        resolve_secret(ref, base_dir=base_dir)
        status = "ok"
    except ConfigError as exc:
        status = "keyring unavailable" if exc.message == NO_KEYRING_MESSAGE else exc.message
    return {"name": name, "ref": ref, "status": status, "used_by": ", ".join(used_by)}
