"""Running ``hub`` in tests: in-process through typer's CliRunner, or as a real subprocess.

The CLI configures process-wide logging (a root handler on the runner's captured stderr, the record factory,
library logger levels); :func:`invoke` puts all of that back afterwards, so one test's CLI run never writes into
another test's closed streams.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from hub.logsetup import CHATTY_LOGGERS

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def restored_logging() -> Iterator[None]:
    """Undo whatever logging setup happens inside the block."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    level = root.level
    factory = logging.getLogRecordFactory()
    levels = {name: logging.getLogger(name).level for name in CHATTY_LOGGERS}
    try:
        yield
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        root.setLevel(level)
        logging.setLogRecordFactory(factory)
        for name, old in levels.items():
            logging.getLogger(name).setLevel(old)


def invoke(args: Sequence[str], *, input: str | None = None, env: Mapping[str, str] | None = None) -> Result:
    """Run ``hub ARGS`` in-process; stdout and stderr are kept apart (``result.stdout``, ``result.stderr``)."""
    from hub.cli import app

    with restored_logging():
        return CliRunner().invoke(app, list(args), input=input, env=dict(env or {}), catch_exceptions=True)


@dataclass(frozen=True)
class Completed:
    """A finished ``hub`` subprocess."""

    returncode: int
    stdout: str
    stderr: str


def hub_env(**extra: str) -> dict[str, str]:
    """The environment of a ``hub`` subprocess: this one, with the project importable and ``extra`` on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "PYTHON_KEYRING"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def run_hub(
    args: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None, input: str | None = None,
    python_args: Sequence[str] = (),
) -> Completed:
    """Run ``python -m hub.cli ARGS`` (what the ``hub`` script runs) in a subprocess."""
    proc = subprocess.run(
        [sys.executable, *python_args, "-m", "hub.cli", *args],
        cwd=cwd, env=dict(env) if env is not None else hub_env(), input=input, capture_output=True, text=True,
        timeout=120, check=False,
    )
    return Completed(proc.returncode, proc.stdout, proc.stderr)


def all_output(result: Any) -> str:
    """stdout and stderr of a CliRunner result or a subprocess, together."""
    return f"{result.stdout}\n{result.stderr}"
