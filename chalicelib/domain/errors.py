"""Domain errors. They carry a stable machine code and details; only api/errors.py knows HTTP statuses."""
from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "error"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details if details is not None else {}


class BadRequest(DomainError):
    """The request could not be read at all (not JSON, wrong content type, too large)."""
    code = "bad_request"


class Invalid(DomainError, ValueError):
    """Readable but breaks a rule. A ValueError too, so pydantic validators can raise it directly."""
    code = "invalid"


class Unauthorized(DomainError):
    code = "unauthorized"


class Forbidden(DomainError):
    code = "forbidden"


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"


class Unavailable(DomainError):
    """A dependency (WeChat, DynamoDB throttling past retries) failed; the client may retry."""
    code = "unavailable"


class PhoneTaken(Conflict):
    """Raised by the member store when a phone already has a member; carries that member's id."""
    code = "phone_taken"

    def __init__(self, member_id: str) -> None:
        super().__init__("a member already holds this phone", details={})
        self.member_id = member_id


class DocumentExists(Exception):
    """The store found the order/refund/redemption/adjustment id already used (the permanent dedupe)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class StaleRead(Exception):
    """What a use case read changed before it wrote (optimistic lock): re-read and recompute."""
