"""The local stack's wiring for the poller: the callback URL on the local gateway, the drained queue counted."""

from __future__ import annotations

from invoice_bridge.http import retry_after_seconds
from sandbox.stack import drained_queue, localize_api_urls
from tests.unit.test_template import TEMPLATE


def test_the_callback_url_resolves_to_the_local_gateway() -> None:
    (spec,) = [f for f in TEMPLATE.functions if f.logical_id == "TuimprentaPollerFunction"]
    localized = localize_api_urls(spec.environment, {"WebhookApi"}, "http://127.0.0.1:3000")
    assert localized["TUIMPRENTA_CALLBACK_URL"] == {"Fn::Sub": "http://127.0.0.1:3000/webhooks/tuimprenta"}
    assert localized["STATE_TABLE_NAME"] == spec.environment["STATE_TABLE_NAME"]


def test_api_urls_inside_lists_are_localized_too() -> None:
    url = {"Fn::Sub": "https://${WebhookApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/hooks"}
    localized = localize_api_urls({"URLS": [url, "plain"]}, {"WebhookApi"}, "http://127.0.0.1:3000")
    assert localized == {"URLS": [{"Fn::Sub": "http://127.0.0.1:3000/hooks"}, "plain"]}


def test_the_poller_names_the_queue_it_drains() -> None:
    assert drained_queue(TEMPLATE.resources["TuimprentaPollerFunction"]) == "TuimprentaQueue"
    assert drained_queue(TEMPLATE.resources["WebhookReceiverFunction"]) is None
    # A hint that is not a queue's logical id (a Ref written as a mapping) is not followed
    assert drained_queue({"Metadata": {"InvoiceBridge": {"DrainsQueue": {"Ref": "TuimprentaQueue"}}}}) is None


def test_a_rate_limit_reset_is_a_wait_only_on_a_rate_limited_answer() -> None:
    headers = {"X-RateLimit-Remaining": "58", "X-RateLimit-Reset": "60"}
    assert retry_after_seconds(headers, 0.0) == 60
    assert retry_after_seconds(headers, 0.0, rate_limited=False) is None
    assert retry_after_seconds({**headers, "Retry-After": "2"}, 0.0, rate_limited=False) == 2
