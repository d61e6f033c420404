"""Every AWS client a function builds fails fast: short timeouts and a bounded, standard retry."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from invoice_bridge.aws import AwsClients


@pytest.mark.parametrize("service", ["sqs", "dynamodb", "secretsmanager"])
def test_each_client_times_out_in_seconds_and_tries_a_call_twice_at_most(service: str) -> None:
    # Given clients built from one session (building one opens no connection)
    clients = AwsClients(boto3.session.Session(region_name="eu-west-1"))
    # When the function asks for one
    client: Any = getattr(clients, service)()
    # Then it is that service's client with the 2 s connect, 4 s read, 2 standard attempts config
    config = client.meta.config
    assert client.meta.service_model.service_name == service
    assert (config.connect_timeout, config.read_timeout) == (2, 4)
    assert config.retries == {"mode": "standard", "total_max_attempts": 2}
