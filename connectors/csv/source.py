"""The CSV source: one stream per file entry, read incrementally by file content hash.

Stream state::

    {"files": {"exports/orders-01.csv": {"sha256": "...", "done": true}, ...},
     "current": {"path": "exports/orders-02.csv", "sha256": "...", "row": 15000}}

``files`` lists the files read to the end, by content hash: an unchanged file is skipped. ``current`` is the
file being read and the number of data rows already committed, so a crash resumes at the next row; if that
file changed meanwhile, it is read again from the top (the store upserts by id, so nothing doubles).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from hub.contracts import Page, Record
from hub.errors import ConfigError, ConfigErrors

from .config import CsvSourceConfig, stream_name
from .parse import BadValue, ContactMapper, CsvFile, RowMapper, bind_header, make_mapper

logger = logging.getLogger(__name__)

# Bad-row messages kept per file for the run report; the rest are only counted (and logged at debug level).
MAX_ERRORS_PER_FILE = 100
_GLOB_CHARS = frozenset("*?[")


class _Progress:
    """The stream state while reading: files done (by hash) and the position in the current file."""

    def __init__(self, state: Mapping[str, Any] | None, keys: set[str]) -> None:
        state = state if isinstance(state, Mapping) else {}
        files = state.get("files")
        # Files no longer matched are forgotten, so the state does not grow with every daily export.
        self.files: dict[str, dict[str, Any]] = (
            {k: dict(v) for k, v in files.items() if k in keys and isinstance(v, Mapping)}
            if isinstance(files, Mapping)
            else {}
        )
        current = state.get("current")
        self.current: Mapping[str, Any] | None = current if isinstance(current, Mapping) else None

    def start_row(self, key: str, digest: str) -> int | None:
        """Data rows of ``key`` already committed; None when it is unchanged and was read to the end."""
        cur = self.current
        if cur is not None and cur.get("path") == key and cur.get("sha256") == digest:
            return int(cur.get("row", 0))
        done = self.files.get(key)
        if done is not None and done.get("sha256") == digest and done.get("done"):
            return None
        return 0

    def at(self, key: str, digest: str, row: int) -> dict[str, Any]:
        """The state after ``row`` data rows of ``key``."""
        self.current = {"path": key, "sha256": digest, "row": row}
        return self.snapshot()

    def finished(self, key: str, digest: str) -> dict[str, Any]:
        """The state once ``key`` has been read to the end."""
        self.files[key] = {"sha256": digest, "done": True}
        self.current = None
        return self.snapshot()

    def snapshot(self) -> dict[str, Any]:
        # A fresh dict per page: the store may hold on to it until the page commits.
        return {
            "files": {k: dict(v) for k, v in self.files.items()},
            "current": dict(self.current) if self.current is not None else None,
        }


class CsvStream:
    """The files of one entry (a path or a glob), read in name order.

    Args:
        entry: the validated file entry.
        base_dir: the config file's folder; relative paths are relative to it.
        page_size: data rows per page.
        field_prefix: the entry's config path, used in error messages (``sources.shop.files.0``).
    """

    def __init__(self, entry: CsvFile, *, base_dir: Path, page_size: int, field_prefix: str) -> None:
        self.name = stream_name(entry)
        self.entry = entry
        self.base_dir = Path(base_dir)
        self.page_size = page_size
        self.field_prefix = field_prefix

    def paths(self) -> list[Path]:
        """The files the entry matches, sorted by name.

        Raises:
            ConfigError: the file is missing, or the glob matches nothing (unless ``allow_empty``).
        """
        pattern = os.path.expanduser(self.entry.path)
        full = Path(pattern) if os.path.isabs(pattern) else self.base_dir / pattern
        if not _GLOB_CHARS.intersection(pattern):
            if not full.is_file():
                raise ConfigError(f"file not found: {full}", field=f"{self.field_prefix}.path")
            return [full]
        found = (
            sorted(p for p in full.parent.glob(full.name) if p.is_file())
            if "**" not in pattern
            else sorted(p for p in self.base_dir.glob(pattern) if p.is_file())
        )
        if not found and not self.entry.allow_empty:
            raise ConfigError(
                f"no file matches {str(full)!r} (set allow_empty: true if that is normal)",
                field=f"{self.field_prefix}.path",
            )
        return found

    def check(self) -> None:
        """Check that the files exist and their headers fit the column mapping (ConfigError otherwise)."""
        for path in self.paths():
            key = self._key(path)
            with self._open(path) as f:
                reader = self._reader(f)
                with self._file_errors(path, key, reader):
                    header = next(reader, None)
            if header is not None:
                bind_header(self.entry, header, where=key, field_prefix=self.field_prefix)

    def read(self, state: Mapping[str, Any] | None, *, full: bool = False) -> Iterator[Page]:
        """Yield pages of records from every new or changed file, resuming after ``state``.

        Args:
            state: the state of the last committed page, or None.
            full: ignore ``state`` and read every file again.
        """
        paths = self.paths()
        keys = {self._key(p): p for p in paths}
        progress = _Progress(None if full else state, set(keys))
        for key, path in keys.items():
            digest = _sha256(path)
            start = progress.start_row(key, digest)
            if start is None:
                logger.debug("%s: unchanged since it was last read; skipped", key)
                continue
            if start:
                logger.info("%s: resuming after data row %d", key, start)
            yield from self._read_file(path, key, digest, start, progress)

    def _read_file(
        self, path: Path, key: str, digest: str, start: int, progress: _Progress
    ) -> Iterator[Page]:
        with self._open(path) as f:
            reader = self._reader(f)
            with self._file_errors(path, key, reader):
                header = next(reader, None)
                if header is None:  # an empty file: nothing to load, but remember it was read
                    yield Page([], progress.finished(key, digest))
                    return
                layout = bind_header(self.entry, header, where=key, field_prefix=self.field_prefix)
                mapper = make_mapper(self.entry, layout)
                report = _BadRows(key)
                yield from self._pages(reader, mapper, len(header), key, digest, start, progress, report)
        report.log_summary()
        if isinstance(mapper, ContactMapper) and mapper.unmapped_consent:
            values = ", ".join(f"{v!r} ({n} rows)" for v, n in mapper.unmapped_consent.most_common(10))
            logger.warning("%s: consent values not in consent_values, loaded as unknown: %s", key, values)

    def _pages(
        self,
        reader: Any,
        mapper: RowMapper,
        width: int,
        key: str,
        digest: str,
        start: int,
        progress: _Progress,
        report: _BadRows,
    ) -> Iterator[Page]:
        # The hot loop: one pass over the rows, one mapper call per row, a page every page_size rows.
        page_size = self.page_size
        records: list[Record] = []
        row_no = in_page = 0
        line = reader.line_num  # the physical line the previous row ended on; rows may span lines
        for row in reader:
            row_no += 1
            first_line, line = line + 1, reader.line_num
            if row_no <= start:
                continue  # committed before a crash
            in_page += 1
            if row:  # blank lines carry nothing
                if len(row) != width:
                    report.add(
                        first_line, f"row: expected {width} columns (as in the header), found {len(row)}"
                    )
                else:
                    try:
                        records.append(mapper(row))
                    except BadValue as exc:
                        report.add(first_line, str(exc))
            if in_page >= page_size:
                yield report.page(records, progress.at(key, digest, row_no))
                records, in_page = [], 0
        yield report.page(records, progress.finished(key, digest))

    def _open(self, path: Path) -> IO[str]:
        try:
            # newline="" lets the csv module see the line ends, so quoted fields may hold newlines.
            return path.open(encoding=self.entry.encoding, newline="")
        except OSError as exc:
            raise ConfigError(
                f"cannot open {path}: {exc.strerror}", field=f"{self.field_prefix}.path"
            ) from None

    def _reader(self, f: IO[str]) -> Any:
        return csv.reader(f, delimiter=self.entry.delimiter, quotechar=self.entry.quotechar)

    @contextmanager
    def _file_errors(self, path: Path, key: str, reader: Any) -> Iterator[None]:
        """Turn decoding and CSV syntax errors into ConfigErrors naming the file and line."""
        try:
            yield
        except UnicodeDecodeError as exc:
            raise self._decode_error(path, key, exc) from None
        except csv.Error as exc:
            raise ConfigError(f"unreadable CSV: {exc}", location=f"{key}:{reader.line_num + 1}") from None

    def _decode_error(self, path: Path, key: str, exc: UnicodeDecodeError) -> ConfigError:
        line = _first_undecodable_line(path, self.entry.encoding)
        bad = exc.object[exc.start : exc.start + 1].hex()
        return ConfigError(
            f"not valid {self.entry.encoding} (byte 0x{bad}); set 'encoding' (e.g. latin-1, cp1252)",
            location=f"{key}:{line}",
            field=f"{self.field_prefix}.encoding",
        )

    def _key(self, path: Path) -> str:
        """The file's name in the state and in messages: relative to the config folder when inside it."""
        try:
            return path.relative_to(self.base_dir).as_posix()
        except ValueError:
            return path.as_posix()


class _BadRows:
    """Counts a file's bad rows and keeps the first MAX_ERRORS_PER_FILE messages for the run report."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.total = 0
        self.skipped = 0  # since the last page
        self.errors: list[str] = []  # since the last page

    def add(self, line: int, problem: str) -> None:
        message = f"{self.key}:{line}: {problem}"
        self.total += 1
        self.skipped += 1
        if self.total <= MAX_ERRORS_PER_FILE:
            self.errors.append(message)
        else:
            logger.debug("skipped: %s", message)

    def page(self, records: list[Record], state: dict[str, Any]) -> Page:
        page = Page(records, state, self.skipped, self.errors)
        self.skipped, self.errors = 0, []
        return page

    def log_summary(self) -> None:
        if self.total > MAX_ERRORS_PER_FILE:
            logger.warning(
                "%s: %d bad rows skipped; the first %d are in the run report",
                self.key,
                self.total,
                MAX_ERRORS_PER_FILE,
            )


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _first_undecodable_line(path: Path, encoding: str) -> int:
    """The physical line of the first byte that does not decode (the text reader only knows its chunk)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    line = 1
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                return line + chunk.count(b"\n", 0, max(exc.start, 0))
            line += chunk.count(b"\n")
    return line


class CsvSource:
    """A configured CSV source: one stream per file entry.

    Args:
        config: the validated source entry.
        name: the source's name in the config.
        base_dir: the config file's folder.
    """

    def __init__(self, config: CsvSourceConfig, name: str, base_dir: Path) -> None:
        self.name = name
        self._streams = [
            CsvStream(
                entry, base_dir=base_dir, page_size=config.page_size, field_prefix=f"sources.{name}.files.{i}"
            )
            for i, entry in enumerate(config.files)
        ]

    def streams(self) -> list[CsvStream]:
        """The file entries' streams, in config order."""
        return list(self._streams)

    def check(self) -> None:
        """Check every entry's files and headers; raise all problems at once as ConfigError(s)."""
        errors: list[ConfigError] = []
        for stream in self._streams:
            try:
                stream.check()
            except ConfigErrors as exc:
                errors.extend(exc.errors)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise ConfigErrors(errors)

    def close(self) -> None:
        """Nothing to release: files are opened and closed per read."""
