"""A working keyring backend for tests: entries in a JSON file named by ``$HUB_TEST_KEYRING_FILE``.

Select it with ``PYTHON_KEYRING_BACKEND=tests.secrets_backend.FileKeyring`` (a subprocess run from the project
root finds it too), or in-process with ``keyring.set_keyring(FileKeyring())``. Every call reads and writes the
file, so a value stored by one process is seen by the next.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.compat import properties
from keyring.errors import PasswordDeleteError

ENV_FILE = "HUB_TEST_KEYRING_FILE"


class FileKeyring(KeyringBackend):
    """Entries as ``{"service": {"name": "value"}}`` in one JSON file (plain text: tests only)."""

    @properties.classproperty
    def priority(cls) -> float:
        # keyring considers every backend class it knows when it picks one: without a file this one is not viable,
        # so importing this module never makes it the default.
        if not os.environ.get(ENV_FILE):
            raise RuntimeError(f"{ENV_FILE} is not set")
        return 1

    @staticmethod
    def path() -> Path:
        """The JSON file, from ``$HUB_TEST_KEYRING_FILE``."""
        name = os.environ.get(ENV_FILE)
        if not name:
            raise RuntimeError(f"{ENV_FILE} is not set")
        return Path(name)

    def _load(self) -> dict[str, dict[str, str]]:
        path = self.path()
        if not path.exists():
            return {}
        data: dict[str, dict[str, str]] = json.loads(path.read_text(encoding="utf-8"))
        return data

    def _save(self, data: dict[str, dict[str, str]]) -> None:
        self.path().write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(service, {}).get(username)

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data.setdefault(service, {})[username] = password
        self._save(data)

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        entries = data.get(service, {})
        if username not in entries:
            raise PasswordDeleteError(f"no entry {username!r} in {service!r}")
        del entries[username]
        self._save(data)
