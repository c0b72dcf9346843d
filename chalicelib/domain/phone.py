"""Mainland China mobile numbers: the member's identity."""
from __future__ import annotations

import re
import unicodedata

from .errors import Invalid

_MOBILE = re.compile(r"^1[3-9][0-9]{9}$")  # not \d: it admits non-ASCII digits
_SEPARATORS = re.compile(r"[\s\-().]")


def normalize_phone(raw: str) -> str:
    """'+86 138-0013-8000', '８６１３８００１３８０００' (full-width) -> '13800138000'; anything else is Invalid."""
    text = _SEPARATORS.sub("", unicodedata.normalize("NFKC", raw or ""))
    for prefix in ("+86", "0086", "86"):
        if text.startswith(prefix) and len(text) == len(prefix) + 11:
            text = text[len(prefix):]
            break
    if not _MOBILE.match(text):
        raise Invalid("phone is not a mainland China mobile number", code="invalid_phone",
                      details=[{"loc": ["phone"], "msg": "expected 11 digits starting 13-19, optional +86"}])
    return text


def mask_phone(phone: str) -> str:
    return f"{phone[:3]}****{phone[-4:]}"
