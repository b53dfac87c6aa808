"""``hub export``: segment members, people and scores as CSV, JSON Lines or Parquet (see :mod:`hub.export`).

This module is imported by :mod:`hub.cli` to register ``export_app``, so it imports nothing heavy and nothing
from :mod:`hub.cli` at import time (that would be a cycle, and under ``python -m hub.cli`` a second copy of the
CLI): options and the error handler come from :mod:`hub.cli_options`, the store helpers from :mod:`hub.cli` when a
command runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from hub.cli_options import ConfigOpt, handle_errors

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as for any command whose reader stopped reading

export_app = typer.Typer(
    help="Export segment members, people and scores (CSV, JSON Lines, Parquet), streamed.", no_args_is_help=True
)

CsvOpt = Annotated[bool, typer.Option("--csv", help="CSV with a header line (the default).")]
JsonLinesOpt = Annotated[bool, typer.Option("--json", help="JSON Lines: one JSON object per line.")]
OutOpt = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Write to this file, replaced atomically when done (default: stdout).",
                 show_default=False),
]


def _one_format(**chosen: bool) -> str:
    """The one format flag given (the first name when none is), or a usage error naming the clash."""
    from hub.errors import ConfigError

    picked = [name for name, on in chosen.items() if on]
    if len(picked) > 1:
        raise ConfigError("choose one of " + ", ".join(f"--{n}" for n in picked))
    return picked[0] if picked else next(iter(chosen))


@contextmanager
def _output(out: Path | None, *, binary: bool = False) -> Iterator[IO[Any]]:
    """The file of ``--out`` (atomic), or stdout."""
    from hub.export import atomic_output

    if out is None:
        stream: IO[Any] = sys.stdout.buffer if binary else sys.stdout
        try:
            yield stream
            stream.flush()
        except BrokenPipeError:
            # The reader went away (`hub export people | head`): stop quietly, with the exit status a process
            # killed by SIGPIPE has; stdout then points at /dev/null so the interpreter's last flush cannot fail.
            with suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(EXIT_BROKEN_PIPE) from None
        return
    with atomic_output(out, binary=binary) as fh:
        yield fh


def _done(count: int, what: str, out: Path | None) -> None:
    # Only with --out: on stdout the export is the whole output.
    if out is not None:
        sys.stdout.write(f"wrote {count:,} {what} to {out}\n")


@export_app.command("segment")
@handle_errors
def export_segment(
    name: Annotated[str, typer.Argument(help="The segment (as in `hub status`).")],
    config: ConfigOpt = None,
    as_csv: CsvOpt = False,
    as_json: JsonLinesOpt = False,
    out: OutOpt = None,
) -> None:
    """The members of a segment: contact fields, sources, entry time, held-out flag, key features and scores."""
    from hub.cli import _load, _store
    from hub.export import export_segment as run
    from hub.export import require_segment

    fmt = _one_format(csv=as_csv, json=as_json)
    loaded = _load(config)
    with _store(loaded) as store:
        require_segment(store, name)  # before --out is opened: a typo never replaces an earlier export
        with _output(out) as stream:
            count = run(store, name, stream, "json" if fmt == "json" else "csv")
    _done(count, f"members of {name}", out)


@export_app.command("people")
@handle_errors
def export_people(
    config: ConfigOpt = None,
    as_csv: CsvOpt = False,
    as_json: JsonLinesOpt = False,
    out: OutOpt = None,
) -> None:
    """Every person: contact fields, sources, key features and scores, and the segments they are in."""
    from hub.cli import _load, _store
    from hub.export import export_people as run

    fmt = _one_format(csv=as_csv, json=as_json)
    loaded = _load(config)
    with _store(loaded) as store, _output(out) as stream:
        count = run(store, stream, "json" if fmt == "json" else "csv")
    _done(count, "people", out)


@export_app.command("scores")
@handle_errors
def export_scores(
    config: ConfigOpt = None,
    as_csv: CsvOpt = False,
    as_parquet: Annotated[
        bool, typer.Option("--parquet", help="Parquet (needs the parquet extra: pip install 'audience-hub[parquet]').")
    ] = False,
    out: OutOpt = None,
) -> None:
    """Per-customer scores (every person_score column) with the stored features behind them, for analysis."""
    from hub.cli import _load, _store
    from hub.errors import ConfigError
    from hub.export import export_scores as run
    from hub.export import require_pyarrow

    parquet = _one_format(csv=as_csv, parquet=as_parquet) == "parquet"
    if parquet:
        require_pyarrow()  # before anything else: the one line says how to install it
        if out is None and sys.stdout.isatty():
            raise ConfigError("Parquet is binary: pass --out FILE or redirect stdout", field="--parquet")
    loaded = _load(config)
    with _store(loaded) as store, _output(out, binary=parquet) as stream:
        count = run(store, stream, "parquet" if parquet else "csv")
    _done(count, "scored people", out)
