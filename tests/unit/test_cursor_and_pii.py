import base64
import json
import os

import pytest

from chalicelib.domain.errors import Invalid
from chalicelib.store.db import decode_cursor, encode_cursor
from chalicelib.store.pii import PiiProtector


def test_cursor_round_trip_and_partition_check():
    key = {"pk": "ORG", "sk": "STORE#sh-001"}
    assert decode_cursor(encode_cursor(key), expect={"pk": "ORG"}) == key
    foreign = encode_cursor({"pk": "MEMBER#X", "sk": "PROFILE"})
    with pytest.raises(Invalid):
        decode_cursor(foreign, expect={"pk": "ORG"})
    for junk in ("!!!", base64.urlsafe_b64encode(b"[1,2]").decode(), base64.urlsafe_b64encode(
            json.dumps({"pk": "ORG", "sk": {"S": "x"}}).encode()).decode()):
        with pytest.raises(Invalid):
            decode_cursor(junk, expect={"pk": "ORG"})


def test_pii_hash_is_keyed_and_ciphertext_is_bound_to_its_member():
    a, b = PiiProtector(os.urandom(32), os.urandom(32)), PiiProtector(os.urandom(32), os.urandom(32))
    assert a.lookup_hash("phone", "13800138000") == a.lookup_hash("phone", "13800138000")
    assert a.lookup_hash("phone", "13800138000") != b.lookup_hash("phone", "13800138000")
    sealed = a.encrypt("13800138000", member_id="M1", field="phone")
    assert "13800138000" not in sealed
    assert a.decrypt(sealed, member_id="M1", field="phone") == "13800138000"
    with pytest.raises(Exception):  # copied onto another member: does not decrypt
        a.decrypt(sealed, member_id="M2", field="phone")
