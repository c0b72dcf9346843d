from datetime import date, timedelta

import pytest
from pydantic import ValidationError

from chalicelib.domain.members import MemberPatch, Registration

BASE = {"phone": "13800138000", "channel": "store", "store_id": "sh-001", "consent": {"marketing": False}}


def test_registration_normalises_phone_and_keeps_emoji():
    r = Registration.model_validate({**BASE, "phone": "+86 138 0013 8000", "name": "  小明🌸 "})
    assert r.phone == "13800138000" and r.name == "小明🌸"


@pytest.mark.parametrize("field,value", [
    ("points", 100), ("tier", "gold"), ("member_id", "X"),  # mass assignment
    ("name", "   "), ("name", "a\x00b"), ("name", "x" * 41),
    ("birthday", (date.today() + timedelta(days=2)).isoformat()), ("birthday", "1899-12-31"),
    ("channel", "fax"), ("store_id", "a b"),
])
def test_registration_rejects(field, value):
    with pytest.raises(ValidationError) as err:
        Registration.model_validate({**BASE, field: value})
    assert err.value.errors()[0]["loc"][0] == field


def test_patch_distinguishes_absent_from_null():
    assert MemberPatch.model_validate({}).model_fields_set == set()
    patch = MemberPatch.model_validate({"name": None})
    assert patch.model_fields_set == {"name"} and patch.name is None


@pytest.mark.parametrize("field,value", [
    ("consent", {"marketing": 1}), ("consent", {"marketing": "yes"}),  # consent must be an explicit boolean
    ("birthday", 0), ("birthday", 19900101),  # a number is not a date (pydantic would read a timestamp)
])
def test_no_lenient_coercion_where_it_would_mislead(field, value):
    with pytest.raises(ValidationError):
        Registration.model_validate({**BASE, field: value})


def test_names_with_emoji_sequences_are_kept():
    family = "王👨\u200d👩\u200d👧"  # zero-width joiners inside an emoji sequence are fine
    assert Registration.model_validate({**BASE, "name": family}).name == family
