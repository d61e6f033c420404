"""Tax ids compared as people and platforms write them: NFKC-normalised, one canonical form, and its ES variants.

A supplier's NIF reaches us as BuildNexion holds it (`B12345678`, `b-12345678`, or typed on a phone keyboard as
in fullwidth characters, U+FF22 U+FF11 ...) and is held by a platform either bare or with the `ES` VAT prefix
(`ESB12345678`, as Quipu's own examples store it). Every platform compares and searches through this module.
"""

from __future__ import annotations

import unicodedata

SPANISH_PREFIX = "ES"
# A Spanish NIF, NIE or CIF has nine characters: "ES" in front of something longer is the VAT prefix, while a
# nine-character id that starts with "ES" is a whole identifier.
NIF_LENGTH = 9


def folded(tax_id: str) -> str:
    """The id as written, NFKC-folded (fullwidth characters become ASCII) and trimmed: for platforms that store it."""
    return unicodedata.normalize("NFKC", tax_id).strip()


def normalise(tax_id: str) -> str:
    """The canonical form: NFKC (fullwidth digits and letters become ASCII), upper case, no separators, no `ES`."""
    cleaned = "".join(ch for ch in folded(tax_id).upper() if ch.isalnum())
    if cleaned.startswith(SPANISH_PREFIX) and len(cleaned) > NIF_LENGTH:
        return cleaned[len(SPANISH_PREFIX) :]
    return cleaned


def variants(tax_id: str) -> tuple[str, ...]:
    """The forms a platform may hold it in, bare first: ("B12345678", "ESB12345678"); none for a blank id."""
    bare = normalise(tax_id)
    if not bare:
        return ()
    return (bare, SPANISH_PREFIX + bare)
