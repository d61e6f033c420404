"""Money and dates: integer cents and `Decimal` in, exact decimal strings and JSON numbers out; never float."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any


class AmountError(ValueError):
    """An amount that cannot go out: not finite, or beyond the digit bounds."""


CENT = Decimal("0.01")
HUNDRED = Decimal(100)
# What an amount, quantity or rate may look like on its way out: the boundary models allow less, and these
# keep any other caller from writing a 10,001-character number or overflowing a quantize.
MAX_INTEGER_DIGITS = 18
MAX_PLACES = 12


def _checked(value: Decimal) -> Decimal:
    """`value` if finite and within the digit bounds, with a zero's sign dropped ("-0" never goes out)."""
    if not value.is_finite():
        raise AmountError(f"not a finite amount: {value}")
    if value.is_zero():
        return value.copy_abs()
    if value.adjusted() >= MAX_INTEGER_DIGITS:
        raise AmountError(f"amount has more than {MAX_INTEGER_DIGITS} integer digits")
    if -int(value.normalize().as_tuple().exponent) > MAX_PLACES:
        raise AmountError(f"amount has more than {MAX_PLACES} decimals")
    return value


def cents_to_decimal(cents: int) -> Decimal:
    """12345 → Decimal('123.45'): always two decimals, exact."""
    if isinstance(cents, bool) or not isinstance(cents, int):
        raise TypeError(f"cents must be an int, not {type(cents).__name__}")
    return _checked(Decimal(cents) / HUNDRED).quantize(CENT)


def unit_price(unit_amount: int, unit_amount_decimal: Decimal | None = None) -> Decimal:
    """A unit price in currency units: the sub-cent `unit_amount_decimal` (cents, e.g. 903.8) when given."""
    if unit_amount_decimal is not None:
        return normalize(unit_amount_decimal / HUNDRED, min_places=2)
    return cents_to_decimal(unit_amount)


def decimal_to_cents(amount: Decimal) -> int:
    """Decimal('123.456') → 12346 (half up, as invoices round)."""
    return int((_checked(amount) * HUNDRED).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def normalize(value: Decimal, min_places: int = 0) -> Decimal:
    """`value` without trailing zeros, but with at least `min_places` decimals (12.50 → 12.5; 3 → 3)."""
    value = _checked(value)
    exponent = int(value.normalize().as_tuple().exponent)
    places = max(min_places, -exponent if exponent < 0 else 0)
    return value.quantize(Decimal(1).scaleb(-places))


def decimal_string(value: Decimal, min_places: int = 0) -> str:
    """The plain decimal text of `value` (never exponent notation): Decimal('1E+2') → '100'."""
    return f"{normalize(value, min_places):f}"


class RawNumber(str):
    """Text that `dumps` writes as a bare JSON number."""

    __slots__ = ()


def json_number(value: Decimal | int, min_places: int = 0) -> RawNumber:
    """A Decimal as a JSON number with exactly its own decimals: Decimal('0.10') → 0.10, never 0.1000000001."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not an amount")
    if isinstance(value, int):
        value = Decimal(value)
    value = _checked(value)
    places = max(min_places, -int(value.as_tuple().exponent))
    if places > MAX_PLACES:
        # Only trailing zeros lie past MAX_PLACES (_checked saw to that): dropping them loses nothing.
        places = max(min_places, -int(value.normalize().as_tuple().exponent))
    return RawNumber(f"{value.quantize(Decimal(1).scaleb(-places)):f}")


def _encode(value: Any) -> Iterator[str]:
    if isinstance(value, RawNumber):
        yield str(value)
    elif isinstance(value, Decimal):
        yield json_number(value)
    elif isinstance(value, dict):
        yield "{"
        for index, (key, item) in enumerate(value.items()):
            yield ("," if index else "") + json.dumps(str(key), ensure_ascii=False) + ":"
            yield from _encode(item)
        yield "}"
    elif isinstance(value, list | tuple):
        yield "["
        for index, item in enumerate(value):
            if index:
                yield ","
            yield from _encode(item)
        yield "]"
    elif isinstance(value, float):
        raise TypeError("floats are not allowed in money documents; use Decimal or json_number")
    else:
        yield json.dumps(value, ensure_ascii=False)


def dumps(document: Any) -> str:
    """Compact JSON text of `document` where Decimal and RawNumber values are bare numbers with their exact digits."""
    return "".join(_encode(document))


def yyyymmdd(day: date) -> str:
    """FacturaDirecta's dates: 2026-11-02 → '20261102'."""
    return day.strftime("%Y%m%d")


def parse_yyyymmdd(text: str) -> date:
    """'20261102' → date(2026, 11, 2); ValueError on anything else."""
    if len(text) != 8 or not text.isdigit():
        raise ValueError(f"not an AAAAMMDD date: {text!r}")
    return date(int(text[:4]), int(text[4:6]), int(text[6:]))
