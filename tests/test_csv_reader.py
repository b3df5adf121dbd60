"""RFC 4180 reading: encodings, delimiters, quoting, line numbers, broken files; and header mapping."""

from __future__ import annotations

import codecs
import csv as csv_module
import io
from datetime import UTC, date, datetime

import pytest

from crm.audience.csv_reader import CsvDialect, CsvFormatError, detect_dialect, detect_encoding, read_rows
from crm.audience.mapping import MappingError, suggest_mapping, validate_mapping


def _rows(data: bytes, encoding: str | None = None, delimiter: str | None = None) -> list[tuple[int, list[str]]]:
    stream = io.BytesIO(data)
    return list(read_rows(stream, detect_dialect(stream, encoding, delimiter)))


TEXT = 'name,email,notes\r\nZoë Ångström,zoe@example.com,"says ""hi"", then\r\nleaves"\r\nBob,bob@example.com,plain\r\n'
EXPECTED = [
    (1, ["name", "email", "notes"]),
    (2, ["Zoë Ångström", "zoe@example.com", 'says "hi", then\r\nleaves']),
    (4, ["Bob", "bob@example.com", "plain"]),
]


@pytest.mark.parametrize(
    ("encoded", "detected"),
    [
        (TEXT.encode("utf-8"), "utf-8"),
        (codecs.BOM_UTF8 + TEXT.encode("utf-8"), "utf-8-sig"),
        (TEXT.encode("utf-16"), "utf-16"),
        (TEXT.encode("utf-16-le"), "utf-16-le"),
        (TEXT.encode("utf-16-be"), "utf-16-be"),
        (TEXT.encode("latin-1"), "latin-1"),
        ((TEXT + "Eve,eve@example.com,\u201cquoted\u201d\r\n").encode("cp1252"), "cp1252"),
    ],
    ids=["utf8", "utf8-bom", "utf16-bom", "utf16le", "utf16be", "latin1", "cp1252"],
)
def test_encodings_are_detected(encoded: bytes, detected: str) -> None:
    """UTF-8 with or without BOM, UTF-16 with or without BOM, Latin-1 and cp1252 all read the same rows."""
    assert detect_encoding(encoded) == detected
    assert _rows(encoded)[:3] == EXPECTED


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiter_is_sniffed(delimiter: str) -> None:
    """Comma, semicolon, tab and pipe files need no option."""
    data = TEXT.replace(",", delimiter).replace(f'says ""hi""{delimiter} then', 'says ""hi"", then')
    assert _rows(data.encode())[2] == (4, ["Bob", "bob@example.com", "plain"])


def test_given_encoding_and_delimiter_win() -> None:
    """An explicit encoding and delimiter override detection."""
    data = "a;b\n1,5;2\n".encode("latin-1")
    assert _rows(data, encoding="latin-1", delimiter=";") == [(1, ["a", "b"]), (2, ["1,5", "2"])]


def test_lf_blank_lines_and_embedded_delimiters() -> None:
    """LF endings, blank lines skipped without shifting line numbers, quoted delimiters kept."""
    data = b'h1,h2\n\n"a,b",c\n\n\nd,"e\nf"\ng,h'
    assert _rows(data) == [(1, ["h1", "h2"]), (3, ["a,b", "c"]), (6, ["d", "e\nf"]), (8, ["g", "h"])]


@pytest.mark.parametrize(
    ("data", "line", "message"),
    [
        (b'a,b\n1,2\n"open,3\n4,5\n', 3, "never closed"),
        (b'a,b\n1,2\n"x"y,3\n', 3, "expected after"),
        ("a,b\n1,2\n3,\u00e9\n".encode("utf-8")[:-2] + b"\xff\xfe\n", 3, "not valid utf-8"),
    ],
    ids=["unterminated-quote", "garbage-after-quote", "bad-bytes-late"],
)
def test_broken_files_fail_at_the_line_where_they_break(data: bytes, line: int, message: str) -> None:
    """A structurally broken file raises CsvFormatError naming the line."""
    stream = io.BytesIO(data)
    with pytest.raises(CsvFormatError) as caught:
        list(read_rows(stream, CsvDialect("utf-8", ",")))
    assert caught.value.line == line
    assert message in str(caught.value)


def test_unsupported_encoding_and_delimiter_are_refused() -> None:
    """Options are validated too."""
    with pytest.raises(CsvFormatError, match="not supported"):
        detect_dialect(io.BytesIO(b"a\n"), encoding="ebcdic")
    with pytest.raises(CsvFormatError, match="one character"):
        detect_dialect(io.BytesIO(b"a\n"), delimiter='"')


def test_mapping_suggestion_from_aliases() -> None:
    """Common header spellings map to fields; unknown columns map to nothing; a field is used once."""
    header = ["E-mail", "Phone Number", "Company", "Website", "First Name", "Surname", "Favourite colour", "Email"]
    assert suggest_mapping(header) == {
        "E-mail": "email",
        "Phone Number": "phone",
        "Company": "account.name",
        "Website": "account.domain",
        "First Name": "first_name",
        "Surname": "last_name",
        "Favourite colour": None,
        "Email": None,
    }


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"Nope": "email"}, "not in the file's header"),
        ({"Mail": "email", "Tel": "favourite"}, "is not a field"),
        ({"Mail": "email", "Tel": "email"}, "mapped from both"),
        ({"Mail": "custom.Bad Name"}, "is not a field"),
        ({"Mail": None, "Tel": "first_name"}, "at least one of email or phone"),
    ],
)
def test_explicit_mapping_is_validated(mapping: dict[str, str | None], message: str) -> None:
    """Mistakes in a mapping are named precisely."""
    with pytest.raises(MappingError, match=message):
        validate_mapping(mapping, ["Mail", "Tel"])


def test_explicit_mapping_with_custom_fields() -> None:
    """Custom fields for contacts and accounts are accepted."""
    header = ["Mail", "Colour", "Tier"]
    mapping = {"Mail": "email", "Colour": "custom.colour", "Tier": "account.custom.tier"}
    assert validate_mapping(mapping, header) == {0: "email", 1: "custom.colour", 2: "account.custom.tier"}


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("=HYPERLINK(1)", "'=HYPERLINK(1)"),
        ("+1 415 692 7213", "'+1 415 692 7213"),
        ("-5", "'-5"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("plain", "plain"),
        ("a=b", "a=b"),
        (None, ""),
        (42, "42"),
        (datetime(2026, 11, 25, 1, 51, 0, 228865, tzinfo=UTC), "2026-11-25T01:51:00.228865+00:00"),
        (date(2026, 12, 9), "2026-12-09"),
    ],
)
def test_spreadsheet_formulas_are_neutralised(value: object, written: str) -> None:
    """Cells a spreadsheet would evaluate start with an apostrophe; others are untouched."""
    from crm.audience.csv_writer import safe_cell, write_rows

    assert safe_cell(value) == written
    buffer = io.StringIO()
    write_rows(buffer, [[value, "x,y"]])
    assert next(csv_module.reader(io.StringIO(buffer.getvalue()))) == [written, "x,y"]
