"""Mainland mobile numbers (chalicelib/domain/phone.py): the member's identity, so one person must always
normalise to one number, and anything else must be refused.

Extends test_phone_and_ids.py (the common forms, the common mistakes, one mask) with the other prefixes and
separators staff and apps send, the rejections at the edges, the error's shape, and properties.
"""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from chalicelib.domain.errors import Invalid
from chalicelib.domain.members import Phone
from chalicelib.domain.phone import mask_phone, normalize_phone


@pytest.mark.parametrize("second", "3456789")
def test_every_mobile_range_from_13_to_19_is_accepted(second):
    """Given an 11-digit number starting 13..19, When normalised, Then it is kept as it is."""
    number = f"1{second}800138000"
    assert normalize_phone(number) == number


@pytest.mark.parametrize("raw", ["10800138000", "11800138000", "23800138000", "03800138000"])
def test_numbers_outside_the_mobile_ranges_are_rejected(raw):
    """Given 11 digits that do not start 13..19, When normalised, Then they are refused."""
    with pytest.raises(Invalid):
        normalize_phone(raw)


@pytest.mark.parametrize("raw", [
    "+8613800138000",  # prefixes written without a separator
    "008613800138000",
    "8613800138000",
    "  13800138000  ",  # pasted with blanks around it
    "138\t0013\t8000",  # tabs and a trailing newline from a spreadsheet cell
    "13800138000\n",
    "138.0013.8000",  # dots
    "138\u30000013\u30008000",  # ideographic spaces typed on a Chinese keyboard
    "138\u00a00013\u00a08000",  # no-break spaces from a web page
    "＋８６ １３８－００１３－８０００",  # full-width plus, digits and hyphens
    "（＋８６）１３８００１３８０００",  # full-width parentheses around the country code
    "+86 (138) 0013-8000",
])
def test_more_ways_of_writing_the_same_number(raw):
    """Given one number written with a country code, blanks, dots or full-width characters, When normalised,
    Then it is always 13800138000."""
    # Given / When / Then
    assert normalize_phone(raw) == "13800138000"


@pytest.mark.parametrize("raw", [
    None,  # no phone at all
    "+86",  # a prefix alone
    "+86 1380013800",  # ten digits after the prefix
    "+86 138001380001",  # twelve digits after the prefix
    "+86 86 13800138000",  # the country code twice
    "+0086 13800138000",  # a plus before the international prefix
    "+852 91234567",  # Hong Kong
    "+85 213800138000",  # not +86: 13 digits that are not a Chinese mobile either
    "138/0013/8000",  # slashes are not separators
    "138—0013—8000",  # nor are em dashes
    "138\u200b0013\u200b8000",  # zero-width spaces are not blanks
    "138 0013 8000 ext 1",
    "13800138000+86",  # the country code after the number
])
def test_more_inputs_that_are_not_one_mainland_mobile(raw):
    """Given text that is not exactly one mainland mobile number, When normalised, Then it is refused."""
    with pytest.raises(Invalid):
        normalize_phone(raw)


def test_a_refused_phone_says_which_field_and_why():
    """Given an invalid phone, When normalised, Then the error has the stable code `invalid_phone`, points at the
    `phone` field, and is a ValueError so pydantic validators report it as a field error."""
    # Given / When
    with pytest.raises(Invalid) as err:
        normalize_phone("12345")
    # Then
    assert isinstance(err.value, ValueError)
    assert err.value.code == "invalid_phone"
    assert err.value.details == [{"loc": ["phone"], "msg": "expected 11 digits starting 13-19, optional +86"}]


def test_the_phone_field_type_normalises_and_limits_the_raw_length():
    """Given the Phone type used by registration and orders, When a formatted number is validated, Then the
    stored value is normalised; a value of more than 32 characters is refused before any normalising."""
    # Given
    phone = TypeAdapter(Phone)
    # When / Then
    assert phone.validate_python("+86 138-0013-8000") == "13800138000"
    with pytest.raises(ValidationError):
        phone.validate_python("1" + " " * 31 + "3800138000")  # 42 characters, mostly blanks
    with pytest.raises(ValidationError):
        phone.validate_python("12800138000")


@pytest.mark.parametrize("phone,masked", [("19912345678", "199****5678"), ("13000000000", "130****0000")])
def test_a_mask_keeps_the_carrier_prefix_and_the_last_four_digits(phone, masked):
    """Given a normalised number, When masked, Then digits 4-7 become asterisks."""
    assert mask_phone(phone) == masked


_mobiles = st.builds(lambda second, rest: f"1{second}{rest}", st.sampled_from("3456789"),
                     st.text("0123456789", min_size=9, max_size=9))
_separators = st.sampled_from([" ", "-", ".", "(", ")", "\t", "\u3000"])
_FULL_WIDTH = str.maketrans("0123456789+-", "０１２３４５６７８９＋－")


@given(number=_mobiles, prefix=st.sampled_from(["", "+86", "0086", "86"]), data=st.data(),
       full_width=st.booleans())
def test_any_formatting_of_a_mobile_normalises_to_it(number, prefix, data, full_width):
    """Given any mainland mobile, When written with any country prefix, any separators anywhere, in half- or
    full-width characters, Then it normalises to the 11 digits, and normalising again changes nothing."""
    # Given
    chars = list(prefix + number)
    for _ in range(data.draw(st.integers(0, 6))):
        chars.insert(data.draw(st.integers(0, len(chars))), data.draw(_separators))
    raw = "".join(chars)
    if full_width:
        raw = raw.translate(_FULL_WIDTH)
    # When
    normalised = normalize_phone(raw)
    # Then
    assert normalised == number
    assert normalize_phone(normalised) == normalised


@given(number=_mobiles)
def test_a_mask_hides_exactly_four_digits_and_is_never_a_number(number):
    """Given any mobile, When masked, Then it is the first 3 digits, four asterisks and the last 4 digits, and
    the mask itself is refused as a phone (a masked value can never be stored as an identity)."""
    # Given / When
    masked = mask_phone(number)
    # Then
    assert masked == number[:3] + "****" + number[7:]
    with pytest.raises(Invalid):
        normalize_phone(masked)
