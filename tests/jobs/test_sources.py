"""Tests for jobs/sources.py: CSV and JSONL readers, hostile input, samples."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs import sources
from jobs.models import Provider
from jobs.sources import (
    Record,
    RecordError,
    SourceError,
    read_invoices,
    read_stream,
)

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
HEADER = "invoice_number,customer_id,description,quantity,unit_price\n"
Item = Record | RecordError


def write(tmp_path: Path, content: str | bytes, name: str = "in.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def read(tmp_path: Path, content: str | bytes, name: str = "in.csv", **kw: int) -> list[Item]:
    return list(read_invoices(write(tmp_path, content, name), **kw))  # type: ignore[arg-type]


def records(items: list[Item]) -> list[Record]:
    return [item for item in items if isinstance(item, Record)]


def errors(items: list[Item]) -> list[RecordError]:
    return [item for item in items if isinstance(item, RecordError)]


def only_error(items: list[Item]) -> RecordError:
    found = errors(items)
    assert len(found) == 1, [str(e) for e in found]
    return found[0]


def neutral(number: str = "INV-1", **extra: object) -> dict[str, object]:
    body: dict[str, object] = {
        "number": number,
        "customer": {"id": "CUST0001"},
        "lines": [{"description": "Pencils", "quantity": 10, "unit_price": 1.49}],
    }
    return body | extra


def jsonl(*bodies: object) -> str:
    return "".join(json.dumps(body) + "\n" for body in bodies)


# --- RecordError ------------------------------------------------------------------------------


def test_record_error_str_names_line_invoice_and_field() -> None:
    error = RecordError(12, "Input should be greater than 0", "lines[0].quantity", "INV-3")
    assert str(error) == (
        "line 12 (invoice INV-3) field lines[0].quantity: Input should be greater than 0"
    )
    assert str(RecordError(3, "not valid JSON")) == "line 3: not valid JSON"


# --- CSV: shape and mapping -------------------------------------------------------------------


def test_csv_groups_consecutive_rows_into_one_invoice(tmp_path: Path) -> None:
    items = read(
        tmp_path,
        HEADER + "INV-1,C1,Pencils,10,1.49\nINV-1,C1,Paper,2,24.99\nINV-2,C2,Toner,1,79.90\n",
    )
    first, second = records(items)
    assert (first.line, first.invoice.number, len(first.invoice.lines)) == (2, "INV-1", 2)
    assert first.invoice.lines[1].unit_price == Decimal("24.99")
    assert first.provider is None
    assert (second.line, second.invoice.number) == (4, "INV-2")


def test_csv_maps_every_invoice_column(tmp_path: Path) -> None:
    header = ",".join(sources.COLUMNS) + "\n"
    values = {
        "invoice_number": "INV-9",
        "customer_id": "CUST0009",
        "customer_first_name": "Ada",
        "customer_last_name": "Brooks",
        "customer_firm_name": "Blue Harbor",
        "customer_email": "ada@example.com",
        "customer_phone": "+1 (555) 010-0123",
        "customer_address1": "12 Oak Ave",
        "customer_address2": "Suite 4",
        "customer_city": "Austin",
        "customer_state": "TX",
        "customer_zip": "78701",
        "customer_zip4": "1234",
        "customer_country_code": "840",
        "customer_country": "United States",
        "currency": "USD",
        "invoice_date": "2025-01-31",
        "terms_days": "30",
        "tax_amount": "4.50",
        "memo": "Thanks",
        "footer_note": "Footer",
        "terms_note": "Late fees apply",
        "allow_partial": "yes",
        "allow_ach": "no",
        "allow_card": "1",
        "allow_tips": "false",
        "email_receipt": "TRUE",
        "send": "0",
        "maast_profile_id": "212000000001",
        "stax_url": "https://pay.example/#/bill/",
        "funding": "acct1:60.00; acct2:40.00",
        "item_name": "Support",
        "description": "Support hours",
        "quantity": "1",
        "unit_price": "95.50",
    }
    row = ",".join(f'"{values.get(column, "")}"' for column in sources.COLUMNS) + "\n"
    (record,) = records(read(tmp_path, header + row))
    invoice = record.invoice
    assert invoice.customer.phone == "+1 (555) 010-0123"
    assert invoice.customer.address is not None
    assert invoice.customer.address.line2 == "Suite 4"
    assert invoice.customer.address.country_code == "840"
    assert invoice.tax is not None and (invoice.tax.kind, invoice.tax.value) == (
        "amount",
        Decimal("4.50"),
    )
    assert invoice.terms is not None and invoice.terms.days == 30
    assert (invoice.notes.memo, invoice.notes.footer, invoice.notes.terms) == (
        "Thanks",
        "Footer",
        "Late fees apply",
    )
    payment = invoice.payment
    assert (payment.partial, payment.ach, payment.card, payment.tips, payment.email_receipt) == (
        True,
        False,
        True,
        False,
        True,
    )
    assert invoice.send is False
    assert invoice.maast.profile_id == "212000000001"
    assert invoice.stax.url == "https://pay.example/#/bill/"
    assert [(f.account_id, f.amount) for f in invoice.funding] == [
        ("acct1", Decimal("60.00")),
        ("acct2", Decimal("40.00")),
    ]
    assert invoice.lines[0].name == "Support"


def test_csv_optional_cells_left_empty_take_model_defaults(tmp_path: Path) -> None:
    header = "currency,send,tax_rate,due_date," + HEADER
    (record,) = records(read(tmp_path, header + ",,,,INV-1,C1,Pens,1,1.00\n"))
    invoice = record.invoice
    assert (invoice.currency, invoice.send, invoice.tax, invoice.terms) == (
        "USD",
        False,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("cell", "expected"),
    [("true", True), ("YES", True), ("1", True), ("false", False), ("no", False), ("0", False)],
)
def test_csv_booleans(tmp_path: Path, cell: str, expected: bool) -> None:
    header = "invoice_number,customer_id,send,description,quantity,unit_price\n"
    (record,) = records(read(tmp_path, header + f"INV-1,C1,{cell},Pens,1,1.00\n"))
    assert record.invoice.send is expected


def test_csv_bad_boolean_is_a_field_error(tmp_path: Path) -> None:
    header = "invoice_number,customer_id,allow_ach,description,quantity,unit_price\n"
    error = only_error(read(tmp_path, header + "INV-1,C1,maybe,Pens,1,1.00\n"))
    assert (error.line, error.field, error.invoice_number) == (2, "allow_ach", "INV-1")
    assert "'maybe' is not true/false" in error.message


def test_csv_header_names_are_normalized(tmp_path: Path) -> None:
    header = "Invoice Number, Customer-ID ,DESCRIPTION,Quantity,Unit Price\n"
    assert len(records(read(tmp_path, header + "INV-1,C1,Pens,1,1.00\n"))) == 1


# --- CSV: whole-file problems -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (HEADER.strip() + ",qty\n", "'qty' (did you mean 'quantity'?)"),
        (HEADER.strip() + ",custmer_email\n", "'custmer_email' (did you mean 'customer_email'?)"),
        (HEADER.strip() + ",colour\n", "unknown column(s): 'colour'"),
        (HEADER.strip() + ",Quantity\n", "column 'quantity' appears twice (columns 4 and 6)"),
        ("invoice_number,customer_id,description,quantity\n", "missing required column(s): unit"),
        ("", "the file is empty"),
        ("\n\n  \n", "the file is empty"),
        (b"\xff\xfeh\x00i\x00\n", "UTF-16"),
        (b"invoice_number,cust\xffomer_id\n", "header row (line 1)"),
    ],
)
def test_csv_unusable_header_is_a_source_error(
    tmp_path: Path, header: str | bytes, expected: str
) -> None:
    with pytest.raises(SourceError) as raised:
        read(tmp_path, header)
    assert expected in str(raised.value)


def test_csv_header_may_follow_blank_lines_and_lines_count_from_the_file(tmp_path: Path) -> None:
    (record,) = records(read(tmp_path, "\n" + HEADER + "INV-1,C1,Pens,1,1.00\n"))
    assert record.line == 3


# --- CSV: grouping rules ----------------------------------------------------------------------


def test_csv_rows_of_one_invoice_must_be_consecutive(tmp_path: Path) -> None:
    content = HEADER + "INV-1,C1,A,1,1.00\nINV-1,C1,B,1,1.00\nINV-2,C2,C,1,1.00\nINV-1,C1,D,1,1\n"
    items = read(tmp_path, content)
    assert [r.invoice.number for r in records(items)] == ["INV-1", "INV-2"]
    error = only_error(items)
    assert (error.line, error.field, error.invoice_number) == (5, "invoice_number", "INV-1")
    assert error.message == "invoice INV-1 already ended at line 3; its rows must be consecutive"


def test_csv_rows_must_agree_on_invoice_columns(tmp_path: Path) -> None:
    header = "invoice_number,customer_id,memo,description,quantity,unit_price\n"
    content = header + "INV-1,C1,Hi,A,1,1.00\nINV-1,C2,,B,1,1.00\n"
    error = only_error(read(tmp_path, content))
    assert (error.line, error.field) == (3, "customer_id")
    assert "'C2' here but 'C1' at line 2" in error.message


def test_csv_continuation_rows_may_leave_invoice_cells_empty(tmp_path: Path) -> None:
    header = "invoice_number,customer_id,memo,description,quantity,unit_price\n"
    content = header + "INV-1,C1,Hi,A,1,1.00\nINV-1,,,B,2,2.00\n"
    (record,) = records(read(tmp_path, content))
    assert record.invoice.notes.memo == "Hi" and len(record.invoice.lines) == 2


def test_csv_one_bad_row_rejects_the_whole_invoice_with_all_problems(tmp_path: Path) -> None:
    content = HEADER + "INV-1,C1,A,1,1.00\nINV-1,C1,=cmd(),-2,1.005\nINV-2,C2,B,1,1.00\n"
    items = read(tmp_path, content)
    assert [r.invoice.number for r in records(items)] == ["INV-2"]
    found = {(e.line, e.field) for e in errors(items)}
    assert found == {(3, "description"), (3, "quantity"), (3, "unit_price")}
    assert all(e.invoice_number == "INV-1" for e in errors(items))


@pytest.mark.parametrize(
    ("columns", "row", "field", "message"),
    [
        ("", "INV-1,,A,1,1.00", "customer_id", "required, but empty"),
        ("", "INV-1,C1,A,0,1.00", "quantity", "greater than 0 (got '0')"),
        ("", "INV-1,C1,A,1,-1.00", "unit_price", "must be at least 0"),
        ("", "INV-1,C1,,1,1.00", "description", "required, but empty"),
        ("", "INV-1,C1,A,1e5,1.00", "quantity", "not a plain decimal number"),
        ("", 'INV-1,C1,A,1,"1,000.00"', "unit_price", "not a plain decimal number"),
        ("tax_rate,", "-5,INV-1,C1,A,1,1.00", "tax_rate", "must be at least 0"),
        ("tax_amount,", "x,INV-1,C1,A,1,1.00", "tax_amount", "not a plain decimal"),
        ("tax_rate,tax_amount,", "1,2,INV-1,C1,A,1,1", "tax_amount", "not both"),
        ("terms_days,", "-1,INV-1,C1,A,1,1.00", "terms_days", "must be at least 0"),
        (
            "due_date,",
            "2025-02-30,INV-1,C1,A,1,1.00",
            "due_date",
            "day value is outside expected range",
        ),
        ("terms_days,due_date,", "1,2025-01-01,INV-1,C1,A,1,1", "due_date", "not both"),
        ("invoice_date,", "31/01/2025,INV-1,C1,A,1,1.00", "invoice_date", "Invalid isoformat"),
        ("currency,", "usd,INV-1,C1,A,1,1.00", "currency", "must match the pattern"),
        ("funding,", "a:0,INV-1,C1,A,1,1.00", "funding", "greater than 0"),
        ("funding,", "a60,INV-1,C1,A,1,1.00", "funding", "not account:amount"),
    ],
)
def test_csv_model_errors_point_at_the_column(
    tmp_path: Path, columns: str, row: str, field: str, message: str
) -> None:
    error = only_error(read(tmp_path, f"{columns}{HEADER}{row}\n"))
    assert (error.line, error.field, error.invoice_number) == (2, field, "INV-1")
    assert message in error.message


def test_csv_line_item_errors_name_the_row_of_the_item(tmp_path: Path) -> None:
    content = HEADER + "INV-1,C1,A,1,1.00\nINV-1,C1,B,1,1.00\nINV-1,C1,C,0,1.00\n"
    error = only_error(read(tmp_path, content))
    assert (error.line, error.field) == (4, "quantity")


def test_csv_bad_invoice_number_is_reported_on_its_column(tmp_path: Path) -> None:
    error = only_error(read(tmp_path, HEADER + "INV 1,C1,A,1,1.00\n"))
    assert (error.field, error.invoice_number) == ("invoice_number", "INV 1")


def test_csv_row_without_invoice_number_rejects_its_neighbours(tmp_path: Path) -> None:
    content = HEADER + "INV-1,C1,A,1,1.00\n,C1,B,1,1.00\nINV-2,C2,C,1,1.00\nINV-3,C3,D,1,1.00\n"
    items = read(tmp_path, content)
    assert [r.invoice.number for r in records(items)] == ["INV-3"]
    assert {(e.line, e.invoice_number) for e in errors(items)} == {
        (3, None),
        (3, "INV-1"),
        (3, "INV-2"),
    }


def test_csv_too_many_rows_for_one_invoice(tmp_path: Path) -> None:
    error = only_error(read(tmp_path, HEADER + "INV-1,C1,A,1,1.00\n" * 5, max_lines_per_invoice=3))
    assert "more than 3 rows" in error.message


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("INV-1,C1,A,1,1.00,extra\n", "row has 6 cells but the header has 5"),
        ("INV-1,C1,A,1\n", "row has 4 cells but the header has 5"),
    ],
)
def test_csv_cell_count_must_match_the_header(tmp_path: Path, row: str, message: str) -> None:
    assert message in only_error(read(tmp_path, HEADER + row)).message


def test_csv_trailing_empty_cells_and_empty_rows_are_ignored(tmp_path: Path) -> None:
    content = HEADER.strip() + ",\n" + "INV-1,C1,A,1,1.00,,\n,,,,,\n\n"
    (record,) = records(read(tmp_path, content))
    assert record.invoice.number == "INV-1"


def test_csv_value_under_an_unnamed_column_is_an_error(tmp_path: Path) -> None:
    content = HEADER.strip() + ",\n" + "INV-1,C1,A,1,1.00,surprise\n"
    assert "under a column with no name" in only_error(read(tmp_path, content)).message


def test_csv_quoted_newlines_stay_in_the_value_and_lines_keep_counting(tmp_path: Path) -> None:
    content = HEADER + 'INV-1,C1,"two\nlines",1,1.00\nINV-2,C2,B,1,1.00\n'
    first, second = records(read(tmp_path, content))
    assert first.invoice.lines[0].description == "two\nlines"
    assert second.line == 4


def test_csv_broken_quoting_is_a_record_error(tmp_path: Path) -> None:
    content = HEADER + 'INV-1,C1,"A"b,1,1.00\nINV-2,C2,B,1,1.00\nINV-3,C3,C,1,1.00\n'
    items = read(tmp_path, content)
    assert [r.invoice.number for r in records(items)] == ["INV-3"]
    assert any("not valid CSV" in e.message and e.line == 2 for e in errors(items))


# --- hostile bytes (both formats share the line reader) ---------------------------------------


def test_bom_crlf_and_blank_lines_are_accepted(tmp_path: Path) -> None:
    csv_bytes = b"\xef\xbb\xbf" + HEADER.replace("\n", "\r\n").encode()
    csv_bytes += b"INV-1,C1,A,1,1.00\r\n\r\nINV-2,C2,B,1,1.00\r\n"
    assert [r.line for r in records(read(tmp_path, csv_bytes))] == [2, 4]
    json_bytes = b"\xef\xbb\xbf" + jsonl(neutral("INV-1")).replace("\n", "\r\n").encode()
    json_bytes += b"\r\n   \n" + jsonl(neutral("INV-2")).encode()
    found = records(read(tmp_path, json_bytes, "in.jsonl"))
    assert [(r.line, r.invoice.number) for r in found] == [(1, "INV-1"), (4, "INV-2")]


def test_invalid_utf8_is_reported_per_line_and_rejects_that_invoice(tmp_path: Path) -> None:
    content = HEADER.encode() + b"INV-1,C1,A,1,1.00\nINV-1,C1,caf\xe9,1,1.00\nINV-2,C2,B,1,1\n"
    items = read(tmp_path, content)
    assert [r.invoice.number for r in records(items)] == ["INV-2"]
    error = only_error(items)
    assert (error.line, error.invoice_number) == (3, "INV-1")
    assert "not valid UTF-8 (byte 0xe9 at byte 13)" in error.message
    json_items = read(tmp_path, b'{"number": "\xff"}\n' + jsonl(neutral()).encode(), "a.jsonl")
    assert "not valid UTF-8" in errors(json_items)[0].message
    assert len(records(json_items)) == 1


def test_nul_bytes_are_record_errors(tmp_path: Path) -> None:
    items = read(tmp_path, HEADER + "INV-1,C1,A\x00,1,1.00\nINV-2,C2,B,1,1.00\n")
    assert "NUL byte at column 11" in only_error(items).message
    assert len(records(items)) == 1
    json_items = read(tmp_path, '{"a":\x00}\n', "a.jsonl")
    assert "NUL byte" in only_error(json_items).message


def test_too_long_line_is_reported_and_its_invoice_rejected(tmp_path: Path) -> None:
    long_row = "INV-1,C1," + "x" * 500 + ",1,1.00\n"
    content = HEADER + "INV-1,C1,A,1,1.00\n" + long_row + "INV-2,C2,B,1,1.00\n"
    items = read(tmp_path, content, max_line_bytes=200)
    assert [r.invoice.number for r in records(items)] == ["INV-2"]
    error = only_error(items)
    assert (error.line, error.invoice_number) == (3, "INV-1")
    assert "longer than the 200-byte limit" in error.message
    json_items = read(tmp_path, "x" * 500 + "\n" + jsonl(neutral()), "a.jsonl", max_line_bytes=200)
    assert [type(i) for i in json_items] == [RecordError, Record]


class _CountingReader(io.BytesIO):
    """Records the largest single readline the reader asked for and got."""

    largest = 0

    def readline(self, size: int | None = -1, /) -> bytes:
        chunk = super().readline(size)
        self.largest = max(self.largest, len(chunk))
        return chunk


def test_a_huge_line_is_never_read_whole() -> None:
    stream = _CountingReader(b"x" * 5_000_000 + b"\n" + jsonl(neutral()).encode())
    items = list(read_stream(stream, fmt="jsonl", max_line_bytes=1000))
    assert [type(i) for i in items] == [RecordError, Record]
    assert stream.largest <= 1001


@pytest.mark.parametrize(
    "cell",
    ["=1+1", '=HYPERLINK("http://x","y")', "+cmd|' /C calc'!A0", "-2+3*A1", "@SUM(A1:A2)", " =1"],
)
def test_csv_formula_cells_are_refused(tmp_path: Path, cell: str) -> None:
    header = "invoice_number,customer_id,customer_first_name,description,quantity,unit_price\n"
    quoted = cell.replace('"', '""')
    error = only_error(read(tmp_path, header + f'INV-1,C1,"{quoted}",A,1,1.00\n'))
    assert error.field == "customer_first_name"
    assert "spreadsheet formula" in error.message


def test_signed_numbers_and_phone_numbers_are_not_formulas(tmp_path: Path) -> None:
    header = (
        "invoice_number,customer_id,customer_phone,tax_amount,description,quantity,unit_price\n"
    )
    row = "INV-1,C1,+1 (555) 010-0123,+1.50,A,1,1.00\n"
    (record,) = records(read(tmp_path, header + row))
    assert record.invoice.customer.phone == "+1 (555) 010-0123"


# --- format selection and file errors ---------------------------------------------------------


@pytest.mark.parametrize("name", ["a.jsonl", "a.ndjson", "A.JSONL"])
def test_jsonl_extensions(tmp_path: Path, name: str) -> None:
    assert len(records(read(tmp_path, jsonl(neutral()), name))) == 1


def test_unknown_extension_needs_a_format(tmp_path: Path) -> None:
    path = write(tmp_path, jsonl(neutral()), "a.json")
    with pytest.raises(SourceError, match=r"\.csv, \.jsonl or \.ndjson"):
        list(read_invoices(path))
    assert len(records(list(read_invoices(path, fmt="jsonl")))) == 1


def test_missing_file_and_directory_are_source_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot open"):
        list(read_invoices(tmp_path / "absent.csv"))
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(SourceError, match="cannot open"):
        list(read_invoices(tmp_path / "dir.csv"))


def test_dash_reads_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = io.TextIOWrapper(io.BytesIO(jsonl(neutral()).encode()))
    monkeypatch.setattr(sys, "stdin", fake)
    with pytest.raises(SourceError, match="explicit format"):
        list(read_invoices(Path("-")))
    assert len(records(list(read_invoices(Path("-"), fmt="jsonl")))) == 1


# --- JSONL ------------------------------------------------------------------------------------


def test_jsonl_neutral_line_keeps_money_decimal(tmp_path: Path) -> None:
    line = jsonl(neutral()).replace('"unit_price": 1.49', '"unit_price": 0.10')
    line = line.replace('"quantity": 10', '"quantity": 3')
    (record,) = records(read(tmp_path, line, "a.jsonl"))
    price = record.invoice.lines[0].unit_price
    assert isinstance(price, Decimal) and str(price) == "0.10"  # a float would print 0.1
    assert record.invoice.totals().total == Decimal("0.30")
    assert (record.line, record.provider) == (1, None)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not valid JSON: Expecting value at column 1"),
        ('{"number": "INV-1",', "not valid JSON"),
        ("[1, 2]", "expected a JSON object (one invoice per line), got an array"),
        ('"text"', "got a string"),
        ("12", "got a number"),
        ("null", "got null"),
        ("true", "got a boolean"),
        ('{"a": NaN}', "NaN is not a number"),
        ('{"a": 1, "a": 2}', "key 'a' appears twice"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
        ('{"a": ' + "1" * 5000 + "}", "not valid JSON"),
    ],
)
def test_jsonl_malformed_lines(tmp_path: Path, line: str, message: str) -> None:
    items = read(tmp_path, line + "\n" + jsonl(neutral()), "a.jsonl")
    assert message in only_error(items).message
    assert len(records(items)) == 1


def test_jsonl_errors_carry_a_json_path(tmp_path: Path) -> None:
    good = {"description": "a", "quantity": 1, "unit_price": 1}
    body = neutral(lines=[good, good, {"description": "b", "quantity": -1, "unit_price": 1}])
    error = only_error(read(tmp_path, jsonl(body), "a.jsonl"))
    assert str(error) == (
        "line 1 (invoice INV-1) field lines[2].quantity: must be greater than 0 (got '-1')"
    )


def test_jsonl_duplicate_invoice_numbers_name_both_lines(tmp_path: Path) -> None:
    items = read(tmp_path, jsonl(neutral("INV-1"), neutral("INV-2"), neutral("INV-1")), "a.jsonl")
    assert [r.invoice.number for r in records(items)] == ["INV-1", "INV-2"]
    error = only_error(items)
    assert (error.line, error.invoice_number) == (3, "INV-1")
    assert error.message == "invoice INV-1 already appeared at line 1"


def test_jsonl_formulas_and_lone_surrogates_are_refused(tmp_path: Path) -> None:
    body = neutral(customer={"id": "C1", "first_name": "=cmd()"})
    line = jsonl(body) + '{"number": "INV-2\\ud800"}\n'
    items = read(tmp_path, line, "a.jsonl")
    formula, *others = errors(items)
    assert (formula.field, formula.line) == ("customer.first_name", 1)
    assert "spreadsheet formula" in formula.message
    assert any("lone surrogate" in e.message for e in others)
    for error in errors(items):
        str(error).encode("utf-8")  # printable: never crashes a log or terminal


def test_jsonl_amounts_too_large_to_total(tmp_path: Path) -> None:
    line = jsonl(neutral()).replace("1.49", "1e30").replace(": 10", ": 1e30")
    found = errors(read(tmp_path, line, "a.jsonl"))
    assert found and all("too large" in e.message for e in found)


def test_jsonl_errors_per_record_are_capped(tmp_path: Path) -> None:
    body = neutral(junk=["=x"] * 50)
    found = errors(read(tmp_path, jsonl(body), "a.jsonl"))
    assert len(found) == sources.MAX_ERRORS_PER_RECORD + 1
    assert "more problems" in found[-1].message


def test_jsonl_unknown_provider(tmp_path: Path) -> None:
    error = only_error(read(tmp_path, jsonl({"provider": "paypal", "x": 1}), "a.jsonl"))
    assert error.field == "provider"


MAAST_BODY: dict[str, object] = {
    "provider": "maast",
    "customer_id": "JOHNDOE",
    "invoice_number": "XYZ1234",
    "tran_currency": "840",
    "date_invoice": "2025-01-01T00:00:00.000Z",
    "sales_tax": {"type": "RATE", "value": 2.345},
    "payment_terms": {"type": "DAYS", "value": "10"},
    "line_items": [{"quantity": 10, "description": "Pencils", "unit_cost": 1.49}],
}
STAX_BODY: dict[str, object] = {
    "provider": "stax",
    "customer_id": "CUST0005",
    "url": "https://app.staxpayments.com/#/bill/",
    "total": 159.80,
    "meta": {
        "reference": "INV-S-5",
        "lineItems": [{"item": "Toner", "details": "Toner", "quantity": 2, "price": 79.90}],
        "subtotal": 159.80,
        "tax": 0,
    },
}


def _provider_module(name: str) -> ModuleType:
    module: ModuleType = pytest.importorskip(f"jobs.providers.{name}")
    if not hasattr(module, "invoice_from_request"):
        pytest.skip(f"jobs.providers.{name}.invoice_from_request not written yet")
    return module


@pytest.mark.parametrize(
    ("body", "provider", "number"),
    [(MAAST_BODY, Provider.MAAST, "XYZ1234"), (STAX_BODY, Provider.STAX, "INV-S-5")],
)
def test_jsonl_provider_bodies(
    tmp_path: Path, body: dict[str, object], provider: Provider, number: str
) -> None:
    _provider_module(provider.value)
    (record,) = records(read(tmp_path, jsonl(body), "a.jsonl"))
    assert (record.provider, record.invoice.number) == (provider, number)


@pytest.mark.parametrize("provider", ["maast", "stax"])
def test_jsonl_broken_provider_body_is_a_record_error(tmp_path: Path, provider: str) -> None:
    _provider_module(provider)
    for body in ({"provider": provider}, {"provider": provider, "meta": [], "line_items": 3}):
        items = read(tmp_path, jsonl(body, neutral()), "a.jsonl")
        assert len(records(items)) == 1 and errors(items)


def test_jsonl_duplicates_span_neutral_and_provider_bodies(tmp_path: Path) -> None:
    _provider_module("maast")
    items = read(tmp_path, jsonl(neutral("XYZ1234"), MAAST_BODY), "a.jsonl")
    assert "already appeared at line 1" in only_error(items).message


# --- streaming --------------------------------------------------------------------------------


class _Endless(io.RawIOBase):
    """A stream that never ends: a head, then generated rows forever."""

    def __init__(self, head: bytes, row: Callable[[int], bytes]) -> None:
        self._pending = head
        self._row = row
        self._count = 0
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while len(self._pending) < len(buffer):
            self._count += 1
            self._pending += self._row(self._count)
        size = len(buffer)
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        self.consumed += size
        return size


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_readers_yield_before_reading_the_whole_file(fmt: str) -> None:
    if fmt == "csv":
        raw = _Endless(HEADER.encode(), lambda n: f"INV-{n},C1,A,1,1.00\n".encode())
    else:
        raw = _Endless(b"", lambda n: jsonl(neutral(f"INV-{n}")).encode())
    items = read_stream(io.BufferedReader(raw), fmt="csv" if fmt == "csv" else "jsonl")
    assert isinstance(items, Iterator)
    first, second = next(items), next(items)
    assert isinstance(first, Record) and isinstance(second, Record)
    assert raw.consumed < 100_000


# --- hypothesis: nothing but SourceError ever escapes -----------------------------------------

_FRAGMENTS = st.sampled_from(
    [
        HEADER.encode(),
        b"INV-1,C1,A,1,1.00\n",
        b"INV-1,C2,B,2,2.00\n",
        b",,,\n",
        b'"',
        b"\r\n",
        b"\n",
        b"\x00",
        b"\xef\xbb\xbf",
        b"\xff",
        b"=1+1",
        b'{"number":"INV-1","customer":{"id":"C1"},"lines":[{"description":"x","quantity":1,"unit_price":1}]}\n',
        b'{"provider":"maast","invoice_number":"X"}\n',
        b'{"provider":"stax","meta":{"reference":"X"}}\n',
        b"[[[[",
        b"1e999999",
        b'"\\ud800"',
    ]
)
_HOSTILE = st.one_of(st.binary(max_size=400), st.lists(_FRAGMENTS, max_size=12).map(b"".join))


def _read_all(data: bytes, fmt: str) -> list[Item]:
    stream = io.BytesIO(data)
    try:
        items = list(read_stream(stream, fmt="csv" if fmt == "csv" else "jsonl", max_line_bytes=64))
    except SourceError as exc:
        str(exc).encode("utf-8")
        return []
    for item in items:
        assert isinstance(item, Record | RecordError)
        str(item).encode("utf-8")
        assert item.line >= 1
    return items


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_HOSTILE)
def test_arbitrary_bytes_never_crash_the_csv_reader(data: bytes) -> None:
    _read_all(data, "csv")
    _read_all(HEADER.encode() + data, "csv")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_HOSTILE)
def test_arbitrary_bytes_never_crash_the_jsonl_reader(data: bytes) -> None:
    _read_all(data, "jsonl")


# --- samples ----------------------------------------------------------------------------------


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_month_end", SAMPLES / "make_month_end.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_month_end_sample_is_what_the_generator_writes(tmp_path: Path) -> None:
    out = tmp_path / "month-end.csv"
    assert _generator().main(["--out", str(out)]) == 0
    assert out.read_bytes() == (SAMPLES / "month-end.csv").read_bytes()


def test_month_end_sample_has_994_valid_invoices_and_6_known_errors() -> None:
    items = list(read_invoices(SAMPLES / "month-end.csv"))
    valid = records(items)
    assert len(valid) == 994
    found = sorted((e.field or "", e.message.split(" (got")[0][:30]) for e in errors(items))
    assert [field for field, _ in found] == [
        "customer_id",
        "customer_id",
        "description",
        "invoice_date",
        "quantity",
        "unit_price",
    ]
    assert len({e.invoice_number for e in errors(items)}) == 6
    for record in valid:
        _assert_fits_both_providers(record)


def _assert_fits_both_providers(record: Record) -> None:
    invoice = record.invoice
    assert len(invoice.number) <= 25 and invoice.currency == "USD"
    assert invoice.customer.id.isalnum() and len(invoice.customer.id) <= 32
    assert invoice.customer.email and invoice.customer.first_name and invoice.customer.last_name
    for line in invoice.lines:
        assert line.quantity == line.quantity.to_integral_value() and 1 <= line.quantity <= 999
        assert line.unit_price.as_tuple().exponent == -2


def test_generator_writes_any_count_with_no_invalid(tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    assert _generator().main(["--count", "300", "--out", str(out), "--invalid", "0"]) == 0
    items = list(read_invoices(out))
    assert len(records(items)) == 300 and not errors(items)


@pytest.mark.parametrize(("name", "count"), [("small.csv", 5), ("small.jsonl", 5)])
def test_small_samples_are_valid(name: str, count: int) -> None:
    if name.endswith(".jsonl"):
        _provider_module("maast")
        _provider_module("stax")
    items = list(read_invoices(SAMPLES / name))
    assert not errors(items) and len(records(items)) == count
    if name.endswith(".jsonl"):
        assert [r.provider for r in records(items)][-2:] == [Provider.MAAST, Provider.STAX]


def test_provider_module_missing_is_a_record_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "jobs.providers.maast", None)  # import now fails
    error = only_error(read(tmp_path, jsonl(MAAST_BODY), "a.jsonl"))
    assert error.field == "provider"
    assert "needs jobs.providers.maast.invoice_from_request" in error.message


def test_unexpected_provider_mapper_failure_is_a_record_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(body: object) -> object:
        raise KeyError("meta\ud800")

    fake = ModuleType("jobs.providers.stax")
    fake.invoice_from_request = explode  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "jobs.providers.stax", fake)
    error = only_error(read(tmp_path, jsonl(STAX_BODY), "a.jsonl"))
    assert error.message.startswith("not a valid stax create body: ")
    str(error).encode("utf-8")


@pytest.mark.parametrize(
    ("fmt", "data"),
    [
        ("csv", b""),
        ("csv", b"invoice_number,customer_id,description,quantity,unit_price\n\n"),
        ("jsonl", b""),
        ("jsonl", b"\n   \n\r\n"),
    ],
)
def test_a_stream_without_records_is_a_source_error_in_both_formats(
    fmt: sources.Format, data: bytes
) -> None:
    with pytest.raises(SourceError, match=r"empty|no invoices"):
        list(sources.read_stream(io.BytesIO(data), fmt=fmt))


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("\u0663", "is not a plain decimal number"),  # ARABIC-INDIC DIGIT THREE: Decimal takes it
        ("\uff13", "is not a plain decimal number"),  # FULLWIDTH DIGIT THREE
        ("1234567890123456", "has too many digits: at most 15 before the decimal point"),
        ("1.12345678901", "has too many digits"),
        ("1e3", "is not a plain decimal number"),
    ],
)
def test_csv_numbers_are_ascii_plain_decimals_with_a_reason(cell: str, message: str) -> None:
    data = f"invoice_number,customer_id,description,quantity,unit_price\nI1,C,x,{cell},1.00\n"
    (error,) = list(sources.read_stream(io.BytesIO(data.encode()), fmt="csv"))
    assert isinstance(error, RecordError) and error.field == "quantity"
    assert message in error.message
