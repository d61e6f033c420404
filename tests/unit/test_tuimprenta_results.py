"""The result CSV: rows in any order, quoted fields with commas, quotes and newlines."""

from __future__ import annotations

import csv
import io
import random

import pytest

from invoice_bridge.tuimprenta.results import HEADER, ResultFormatError, parse_results


def csv_text(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(HEADER), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def test_rows_in_any_order_are_keyed_by_their_payload_index() -> None:
    rows = [
        {"index": str(i), "invoice_id": f"inv_{i}", "status": "issued", "series": "TD", "number": str(100 + i)}
        for i in range(50)
    ]
    random.Random(7).shuffle(rows)  # noqa: S311 - a shuffle, not cryptography
    parsed = parse_results(csv_text(rows))
    assert sorted(parsed) == list(range(50))
    assert parsed[17].invoice_id == "inv_17"
    assert parsed[17].number == 117


def test_quoted_messages_with_commas_quotes_and_newlines() -> None:
    message = 'El campo "tax_id" es requerido,\nrevise el cliente, por favor'
    text = csv_text(
        [
            {"index": "1", "status": "failed", "error_code": "E1001", "error_message": message},
            {"index": "0", "invoice_id": "inv_a", "status": "issued", "series": "TD, 2025", "number": "7"},
        ]
    )
    parsed = parse_results(text)
    assert parsed[1].error_message == message
    assert parsed[1].error_code == "E1001"
    assert parsed[1].invoice_id is None
    assert parsed[0].series == "TD, 2025"


def test_columns_in_another_order_are_read_by_name() -> None:
    text = "status,index,error_message,invoice_id,series,number,error_code\nissued,0,,inv_1,TD,1,\n"
    assert parse_results(text)[0].invoice_id == "inv_1"


def test_an_empty_result_has_no_rows() -> None:
    assert parse_results("") == {}
    assert parse_results(",".join(HEADER) + "\n") == {}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("index,invoice_id,status\n0,inv_1,issued\n", "lacks column"),
        (",".join(HEADER) + "\n0,inv_1,issued,TD,1,,\n0,inv_2,issued,TD,2,,\n", "appears twice"),
        (",".join(HEADER) + "\n0,inv_1,done,TD,1,,\n", "status"),
        (",".join(HEADER) + "\n-1,inv_1,issued,TD,1,,\n", "index"),
    ],
)
def test_a_result_that_is_not_the_documented_one_is_refused(text: str, problem: str) -> None:
    with pytest.raises(ResultFormatError, match=problem):
        parse_results(text)


def test_a_line_break_inside_a_quoted_message_is_kept_as_sent() -> None:
    text = csv_text([{"index": "0", "status": "failed", "error_code": "E1", "error_message": "línea 1\r\nlínea 2"}])
    assert parse_results(text)[0].error_message == "línea 1\r\nlínea 2"


def test_refusals_name_the_missing_columns_and_the_record_line() -> None:
    with pytest.raises(ResultFormatError) as missing:
        parse_results("index,invoice_id,status\n0,inv_1,issued\n")
    assert str(missing.value) == "result CSV lacks column(s) series, number, error_code, error_message"
    # the header is line 1: the second record is line 3
    with pytest.raises(ResultFormatError) as bad:
        parse_results(",".join(HEADER) + "\n0,inv_1,issued,TD,1,,\n1,inv_2,done,TD,2,,\n")
    assert str(bad.value).startswith("result CSV record 3: status:")
