"""The local stack's usage meter: billed units per AWS call, as AWS bills them."""

from __future__ import annotations

from sandbox.usage import FunctionUsage, InvocationUsage, dynamodb_item_size, request_units


def test_a_put_is_one_write_unit_per_started_kilobyte() -> None:
    small = {"pk": {"S": "ledger#quipu"}, "sk": {"S": "object#inv_1"}}
    large = {**small, "details": {"S": "x" * 1500}}
    assert request_units("dynamodb", "PutItem", {"Item": small}, {}) == {"dynamodb:write": 1.0}
    assert request_units("dynamodb", "PutItem", {"Item": large}, {}) == {"dynamodb:write": 2.0}
    assert dynamodb_item_size(small) == len("pk") + len("ledger#quipu") + len("sk") + len("object#inv_1")


def test_reads_are_half_a_unit_unless_strongly_consistent() -> None:
    item = {"pk": {"S": "a"}}
    assert request_units("dynamodb", "GetItem", {}, {"Item": item}) == {"dynamodb:read": 0.5}
    assert request_units("dynamodb", "GetItem", {"ConsistentRead": True}, {"Item": item}) == {"dynamodb:read": 1.0}
    many = {"Items": [{"pk": {"S": "y" * 3000}}, {"pk": {"S": "z" * 3000}}]}
    assert request_units("dynamodb", "Query", {"ConsistentRead": True}, many) == {"dynamodb:read": 2.0}


def test_sqs_requests_are_counted_in_64_kb_chunks_by_queue_kind() -> None:
    fifo = {"QueueUrl": "https://sqs/q.fifo", "MessageBody": "x" * (70 * 1024)}
    assert request_units("sqs", "SendMessage", fifo, {}) == {"sqs:fifo": 2.0}
    assert request_units("sqs", "SendMessage", {"QueueUrl": "https://sqs/q", "MessageBody": "{}"}, {}) == {
        "sqs:standard": 1.0
    }


def test_billed_duration_rounds_up_and_includes_init_on_a_cold_start() -> None:
    usage = FunctionUsage(memory_mb=512)
    usage.add(InvocationUsage(duration_ms=10.2, init_ms=300.1, max_rss_kb=90_000))
    usage.add(InvocationUsage(duration_ms=4.01, max_rss_kb=95_000))
    assert usage.billed_ms == 311 + 5
    assert usage.cold_starts == 1
    assert usage.max_rss_kb == 95_000
    assert usage.gb_seconds == 316 / 1000 / 2
