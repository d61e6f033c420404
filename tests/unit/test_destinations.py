"""The registry of destinations names what the template, the settings and BuildNexion really hold."""

from __future__ import annotations

import pytest

from invoice_bridge.config import DEFAULT_ROUTING, DESTINATION_OBJECTS, ReceiverSettings
from invoice_bridge.destinations import PLATFORMS, Destination, Platform
from ops.commands import SECRET_FIELDS
from ops.target import COLLECTIONS, ID_PREFIXES, QUEUE_LOGICAL_IDS, QUEUE_OUTPUTS
from sandbox.buildnexion import COLLECTIONS as BUILDNEXION_COLLECTIONS
from sandbox.cfn import Template
from sandbox.demo import DESTINATION_QUEUES
from sandbox.settings import API_URL_PARAMETERS
from tests.conftest import ROOT

TEMPLATE = Template.load(ROOT / "template.yaml")
TEMPLATE_TEXT = (ROOT / "template.yaml").read_text(encoding="utf-8")


def test_every_destination_is_declared_once() -> None:
    assert list(PLATFORMS) == list(Destination)
    assert all(p.destination is d for d, p in PLATFORMS.items())


@pytest.mark.parametrize("platform", PLATFORMS.values(), ids=lambda p: p.destination.value)
def test_the_template_holds_each_name_the_registry_gives(platform: Platform) -> None:
    assert TEMPLATE.resources[platform.queue_logical_id]["Type"] == "AWS::SQS::Queue"
    assert TEMPLATE.resources[platform.secret_logical_id]["Type"] == "AWS::SecretsManager::Secret"
    assert set(platform.queue_outputs) <= set(TEMPLATE.document["Outputs"])
    assert platform.secret_output in TEMPLATE.document["Outputs"]
    assert platform.api_url_parameter in TEMPLATE.document["Parameters"]
    for env in (platform.api_url_env, platform.secret_env, platform.queue_env):
        assert f"{env}:" in TEMPLATE_TEXT


@pytest.mark.parametrize("platform", PLATFORMS.values(), ids=lambda p: p.destination.value)
def test_the_receiver_reads_each_platforms_queue_variable(platform: Platform) -> None:
    aliases = {f.alias for f in ReceiverSettings.model_fields.values()}
    assert platform.queue_env in aliases


@pytest.mark.parametrize("platform", PLATFORMS.values(), ids=lambda p: p.destination.value)
def test_buildnexion_lists_each_platforms_objects_where_the_registry_says(platform: Platform) -> None:
    assert BUILDNEXION_COLLECTIONS[platform.collection] == platform.object_kind
    assert all(event.partition(".")[0] == platform.object_kind for event in platform.events)


def test_config_ops_and_the_local_stack_read_the_registry() -> None:
    quipu = PLATFORMS[Destination.QUIPU]
    assert DESTINATION_OBJECTS[Destination.QUIPU] == "invoice"
    assert {e for e, d in DEFAULT_ROUTING.items() if d is Destination.QUIPU} == set(quipu.events)
    assert QUEUE_OUTPUTS[Destination.FACTURADIRECTA] == ("FacturaDirectaQueueUrl", "FacturaDirectaDeadLetterQueueUrl")
    assert QUEUE_LOGICAL_IDS[Destination.TUIMPRENTA] == "TuimprentaQueue"
    assert COLLECTIONS[Destination.TUIMPRENTA] == "sales_invoices"
    assert ID_PREFIXES == {"inv_": "invoice", "sin_": "sales_invoice", "po_": "purchase_order"}
    assert API_URL_PARAMETERS["facturadirecta"] == "FacturaDirectaApiUrl"
    assert set(API_URL_PARAMETERS) == {"buildnexion", *(d.value for d in Destination)}
    assert SECRET_FIELDS == {
        "BuildNexionSecretArn": ("api_key", "webhook_secrets"),
        "QuipuSecretArn": ("app_id", "app_secret"),
        "TuimprentaSecretArn": ("api_key", "webhook_secret"),
        "FacturaDirectaSecretArn": ("account", "api_token"),
    }
    assert DESTINATION_QUEUES == {
        "quipu": "QuipuQueue",
        "tuimprenta": "TuimprentaQueue",
        "facturadirecta": "FacturaDirectaQueue",
    }
