"""Typed errors carry what logs and metrics read (reason, names), and a message that names the problem."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from invoice_bridge.config import describe_validation_error
from invoice_bridge.errors import DependencyUnavailable, InvalidPayload, PayloadTooLarge, PlatformError, SignatureError


def test_rejections_carry_their_reason_and_detail() -> None:
    invalid = InvalidPayload("data.object.id", "Field required")
    assert (invalid.reason, invalid.field, invalid.message, str(invalid)) == (
        "malformed",
        "data.object.id",
        "Field required",
        "data.object.id: Field required",
    )
    too_large = PayloadTooLarge(300, 256)
    assert (too_large.reason, str(too_large)) == ("too_large", "body of 300 bytes exceeds the limit of 256 bytes")
    signature = SignatureError("signature_stale", "timestamp outside the tolerance")
    assert (signature.reason, str(signature)) == ("signature_stale", "timestamp outside the tolerance")


def test_dependency_unavailable_names_the_dependency() -> None:
    error = DependencyUnavailable("secret quipu", "ThrottlingException")
    assert (error.dependency, str(error)) == ("secret quipu", "secret quipu: ThrottlingException")


def test_a_platform_error_names_the_platform_and_status_and_keeps_a_bounded_body() -> None:
    answered = PlatformError("quipu", "Not found", status=404, body="x" * 2500, retryable=False)
    assert (str(answered), answered.message, answered.status) == ("quipu 404: Not found", "Not found", 404)
    assert answered.body == "x" * 2000  # an excerpt for the operator, not a whole error page
    # a failure with no answer at all names only the platform, and has no body
    unanswered = PlatformError("tuimprenta", "read timeout", retryable=True)
    assert (str(unanswered), unanswered.status, unanswered.body) == ("tuimprenta: read timeout", None, "")


class Lines(BaseModel):
    lines: list[int]


def validation_error(model: type[BaseModel], value: object) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(value)
    return caught.value


def test_list_positions_and_the_root_are_named() -> None:
    assert describe_validation_error(validation_error(Lines, {"lines": [1, "x"]})) == (
        "lines[1]",
        "Input should be a valid integer, unable to parse string as an integer",
    )
    assert describe_validation_error(validation_error(Lines, [1])) == (
        "(root)",
        "Input should be a valid dictionary or instance of Lines",
    )
