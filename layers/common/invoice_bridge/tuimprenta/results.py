"""The result CSV of a batch (DESIGN.md): `index,invoice_id,status,series,number,error_code,error_message`.

`index` is the 0-based position in the batch payload, `status` is `issued` or `failed`; rows come in any
order and fields may be quoted (commas, quotes and newlines inside messages).
"""

from __future__ import annotations

import csv
import io
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from invoice_bridge.config import describe_validation_error

HEADER = ("index", "invoice_id", "status", "series", "number", "error_code", "error_message")


class ResultFormatError(ValueError):
    """The CSV is not the documented one."""


class ResultRow(BaseModel):
    """One invoice's outcome in a batch."""

    model_config = ConfigDict(frozen=True)

    index: int = Field(ge=0)
    invoice_id: str | None = None
    status: Literal["issued", "failed"]
    series: str | None = None
    number: int | None = None
    error_code: str | None = None
    error_message: str | None = None


def parse_results(text: str) -> dict[int, ResultRow]:
    """Rows by payload index; ResultFormatError on another header, a bad row or an index given twice."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None:
        return {}
    missing = [name for name in HEADER if name not in reader.fieldnames]
    if missing:
        raise ResultFormatError(f"result CSV lacks column(s) {', '.join(missing)}")
    rows: dict[int, ResultRow] = {}
    for line, record in enumerate(reader, start=2):
        values = {name: (record.get(name) or None) for name in HEADER}
        try:
            row = ResultRow.model_validate(values)
        except ValidationError as exc:
            field, message = describe_validation_error(exc)
            raise ResultFormatError(f"result CSV record {line}: {field}: {message}") from None
        if row.index in rows:
            raise ResultFormatError(f"result CSV: index {row.index} appears twice")
        rows[row.index] = row
    return rows
