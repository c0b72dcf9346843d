"""The scheduled merge-resume Lambda, invoked as Lambda would invoke it."""
from __future__ import annotations

from chalicelib.cli import _LocalContext
from chalicelib.services import merges as member_service
from functions.merge_resume import handler
from testkit.support import registration


def test_handler_finishes_interrupted_merges(api, tokens, monkeypatch):
    staff, hq = tokens.staff(stores=["sh-001"]), tokens.hq()
    target, source = api.post("/members", registration(), staff)[1], api.post("/members", registration(), staff)[1]
    monkeypatch.setattr(member_service, "MERGE_BATCHES_INLINE", 0)  # nothing moved inline
    record = api.post(f"/members/{target['member_id']}/merge", {"source_member_id": source["member_id"]}, hq)[1]
    assert record["state"] == "moving"

    result = handler({"source": "aws.scheduler"}, _LocalContext("merge-resume"))
    assert result["finished"] >= 1 and result["unfinished"] == 0
    replay = api.post(f"/members/{target['member_id']}/merge", {"source_member_id": source["member_id"]}, hq)[1]
    assert replay["state"] == "done" and replay["moved"] == {"audit": 1}
