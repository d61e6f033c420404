"""Tax ids: one canonical form whatever the keyboard (NFKC), and the forms a platform may hold it in."""

from __future__ import annotations

import pytest

from invoice_bridge.taxid import normalise, variants

FULLWIDTH_NIF = "\uff22\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18"  # B12345678 typed in fullwidth


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("B12345678", "B12345678"),
        (FULLWIDTH_NIF, "B12345678"),  # NFKC: fullwidth letters and digits are the ASCII ones
        ("\uff25\uff33" + FULLWIDTH_NIF, "B12345678"),  # fullwidth, with the ES prefix
        ("b-12.345.678", "B12345678"),
        (" esb12345678 ", "B12345678"),
        ("ESB8503347", "B8503347"),  # ten characters: still a prefix
        ("ES1234567", "ES1234567"),  # nine: a whole identifier that starts with ES
        ("FR12345678901", "FR12345678901"),  # another country's prefix is kept
        ("B\u200b12345678", "B12345678"),  # a zero-width space pasted in
        (" - . ", ""),
    ],
)
def test_normalise_gives_one_form_however_the_id_was_typed(written: str, canonical: str) -> None:
    assert normalise(written) == canonical


def test_variants_are_the_bare_form_then_the_es_prefixed_one() -> None:
    assert variants("B12345678") == ("B12345678", "ESB12345678")
    assert variants("ESB12345678") == variants(FULLWIDTH_NIF) == ("B12345678", "ESB12345678")


def test_a_blank_id_has_no_variants() -> None:
    assert variants("  -  ") == ()
