"""What the local stack's dead-letter queues hold, per destination: read at the end of a demo or chaos run."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sandbox.chaos_check import Letter

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import MessageTypeDef

    from sandbox.stack import LocalStack

# The source queue of each destination, as template.yaml names it; its DLQ is its RedrivePolicy's target.
QUEUES = {"quipu": "QuipuQueue", "tuimprenta": "TuimprentaQueue", "facturadirecta": "FacturaDirectaQueue"}
READ_VISIBILITY_SECONDS = 30


def drain_dead_letters(stack: LocalStack) -> list[Letter]:
    """Every letter on the destinations' dead-letter queues, taken off them (the run ends with the stack).

    Taken off, not peeked: on a FIFO queue a letter held by a read hides the letters behind it in its group
    (two events of one object), so reading without deleting could miss them.
    """
    sqs = stack.aws.sqs()
    letters: list[Letter] = []
    for destination, logical_id in QUEUES.items():
        source = stack.provisioned.queues.get(logical_id)
        if source is None or source.dead_letter is None:
            continue
        url = stack.provisioned.queues[source.dead_letter].url
        while True:
            batch = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=READ_VISIBILITY_SECONDS,
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not batch:
                break
            for message in batch:
                letters.append(letter_of(destination, message))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return letters


def letter_of(destination: str, message: MessageTypeDef) -> Letter:
    """The object a dead-lettered message is about, and the reason the worker gave ("" when it gave none)."""
    attributes = {name: value.get("StringValue", "") for name, value in message.get("MessageAttributes", {}).items()}
    try:
        body: Any = json.loads(message.get("Body", ""))
    except ValueError:
        body = None
    source_id = "?"
    if isinstance(body, dict):
        data = body.get("data")
        obj = data.get("object") if isinstance(data, dict) else None
        if isinstance(obj, dict) and "id" in obj:
            source_id = str(obj["id"])  # the webhook event itself
        elif "object_id" in body:
            source_id = str(body["object_id"])  # a report the tuimprenta poller wrote about one invoice
    code, text = attributes.get("error_code", ""), attributes.get("error_message", "")
    # A message the redrive policy moved after maxReceiveCount carries no reason: it stays "".
    reason = f"{code}: {text}" if code and text else code or text
    return Letter(destination, source_id, reason)
