"""QuipuSyncFunction's settings: WorkerSettings plus Quipu's URL, secret and the behaviours the template sets."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from invoice_bridge.config import HttpUrl, Name, WorkerSettings


class VoidMode(StrEnum):
    """What a voided BuildNexion invoice becomes in Quipu (never both)."""

    CREDIT_NOTE = "credit_note"  # a full credit note through `amended_invoice` (the accountant's default)
    DELETE = "delete"  # the expense invoice is deleted


class QuipuSyncSettings(WorkerSettings):
    """Read once at cold start; every field is set by template.yaml."""

    quipu_api_url: HttpUrl = Field(alias="QUIPU_API_URL")
    quipu_secret_id: Name = Field(alias="QUIPU_SECRET_ARN")
    # Quipu's newer API puts business endpoints under /{owner_slug}/ (DESIGN.md); empty: no prefix.
    quipu_owner_slug: str = Field(default="", pattern=r"^[A-Za-z0-9_.-]*$", alias="QUIPU_OWNER_SLUG")
    void_mode: VoidMode = Field(default=VoidMode.CREDIT_NOTE, alias="QUIPU_VOID_MODE")
    attach_pdf: bool = Field(default=False, alias="QUIPU_ATTACH_PDF")
