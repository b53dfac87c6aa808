"""What the CLI modules share: options, exit codes, the error handler (kept apart so sub-command modules need
not import ``hub.cli``)."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file (default: $HUB_CONFIG or ./config.yaml).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]

EXIT_FAILED = 1
EXIT_USAGE = 2

F = TypeVar("F", bound=Callable[..., Any])


def _err(line: str) -> None:
    from hub.redact import redact

    sys.stderr.write(redact(line) + "\n")


def handle_errors(fn: F) -> F:
    """Turn the hub's errors into one clean line per problem and the documented exit codes."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from hub.errors import ConfigError, ConfigErrors, HubError

        try:
            return fn(*args, **kwargs)
        except ConfigErrors as exc:
            for e in exc.errors:
                _err(str(e))
            raise typer.Exit(EXIT_USAGE) from None
        except ConfigError as exc:
            _err(f"error: {exc}")
            raise typer.Exit(EXIT_USAGE) from None
        except HubError as exc:
            _err(f"error: {exc}")
            raise typer.Exit(EXIT_FAILED) from None
        except KeyboardInterrupt:
            _err("interrupted")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:
            if os.environ.get("HUB_DEBUG"):
                import traceback

                # Printed here rather than re-raised, so the traceback is redacted like every other line.
                _err("".join(traceback.format_exception(exc)).rstrip("\n"))
            else:
                _err(f"error: unexpected {type(exc).__name__}: {exc} (set HUB_DEBUG=1 for a traceback)")
            raise typer.Exit(EXIT_FAILED) from None

    return wrapper  # type: ignore[return-value]
