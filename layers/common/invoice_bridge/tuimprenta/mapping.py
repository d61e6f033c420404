"""BuildNexion `sales_invoice` → a tuimprenta payload invoice (the JSON text of one element of `payload`).

Money leaves as JSON numbers with the amount's own decimals, built from Decimal (never `cents * 0.01`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from invoice_bridge import taxid
from invoice_bridge.buildnexion.models import SalesInvoice, SalesInvoiceLine
from invoice_bridge.money import dumps, json_number, normalize, unit_price

BATCH_TYPE = "invoice.create"


def item(line: SalesInvoiceLine) -> dict[str, Any]:
    """One line as a payload item: `qty`, `unit_price` (currency units, at least two decimals), `tax_rate`."""
    document: dict[str, Any] = {}
    if line.sku:
        document["sku"] = line.sku
    document["description"] = line.description
    # Quantities and rates are not money: written without trailing zeros ("2.50" → 2.5, "0.080" → 0.08).
    document["qty"] = json_number(normalize(line.quantity))
    document["unit_price"] = json_number(unit_price(line.unit_amount, line.unit_amount_decimal), min_places=2)
    document["tax_rate"] = json_number(normalize(line.tax_rate))
    return document


def payload_invoice(invoice: SalesInvoice) -> dict[str, Any]:
    """The payload invoice of a sales invoice, `metadata.buildnexion_id` naming it."""
    # NFKC: a fiscal id typed in fullwidth characters is the same id in ASCII, as the platform must store it.
    customer: dict[str, Any] = {"name": invoice.customer.name, "tax_id": taxid.folded(invoice.customer.tax_id)}
    if invoice.customer.email:
        customer["email"] = invoice.customer.email
    return {
        "series": invoice.series,
        "issue_date": invoice.issue_date.isoformat(),
        "customer": customer,
        "items": [item(line) for line in invoice.lines],
        "currency": invoice.currency,
        "send_email": invoice.send_email,
        "metadata": {"buildnexion_id": invoice.id},
    }


def payload_text(invoice: SalesInvoice) -> str:
    """The payload invoice as compact JSON text (what the ledger keeps and the batch body repeats)."""
    return dumps(payload_invoice(invoice))


def batch_body(payloads: Sequence[str], callback_url: str | None) -> str:
    """`POST /batches` body from payload texts, byte for byte the same for the same texts."""
    body = '{"type":' + dumps(BATCH_TYPE) + ',"payload":[' + ",".join(payloads) + "]"
    if callback_url:
        body += ',"callback_url":' + dumps(callback_url)
    return body + "}"


def submission_key(members: Sequence[tuple[str, str]], attempt: int) -> str:
    """The Idempotency-Key of a batch: derived from its claimed set (ids and payloads, in order) and attempt.

    The same claim re-sent after a crash gets the same key (and tuimprenta the same batch back); a retry
    of a failed batch is a new attempt, so a new key.
    """
    digest = hashlib.sha256(f"attempt:{attempt}\n".encode())
    for object_id, payload in members:
        digest.update(f"{object_id}\n{hashlib.sha256(payload.encode('utf-8')).hexdigest()}\n".encode())
    return f"ib-batch-{digest.hexdigest()[:48]}"


def cancel_key(remote_id: str) -> str:
    """The Idempotency-Key of an invoice's cancel (one cancel per invoice, ever)."""
    return f"ib-cancel-{remote_id}"
