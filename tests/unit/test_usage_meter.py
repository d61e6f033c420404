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


def test_a_query_is_billed_for_every_item_it_reads_not_only_those_its_filter_returns() -> None:
    from sandbox.usage import FILTERED_ITEM_BYTES

    one = {"pk": {"S": "p" * 48}, "sk": {"S": "s" * 48}}  # 2 + 48 + 2 + 48 = 100 bytes
    # 41 items read, 1 returned: 41 x 100 = 4,100 bytes = 2 started 4 KB blocks, eventually consistent: 1.0
    assert request_units("dynamodb", "Query", {}, {"Items": [one], "Count": 1, "ScannedCount": 41}) == {
        "dynamodb:read": 1.0
    }
    # none returned: each read item is assumed FILTERED_ITEM_BYTES (512): 17 x 512 = 8,704 bytes = 3 blocks
    assert FILTERED_ITEM_BYTES * 17 == 8704
    assert request_units("dynamodb", "Query", {"ConsistentRead": True}, {"Items": [], "ScannedCount": 17}) == {
        "dynamodb:read": 3.0
    }


def test_a_platform_request_counts_its_line_headers_and_body_as_data_out() -> None:
    import requests

    from sandbox.usage import request_bytes

    prepared = requests.Request("POST", "https://api.example.com/v1/x", data=b"12345", headers={"A": "b"}).prepare()
    expected_line = len("POST https://api.example.com/v1/x HTTP/1.1\r\n")
    expected_headers = sum(len(f"{k}: {v}\r\n") for k, v in prepared.headers.items()) + 2
    assert request_bytes(prepared) == expected_line + expected_headers + 5
