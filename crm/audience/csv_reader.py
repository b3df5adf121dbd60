"""Reading CSV files (RFC 4180) as a stream: encoding and delimiter detection, line numbers, clear failures.

Memory stays constant: the file is decoded incrementally and rows are yielded one at a time. Every row
carries the physical line it starts on (quoted fields may span lines), so a rejected row or a broken file
is reported where a person opening the file in an editor would look.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

#: Bytes looked at to guess the encoding and the delimiter.
SAMPLE_BYTES = 64 * 1024
DELIMITERS = ",;\t|"
#: Largest single field accepted (the csv module's default is 128 KiB).
MAX_FIELD_CHARS = 1_000_000

ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "latin-1", "cp1252")


class CsvFormatError(Exception):
    """The file cannot be read as CSV; ``line`` is where it broke (1-based)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


@dataclass(frozen=True, slots=True)
class CsvDialect:
    encoding: str
    delimiter: str


def detect_encoding(sample: bytes) -> str:
    """BOMs first; then UTF-16 without BOM by its NUL pattern; then UTF-8 if it decodes; else Latin-1/cp1252."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    head = sample[:4096]
    if len(head) >= 4:
        even_nuls, odd_nuls = head[0::2].count(0), head[1::2].count(0)
        if odd_nuls > len(head) // 4 and even_nuls == 0:
            return "utf-16-le"
        if even_nuls > len(head) // 4 and odd_nuls == 0:
            return "utf-16-be"
    try:
        # The sample may end inside a multi-byte character: a final, incomplete one is not an error.
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        # Spreadsheet "ANSI" exports are cp1252, a superset of Latin-1's printable characters; its smart
        # quotes live in 0x80-0x9F, which Latin-1 reserves for control codes nobody types.
        if any(0x80 <= byte <= 0x9F for byte in sample):
            try:
                sample.decode("cp1252")
            except UnicodeDecodeError:
                return "latin-1"
            return "cp1252"
        return "latin-1"
    return "utf-8"


def sniff_delimiter(text_sample: str) -> str:
    lines = text_sample.splitlines()[:50]
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=DELIMITERS).delimiter
    except csv.Error:
        # The sniffer gives up on one-column files and some quoting; count instead.
        first = lines[0] if lines else ""
        counts = {d: first.count(d) for d in DELIMITERS}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else ","


def detect_dialect(stream: BinaryIO, encoding: str | None = None, delimiter: str | None = None) -> CsvDialect:
    """Peek at the start of a seekable binary stream; it is rewound afterwards."""
    start = stream.tell()
    sample = stream.read(SAMPLE_BYTES)
    stream.seek(start)
    if encoding is None:
        encoding = detect_encoding(sample)
    elif encoding.lower().replace("_", "-") not in ENCODINGS:
        raise CsvFormatError(1, f"encoding {encoding!r} is not supported; use one of {', '.join(ENCODINGS)}")
    if delimiter is None:
        text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(sample, final=False)
        delimiter = sniff_delimiter(text.lstrip("\ufeff"))
    elif len(delimiter) != 1 or delimiter in '"\r\n':
        raise CsvFormatError(1, f"delimiter {delimiter!r} must be one character other than a quote or newline")
    return CsvDialect(encoding, delimiter)


_BYTE_ENCODINGS = frozenset({"utf-8", "utf-8-sig", "latin-1", "cp1252"})


class _Lines:
    """Decoded physical lines of a binary stream, counting them, so a decoding error names its line.

    For the byte-oriented encodings a newline byte never occurs inside a character, so each line decodes
    on its own; UTF-16 goes through a text wrapper (where an error is placed on the next line to read).
    """

    def __init__(self, stream: BinaryIO, encoding: str) -> None:
        self.encoding = encoding
        self.number = 0
        # The BOM of utf-8-sig is stripped from the first field by read_rows.
        self._codec = "utf-8" if encoding == "utf-8-sig" else encoding
        self._binary: Iterator[bytes] | None = None
        self._text: Iterator[str] | None = None
        if encoding in _BYTE_ENCODINGS:
            self._binary = iter(stream)
        else:
            self._text = iter(io.TextIOWrapper(stream, encoding=encoding, newline="", errors="strict"))

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self._text is not None:
            try:
                line = next(self._text)
            except UnicodeDecodeError as exc:  # the wrapper decodes ahead: blame the line to come
                raise self._error(self.number + 1, exc) from None
            self.number += 1
            return line
        assert self._binary is not None
        raw = next(self._binary)
        self.number += 1
        try:
            return raw.decode(self._codec)
        except UnicodeDecodeError as exc:
            raise self._error(self.number, exc) from None

    def _error(self, line: int, exc: UnicodeDecodeError) -> CsvFormatError:
        return CsvFormatError(line, f"not valid {self.encoding} ({exc.reason}); give the file's encoding explicitly")


def read_rows(stream: BinaryIO, dialect: CsvDialect) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, fields)`` for every non-blank record; raise CsvFormatError where the file breaks."""
    csv.field_size_limit(MAX_FIELD_CHARS)
    lines = _Lines(stream, dialect.encoding)
    reader = csv.reader(lines, delimiter=dialect.delimiter, quotechar='"', doublequote=True, strict=True)
    next_start = 1
    try:
        for fields in reader:
            start, next_start = next_start, lines.number + 1
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            if start == 1 and fields[0].startswith("\ufeff"):
                fields[0] = fields[0][1:]
            yield start, fields
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            raise CsvFormatError(next_start, 'a quoted field is never closed (missing ")') from None
        raise CsvFormatError(lines.number, str(exc)) from None
