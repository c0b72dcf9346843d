import pytest

from chalicelib.domain.errors import Invalid
from chalicelib.domain.ids import new_id
from chalicelib.domain.phone import mask_phone, normalize_phone


@pytest.mark.parametrize("raw", ["13800138000", "+86 138-0013-8000", "0086 13800138000", "86-138 0013 8000",
                                 "１３８００１３８０００", "(138) 0013-8000"])
def test_phone_forms_normalise_to_the_same_number(raw):
    assert normalize_phone(raw) == "13800138000"


@pytest.mark.parametrize("raw", ["", "1380013800", "138001380001", "12800138000", "02112345678", "+1 4155550100",
                                 "abc", "138 0013 800O", "١٣٨٠٠١٣٨٠٠٠"])
def test_invalid_phones_are_rejected(raw):
    with pytest.raises(Invalid) as err:
        normalize_phone(raw)
    assert err.value.code == "invalid_phone"


def test_mask_shows_first_three_and_last_four():
    assert mask_phone("13800138000") == "138****8000"


def test_ids_are_unique_and_sort_by_time():
    earlier, later = new_id(1_700_000_000_000), new_id(1_700_000_000_001)
    assert earlier < later and len(earlier) == 26
    assert len({new_id() for _ in range(10_000)}) == 10_000
