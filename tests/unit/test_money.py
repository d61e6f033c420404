"""Money and dates: exact decimal text and JSON numbers from cents and Decimal, never through float."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest

from invoice_bridge import money


@pytest.mark.parametrize(
    ("cents", "text"),
    [(0, "0.00"), (1, "0.01"), (10, "0.10"), (1999, "19.99"), (100, "1.00"), (-250, "-2.50"), (1000001, "10000.01")],
)
def test_cents_become_exact_two_decimal_amounts(cents: int, text: str) -> None:
    assert str(money.cents_to_decimal(cents)) == text


@pytest.mark.parametrize(("bad", "kind"), [(1.5, "float"), ("12", "str"), (True, "bool"), (None, "NoneType")])
def test_cents_must_be_an_integer_and_the_error_names_what_came(bad: object, kind: str) -> None:
    with pytest.raises(TypeError, match=f"^cents must be an int, not {kind}$"):
        money.cents_to_decimal(bad)  # type: ignore[arg-type]


def test_sub_cent_unit_price_keeps_its_digits() -> None:
    # "903.8" cents is 9.038 currency units; the rounded unit_amount is ignored when the decimal is given.
    assert money.unit_price(904, Decimal("903.8")) == Decimal("9.038")
    assert str(money.unit_price(904, Decimal("903.8"))) == "9.038"
    assert str(money.unit_price(904, Decimal("900"))) == "9.00"
    assert str(money.unit_price(8450)) == "84.50"


def test_tenth_plus_two_tenths_is_three_tenths() -> None:
    total = money.cents_to_decimal(10) + money.cents_to_decimal(20)
    assert money.decimal_string(total) == "0.3"
    assert money.decimal_to_cents(total) == 30


@pytest.mark.parametrize(
    ("value", "places", "text"),
    [
        ("12.50", 0, "12.5"),
        ("12.50", 2, "12.50"),
        ("3", 0, "3"),
        ("3", 2, "3.00"),
        ("1E+2", 0, "100"),
        ("0.000", 0, "0"),
        ("12.345", 2, "12.345"),
        ("-0.5", 0, "-0.5"),
    ],
)
def test_decimal_strings_are_plain_and_trimmed(value: str, places: int, text: str) -> None:
    assert money.decimal_string(Decimal(value), places) == text


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_amounts_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="not a finite amount"):
        money.decimal_string(Decimal(value))


@pytest.mark.parametrize(("amount", "cents"), [("1.005", 101), ("1.004", 100), ("-1.005", -101), ("2.5", 250)])
def test_decimal_to_cents_rounds_half_up(amount: str, cents: int) -> None:
    assert money.decimal_to_cents(Decimal(amount)) == cents


@pytest.mark.parametrize(
    ("cents", "text"),
    [(1999, "19.99"), (10, "0.10"), (3, "0.03"), (1000001, "10000.01"), (100, "1.00")],
)
def test_json_numbers_carry_the_amount_s_own_decimals(cents: int, text: str) -> None:
    document = {"unit_price": money.json_number(money.cents_to_decimal(cents))}
    assert money.dumps(document) == '{"unit_price":' + text + "}"
    assert json.loads(money.dumps(document), parse_float=Decimal)["unit_price"] == Decimal(text)


def test_dumps_writes_decimals_bare_and_everything_else_as_json() -> None:
    document = {
        "a": Decimal("0.30"),
        "b": [1, 'x"y', None, True, money.json_number(5)],
        "ñ": {"nested": money.json_number(Decimal("2.50"), 2)},
        "t": ("tuple",),
    }
    text = money.dumps(document)
    assert text == '{"a":0.30,"b":[1,"x\\"y",null,true,5],"ñ":{"nested":2.50},"t":["tuple"]}'


def test_json_number_pads_to_min_places_and_refuses_what_is_not_an_amount() -> None:
    assert money.json_number(Decimal("3"), 2) == "3.00"
    assert money.json_number(Decimal("3.125"), 2) == "3.125"
    assert money.json_number(7) == "7"
    with pytest.raises(TypeError, match=r"^a boolean is not an amount$"):
        money.json_number(True)
    with pytest.raises(ValueError, match="not a finite amount"):
        money.json_number(Decimal("NaN"))


def test_dumps_refuses_floats() -> None:
    with pytest.raises(TypeError, match=r"^floats are not allowed in money documents; use Decimal or json_number$"):
        money.dumps({"total": 0.1})


def test_yyyymmdd_round_trip() -> None:
    assert money.yyyymmdd(date(2026, 11, 2)) == "20261102"
    assert money.parse_yyyymmdd("20261102") == date(2026, 11, 2)


@pytest.mark.parametrize("bad", ["2026-11-02", "2026110", "202611021", "2026 1 2", "abcdefgh", ""])
def test_parse_yyyymmdd_refuses_other_text(bad: str) -> None:
    # "2026 1 2" and "202611021" would make a date if only the length or only the digits were checked
    with pytest.raises(ValueError, match=f"not an AAAAMMDD date: {bad!r}"):
        money.parse_yyyymmdd(bad)


def test_parse_yyyymmdd_refuses_a_month_that_does_not_exist() -> None:
    with pytest.raises(ValueError, match=r"month must be in 1\.\.12"):
        money.parse_yyyymmdd("20261302")


def test_dumps_writes_text_as_it_is_not_as_escapes() -> None:
    assert money.dumps({"name": "Hormigón Ñ"}) == '{"name":"Hormigón Ñ"}'
