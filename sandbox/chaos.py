"""`make chaos`: the whole bundle under the faults real platforms have, checked end to end.

A seeded mix of supplier invoices (Quipu), sales invoices (tuimprenta) and purchase orders (FacturaDirecta)
with updates, voids and cancels; a tenth of the objects get two events swapped, a fifth of the events are
delivered twice (half of those at the same instant); every sandbox peer faults (LOCAL_FAULTS). Once the
stack settles, what each sandbox holds is compared with BuildNexion's latest objects (sandbox.chaos_check).

    .venv/bin/python -m sandbox.chaos --seed 7 [--invoices 60 --sales 80 --orders 60] [--faults SPEC|list]

The faults default to LOCAL_FAULTS, else DEFAULT_FAULTS: every named kind of sandbox.faults on. A document a
peer refused for good (FaultPlan.refused) is expected on its dead-letter queue with a reason. The checker
computes what each destination must hold from BuildNexion's objects and the platforms' references alone
(DESIGN.md); it imports nothing of the product.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from sandbox.buildnexion import BuildNexionPeer
from sandbox.chaos_check import ABSENT, OPTIONAL, REQUIRED, Expected, Findings, Held, Snapshot, check
from sandbox.dead_letters import drain_dead_letters
from sandbox.facturadirecta import FacturaDirectaPeer
from sandbox.faults import KINDS, FaultSettings, FaultSpecError, describe_kinds
from sandbox.quipu import QuipuPeer
from sandbox.stack import LocalStack, StackOptions
from sandbox.tuimprenta import TuimprentaPeer

# Every named kind on (all=), besides the random errors and hangs and the writes whose answer is lost.
DEFAULT_FAULTS = "error=0.1,hang=0.03,after_effect=0.5,all=0.05"
CENT = Decimal("0.01")
EPOCH = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
PROVIDERS = [
    ("prv_123", "B12345678", "Hormigones Muñoz, S.L."),
    ("prv_207", "A46000001", "Ferralla Levante, S.A."),
    ("prv_c301", "B46111222", "Áridos del Turia, S.L."),
    ("prv_c302", "B12999888", "Maquinaria Castellón, S.L."),
]
CUSTOMERS = [
    ("Inversiones ABC, C.A.", "J-12345678-9"),
    ("Constructora del Lago, C.A.", "J-30999888-1"),
    ("Promotora Andina, C.A.", "J-40111222-3"),
]
DESTINATIONS = ("quipu", "tuimprenta", "facturadirecta")


@dataclass
class Mix:
    """The objects' versions (oldest first) and the deliveries, in the order they are made."""

    versions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # (envelope, how): how is "once", "twice" (again later) or "together" (twice at the same instant)
    deliveries: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    swapped: int = 0

    def latest(self) -> list[dict[str, Any]]:
        """Every object as BuildNexion finally holds it."""
        return [chain[-1] for chain in self.versions.values()]


def _stamp(minutes: int) -> str:
    return (EPOCH + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cents(value: Decimal) -> int:
    return int((value * 100).quantize(Decimal(1), ROUND_HALF_UP))


def _invoice_totals(lines: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """BuildNexion's totals, computed as Quipu computes them (each sum rounded to cents once)."""
    base = sum((Decimal(ln["quantity"]) * ln["unit_amount"] / 100 for ln in lines), Decimal(0))
    vat = sum(Decimal(ln["quantity"]) * ln["unit_amount"] / 100 * Decimal(ln["vat_percent"]) / 100 for ln in lines)
    retention = sum(
        (Decimal(ln["quantity"]) * ln["unit_amount"] / 100 * Decimal(ln["retention_percent"]) / 100 for ln in lines),
        Decimal(0),
    )
    b, v, r = (x.quantize(CENT, ROUND_HALF_UP) for x in (base, Decimal(vat), retention))
    return {
        "subtotal_amount": _cents(b),
        "vat_amount": _cents(v),
        "retention_amount": _cents(r),
        "total_amount": _cents(b + v - r),
    }


def build_mix(seed: int, invoices: int, sales: int, orders: int) -> Mix:
    """The seeded mix of objects, events and deliveries."""
    rng = random.Random(f"chaos:{seed}")  # noqa: S311 - a reproducible workload, not a secret
    mix = Mix()
    chains: list[list[tuple[str, dict[str, Any]]]] = []  # per object: (event type, object version)
    clock = 0

    def tick() -> int:
        nonlocal clock
        clock += rng.randint(1, 30)
        return clock

    for n in range(invoices):
        provider = rng.choice(PROVIDERS)
        lines = [
            {
                "description": f"Partida {n}-{k}",
                "quantity": str(rng.choice([1, 2, 3, 12, 25])),
                "unit_amount": rng.randint(500, 90000),
                "vat_percent": rng.choice(["21", "10"]),
                "retention_percent": rng.choice(["0", "0", "15"]),
            }
            for k in range(rng.randint(1, 3))
        ]
        obj: dict[str, Any] = {
            "object": "invoice",
            "id": f"inv_c{n:03d}",
            "invoice_number": f"CH{seed}-{n + 1:04d}",
            "issue_date": (EPOCH.date() + timedelta(days=n % 20)).isoformat(),
            "due_date": (EPOCH.date() + timedelta(days=30 + n % 20)).isoformat(),
            "currency": "EUR",
            "provider_id": provider[0],
            "status": "open",
            "paid_at": None,
            "lines": lines,
            **_invoice_totals(lines),
            "updated_at": _stamp(tick()),
        }
        chain = [("invoice.created", obj)]
        if rng.random() < 0.5:
            changed = [dict(ln) for ln in lines] + [
                {
                    "description": f"Portes {n}",
                    "quantity": "1",
                    "unit_amount": rng.randint(1000, 20000),
                    "vat_percent": "21",
                    "retention_percent": "0",
                }
            ]
            changed[0]["quantity"] = str(int(str(changed[0]["quantity"])) + 1)
            chain.append(
                ("invoice.updated", {**obj, "lines": changed, **_invoice_totals(changed), "updated_at": _stamp(tick())})
            )
        if rng.random() < 0.25:
            chain.append(("invoice.voided", {**chain[-1][1], "status": "void", "updated_at": _stamp(tick())}))
        chains.append(chain)

    for n in range(sales):
        name, tax_id = rng.choice(CUSTOMERS)
        obj = {
            "object": "sales_invoice",
            "id": f"sin_c{n:03d}",
            "series": "CH",
            "issue_date": (EPOCH.date() + timedelta(days=n % 20)).isoformat(),
            "currency": "USD",
            "send_email": False,
            "status": "open",
            "customer": {"name": name, "tax_id": tax_id, "email": "admin@example.com"},
            "lines": [
                {
                    "sku": f"CERT-{n}-{k}",
                    "description": f"Certificación {n}-{k}",
                    "quantity": rng.choice(["1", "2", "2.5"]),
                    "unit_amount": rng.randint(10000, 900000),
                    "tax_rate": "0.16",
                }
                for k in range(rng.randint(1, 2))
            ],
            "updated_at": _stamp(tick()),
        }
        chain = [("sales_invoice.created", obj)]
        if rng.random() < 0.25:
            chain.append(("sales_invoice.canceled", {**obj, "status": "canceled", "updated_at": _stamp(tick())}))
        chains.append(chain)

    for n in range(orders):
        provider = rng.choice(PROVIDERS)
        lines = [
            {
                "product_code": f"P{n}{k}",
                "description": f"Material {n}-{k}",
                "quantity": str(rng.choice([1, 3, 10, 800])),
                "unit_amount": rng.randint(90, 50000),
                "vat_percent": rng.choice(["21", "10"]),
            }
            for k in range(rng.randint(1, 3))
        ]
        obj = {
            "object": "purchase_order",
            "id": f"po_c{n:03d}",
            "number": f"PO-CH{seed}-{n + 1:04d}",
            "date": (EPOCH.date() + timedelta(days=n % 20)).isoformat(),
            "provider_id": provider[0],
            "currency": "EUR",
            "status": "sent",
            "notes": f"Entrega {n}",
            "lines": lines,
            "updated_at": _stamp(tick()),
        }
        chain = [("purchase_order.created", obj)]
        if rng.random() < 0.5:
            changed = [*lines, {**lines[0], "product_code": f"X{n}", "description": f"Extra {n}", "quantity": "2"}]
            chain.append(
                (
                    "purchase_order.updated",
                    {**obj, "lines": changed, "notes": f"Entrega {n}, acceso norte", "updated_at": _stamp(tick())},
                )
            )
        if rng.random() < 0.25:
            chain.append(
                ("purchase_order.canceled", {**chain[-1][1], "status": "canceled", "updated_at": _stamp(tick())})
            )
        chains.append(chain)

    events: list[list[dict[str, Any]]] = []
    counter = 0
    for chain in chains:
        mix.versions[chain[0][1]["id"]] = [obj for _type, obj in chain]
        envelopes = []
        for event_type, version in chain:
            counter += 1
            created = int(datetime.fromisoformat(version["updated_at"].replace("Z", "+00:00")).timestamp())
            envelopes.append(
                {
                    "id": f"evt_chaos{seed}_{counter:05d}",
                    "type": event_type,
                    "created": created,
                    "data": {"object": version},
                }
            )
        events.append(envelopes)
    # A tenth of the objects get two of their events swapped (only objects with two or more events can).
    swappable = [i for i, envelopes in enumerate(events) if len(envelopes) > 1]
    for i in rng.sample(swappable, min(len(swappable), round(len(events) / 10))):
        j = rng.randrange(len(events[i]) - 1)
        events[i][j], events[i][j + 1] = events[i][j + 1], events[i][j]
        mix.swapped += 1
    # Interleave the objects: each object's events keep their (possibly swapped) order.
    queues = [list(envelopes) for envelopes in events]
    while any(queues):
        live = [q for q in queues if q]
        envelope = rng.choice(live).pop(0)
        pick = rng.random()
        how = "once" if pick >= 0.2 else ("together" if pick < 0.1 else "twice")
        mix.deliveries.append((envelope, how))
    return mix


# -- what BuildNexion says each destination must hold --------------------------------------------------


def plain(value: Decimal | int | str) -> Decimal:
    """A number without trailing zeros and never in exponent form (12.50 -> 12.5, 1E+2 -> 100)."""
    number = Decimal(str(value))
    return number.quantize(Decimal(1)) if number == number.to_integral_value() else number.normalize()


def line_price(line: Mapping[str, Any]) -> Decimal:
    """A line's unit price in currency units: BuildNexion's `unit_amount_decimal` (cents, sub-cent) wins."""
    cents = line.get("unit_amount_decimal")
    return plain(Decimal(str(cents if cents is not None else line["unit_amount"])) / 100)


def tag(object_id: str) -> str:
    """The tag a BuildNexion object's document carries in Quipu and FacturaDirecta (DESIGN.md): `bn:<id>`."""
    return f"bn:{object_id}"


def _quipu_items(lines: Sequence[Mapping[str, Any]]) -> tuple[Any, ...]:
    return tuple(
        (
            ln["description"],
            plain(ln["quantity"]),
            line_price(ln),
            plain(ln["vat_percent"]),
            plain(ln.get("retention_percent") or "0"),
        )
        for ln in lines
    )


def _sales_items(lines: Sequence[Mapping[str, Any]]) -> tuple[Any, ...]:
    return tuple((plain(ln["quantity"]), line_price(ln)) for ln in lines)


def order_totals(lines: Sequence[Mapping[str, Any]]) -> tuple[Decimal, Decimal, Decimal]:
    """(net, tax, gross) as the FacturaDirecta reference computes them from the lines.

    Each line's totalPrice rounded to its 2 decimals (lineTotalDecimals); netTotal their sum; each tax slot's
    base the sum of its lines, its total base x rate / 100; grossTotal netTotal plus the taxes.
    """
    net = Decimal(0)
    bases: dict[Decimal, Decimal] = {}
    for ln in lines:
        total = (Decimal(ln["quantity"]) * line_price(ln)).quantize(CENT, ROUND_HALF_UP)
        net += total
        rate = plain(ln["vat_percent"])
        bases[rate] = bases.get(rate, Decimal(0)) + total
    tax = sum(((base * rate / 100).quantize(CENT, ROUND_HALF_UP) for rate, base in bases.items()), Decimal(0))
    return plain(net), plain(tax), plain(net + tax)


def _order_content(order: Mapping[str, Any]) -> tuple[Any, ...]:
    lines = tuple(
        (
            ln.get("product_code"),
            ln["description"],
            plain(ln["quantity"]),
            line_price(ln),
            (plain(ln["vat_percent"]),),
        )
        for ln in order["lines"]
    )
    return (lines, order_totals(order["lines"]), order.get("notes") or "", str(order["date"]))


def expectations(objects: Sequence[Mapping[str, Any]], void_mode: str) -> list[Expected]:
    """What each destination must hold, from BuildNexion's latest objects (DESIGN.md's routing and choices)."""
    expected = []
    for obj in objects:
        kind, source_id = obj["object"], str(obj["id"])
        if kind == "invoice":
            voided = str(obj["status"]).lower() in {"void", "voided"}
            content = (obj["total_amount"], _quipu_items(obj["lines"]))
            if voided and void_mode == "delete":
                expected.append(Expected("quipu", source_id, content, "voided", ABSENT))
            else:
                # A void becomes one credit note for the whole invoice (DESIGN.md, the table at the top).
                expected.append(Expected("quipu", source_id, content, "credited" if voided else "open"))
        elif kind == "sales_invoice":
            canceled = obj["status"] == "canceled"
            expected.append(
                Expected(
                    "tuimprenta",
                    source_id,
                    _sales_items(obj["lines"]),
                    "canceled" if canceled else "issued",
                    OPTIONAL if canceled else REQUIRED,
                )
            )
        elif kind == "purchase_order":
            status = "canceled" if obj["status"] == "canceled" else "open"
            expected.append(Expected("facturadirecta", source_id, _order_content(obj), status))
    return expected


# -- what each sandbox holds ----------------------------------------------------------------------------


def tax_key(tax_id: str) -> str:
    """A Spanish tax id as one key however it is stored: capitals and digits only, without the ES prefix."""
    key = "".join(ch for ch in tax_id.upper() if ch.isalnum())
    return key[2:] if key.startswith("ES") and len(key) == 11 else key


def quipu_held(peer: QuipuPeer, number_to_id: Mapping[str, str]) -> tuple[list[Held], Counter[str]]:
    """Quipu's expense invoices (credit notes folded into their invoice's status) and contacts by tax id.

    An invoice is BuildNexion's by its `bn:<id>` tag, or failing that by its number.
    """
    with peer._lock:
        invoices = list(peer.invoices.values())
        contacts = Counter(tax_key(str(c.attributes.get("tax_id", ""))) for c in peer.contacts.values())
    by_tag = {tag(source): source for source in number_to_id.values()}
    held = []
    for invoice in invoices:
        if invoice.kind != "expenses" or invoice.amended_invoice_id:
            continue
        notes = [i for i in invoices if i.amended_invoice_id == invoice.id]
        if not notes:
            status = "open"
        elif len(notes) == 1 and notes[0].total_cents == -invoice.total_cents:
            status = "credited"
        else:
            status = f"{len(notes)} credit notes totalling {sum(n.total_cents for n in notes)}"
        items = tuple(
            (
                i.concept,
                plain(i.quantity),
                plain(i.unitary_amount),
                plain(i.vat_percent),
                plain(i.retention_percent),
            )
            for i in invoice.items
        )
        tags = [t.strip() for t in str(invoice.tags or "").split(",")]
        source = next((by_tag[t] for t in tags if t in by_tag), None)
        if source is None:
            source = number_to_id.get(invoice.number or "", f"number {invoice.number}")
        held.append(Held("quipu", source, (invoice.total_cents, items), status))
    return held, contacts


def tuimprenta_held(peer: TuimprentaPeer) -> list[Held]:
    """tuimprenta's fiscal invoices by the BuildNexion id in their metadata: two for one id is a duplicate.

    The reference's invoice statuses are issued, canceled and draft; a draft is no fiscal invoice.
    """
    with peer._lock:
        invoices = [i for i in peer.invoices.values() if i.status in {"issued", "canceled"}]
    return [
        Held(
            "tuimprenta",
            str((i.document.get("metadata") or {}).get("buildnexion_id")),
            tuple((plain(str(item["qty"])), plain(str(item["unit_price"]))) for item in i.document.get("items") or []),
            i.status,
        )
        for i in invoices
    ]


def facturadirecta_held(peer: FacturaDirectaPeer, tag_to_id: Mapping[str, str]) -> tuple[list[Held], Counter[str]]:
    """FacturaDirecta's purchase orders by their BuildNexion tag, and providers by tax code."""
    held = []
    with peer._lock:
        orders = list(peer.state.orders.values())
        providers = Counter(tax_key(p.get("taxCode", "")) for p in peer.state.providers.values())
    for order in orders:
        source = next((tag_to_id[t] for t in order.tags if t in tag_to_id), f"order {order.id} tags {order.tags}")
        lines = tuple(
            (
                ln.product_code,
                ln.description,
                plain(ln.quantity),
                plain(ln.unit_price),
                tuple(plain(order.taxes[s][1]) for s in sorted(ln.apply) if s in order.taxes),
            )
            for ln in order.lines
        )
        net, taxes, gross = order.totals()
        tax = sum((t for _b, t in taxes.values()), Decimal(0))
        content = (lines, (plain(net), plain(tax), plain(gross)), order.notes, order.document_date.isoformat())
        held.append(
            Held("facturadirecta", source, content, "canceled" if order.document_status == "canceled" else "open")
        )
    return held, providers


# -- the run --------------------------------------------------------------------------------------------


@dataclass
class ChaosResult:
    """The findings and the figures of one run."""

    findings: Findings
    seconds: float
    settled: bool
    deliveries: int
    injected: dict[str, Counter[str]]


def wait_settled(status: Callable[[], Mapping[str, Any]], timeout: float, quiet_polls: int = 5) -> bool:
    """Whether the stack reported idle `quiet_polls` times in a row within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        quiet = quiet + 1 if status()["idle"] else 0
        if quiet >= quiet_polls:
            return True
        time.sleep(0.5)  # poll interval of a bounded wait on the stack's own status
    return False


def publish(peer: BuildNexionPeer, mix: Mix, log: Callable[[str], None]) -> int:
    """Deliver the mix: BuildNexion holds each object's newest version made so far; duplicates as planned."""
    newest: dict[str, str] = {}
    later: list[dict[str, Any]] = []
    sent = 0

    def send(envelope: dict[str, Any]) -> None:
        for delivery in peer.deliver(envelope, store=False):
            if delivery.status != 200:
                log(f"delivery of {envelope['id']} answered {delivery.status}: {delivery.response}")

    for index, (envelope, how) in enumerate(mix.deliveries):
        obj = envelope["data"]["object"]
        if str(obj["updated_at"]) > newest.get(obj["id"], ""):
            peer.put_objects([obj])
            newest[obj["id"]] = str(obj["updated_at"])
        if how == "together":
            threads = [threading.Thread(target=send, args=(envelope,)) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            sent += 2
        else:
            send(envelope)
            sent += 1
            if how == "twice":
                later.append(envelope)
        if later and (index % 7 == 6 or index == len(mix.deliveries) - 1):
            for again in later:
                send(again)
                sent += 1
            later.clear()
    return sent


def run_chaos(
    *,
    seed: int,
    invoices: int,
    sales: int,
    orders: int,
    faults: str,
    settle_timeout: float,
    void_mode: str = "credit_note",
    root: Path | None = None,
    environ: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    out: Callable[[str], None] = print,
) -> ChaosResult:
    """Start the stack with faults, deliver the mix, wait for it to settle and check every sandbox."""
    mix = build_mix(seed, invoices, sales, orders)
    env = dict(os.environ if environ is None else environ)
    env.setdefault("LOCAL_SCHEDULE_SECONDS", "1")
    env.setdefault("TUIMPRENTA_PROCESSING_SECONDS", "1")
    spec = f"{faults},seed={seed}" if "seed=" not in faults else faults
    log_file = log_path.open("w", encoding="utf-8") if log_path else None

    def sink(function: str, line: str) -> None:
        if log_file:
            print(f"[{function}] {line}", file=log_file, flush=True)

    started = time.monotonic()
    options = StackOptions(
        port=0,
        environ=env,
        log_sink=sink,
        faults=spec,
        workers_per_queue=4,
        parameter_overrides={"QuipuVoidMode": void_mode},
    )
    if root is not None:
        options.root = root
    try:
        with LocalStack(options) as stack:
            bn: BuildNexionPeer = stack.peers["buildnexion"]
            quipu: QuipuPeer = stack.peers["quipu"]
            tuimprenta: TuimprentaPeer = stack.peers["tuimprenta"]
            facturadirecta: FacturaDirectaPeer = stack.peers["facturadirecta"]
            routing = ["invoice.created", "invoice.updated", "invoice.voided", "sales_invoice.created"]
            routing += ["sales_invoice.canceled", "purchase_order.created", "purchase_order.updated"]
            bn.subscribe(f"{stack.url}/webhooks/buildnexion", [*routing, "purchase_order.canceled"])
            bn.put_objects(
                [
                    {
                        "object": "provider",
                        "id": pid,
                        "name": name,
                        "nif": nif,
                        "email": "facturas@example.es",
                        "phone": "960000000",
                        "address": "Calle Mayor 1",
                        "town": "Valencia",
                        "zip_code": "46001",
                        "country_code": "ES",
                    }
                    for pid, nif, name in PROVIDERS
                ]
            )
            out(
                f"chaos seed {seed}: {invoices} supplier invoices, {sales} sales invoices, {orders} purchase orders; "
                f"{len(mix.deliveries)} events, {mix.swapped} objects with two events swapped, "
                f"{sum(1 for _e, how in mix.deliveries if how != 'once')} delivered twice; faults {spec}"
            )
            force_each_kind(stack.peers)
            deliveries = publish(bn, mix, out)
            out(f"delivered {deliveries} webhooks in {time.monotonic() - started:.0f} s; waiting for the stack")
            settled = wait_settled(stack.status, settle_timeout)
            status = stack.status()
            latest = mix.latest()
            number_to_id = {o["invoice_number"]: o["id"] for o in latest if o["object"] == "invoice"}
            tag_to_id = {tag(o["id"]): o["id"] for o in latest if o["object"] == "purchase_order"}
            quipu_docs, contacts = quipu_held(quipu, number_to_id)
            fd_docs, providers = facturadirecta_held(facturadirecta, tag_to_id)
            snapshot = Snapshot(
                held=[*quipu_docs, *tuimprenta_held(tuimprenta), *fd_docs],
                parties={"quipu": contacts, "facturadirecta": providers},
                dead_letters=drain_dead_letters(stack),
                refused={name: dict(stack.peers[name].faults.refused) for name in DESTINATIONS},
            )
            findings = check(expectations(latest, void_mode), snapshot)
            if not settled:
                findings.lost.append(f"the stack did not settle within {settle_timeout:.0f} s: {status}")
            injected = {name: peer.faults.injected for name, peer in stack.peers.items()}
    finally:
        if log_file:
            log_file.close()
    return ChaosResult(findings, time.monotonic() - started, settled, deliveries, injected)


def main(argv: Sequence[str] | None = None) -> int:
    """`make chaos`."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--invoices", type=int, default=60, help="supplier invoices (Quipu)")
    parser.add_argument("--sales", type=int, default=80, help="sales invoices (tuimprenta)")
    parser.add_argument("--orders", type=int, default=60, help="purchase orders (FacturaDirecta)")
    parser.add_argument(
        "--faults",
        default=os.environ.get("LOCAL_FAULTS") or DEFAULT_FAULTS,
        help=f"LOCAL_FAULTS spec (default: LOCAL_FAULTS, else {DEFAULT_FAULTS}); 'list' prints every kind",
    )
    parser.add_argument("--void-mode", choices=["credit_note", "delete"], default="credit_note")
    parser.add_argument("--settle-timeout", type=float, default=1500.0, help="seconds to wait for the stack")
    args = parser.parse_args(argv)
    if args.faults.strip() == "list":
        print(describe_kinds())
        return 0
    try:
        settings = FaultSettings.parse(args.faults)
    except FaultSpecError as exc:
        parser.error(f"--faults: {exc}")
    log_dir = Path(__file__).resolve().parent.parent / ".local"
    log_dir.mkdir(exist_ok=True)
    log_path = log_dir / f"chaos-seed{args.seed}-{os.getpid()}.log"
    print(f"function logs: {log_path}", flush=True)
    result = run_chaos(
        seed=args.seed,
        invoices=args.invoices,
        sales=args.sales,
        orders=args.orders,
        faults=args.faults,
        settle_timeout=args.settle_timeout,
        void_mode=args.void_mode,
        log_path=log_path,
        out=lambda line: print(line, flush=True),
    )
    for name, injected in sorted(result.injected.items()):
        print(f"  {name:15} faults injected: {dict(sorted(injected.items())) or 'none'}")
    print(f"  named kinds on but never drawn: {', '.join(undrawn_kinds(settings, result.injected)) or 'none'}")
    print(result.findings.report())
    print(f"{'PASS' if result.findings.ok else 'FAIL'} in {result.seconds:.0f} s", flush=True)
    return 0 if result.findings.ok else 1


def force_each_kind(peers: Mapping[str, Any]) -> None:
    """Make every named kind that is on happen at its first occasion in each peer that plays it.

    A run has few occasions for some kinds (a tuimprenta result download happens once a batch): at a 5 % share
    they would rarely be drawn, and a run that never played a kind proves nothing about it.
    """
    for name, peer in peers.items():
        for kind, (players, _description) in KINDS.items():
            if name in players and peer.faults.settings.share(kind) > 0:
                peer.faults.force(kind)


def undrawn_kinds(settings: FaultSettings, injected: Mapping[str, Counter[str]]) -> list[str]:
    """The named kinds the spec turns on that no peer played in this run (too few occasions, or not played)."""
    drawn = {kind for counts in injected.values() for kind, n in counts.items() if n}
    return [kind for kind, _share in settings.kinds if kind in KINDS and kind not in drawn]


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    code = main()
    sys.stdout.flush()
    os._exit(code)  # the stack has stopped; skip moto's slow teardown at exit
