"""/tag-rules and /members/{member_id}/tags: HQ's rules the nightly job tags members by, and manual tags."""
from __future__ import annotations

from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .. import bootstrap
from ..domain.errors import Invalid
from ..domain.tags import ManualTag, TagRule, TagRulesInput
from ..services import tags as tag_service
from .errors import validation_details
from .routing import Call, route

TAG = "members"


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TagRulesView(_Out):
    """The rule list now; `version` 0: never set (no rules)."""

    rules: list[TagRule]
    version: int


class MemberTagsView(_Out):
    member_id: str = Field(description="the member the tags are on: a merged-away id answers its survivor")
    tags: list[str] = Field(description="the member's manual tags, sorted (rule tags come with the member read)")


@route("/tag-rules", "PUT", op="tags.put_rules", tag=TAG, body=TagRulesInput, response=TagRulesView,
       errors=(409, 422),
       summary="Replace the tag rules (each tag: every condition must hold); the nightly job applies them")
def put_tag_rules(call: Call) -> TagRulesView:
    rules, version = tag_service.put_rules(call.body, call.principal, bootstrap.tags())
    return TagRulesView(rules=rules.rules, version=version)


@route("/tag-rules", "GET", op="tags.read_rules", tag=TAG, response=TagRulesView,
       summary="The tag rules with their version (0: never set, no rules)")
def get_tag_rules(call: Call) -> TagRulesView:
    rules, version = tag_service.get_rules(call.principal, bootstrap.tags())
    return TagRulesView(rules=rules.rules, version=version)


@route("/members/{member_id}/tags", "POST", op="tags.add", tag=TAG, body=ManualTag, response=MemberTagsView,
       errors=(404, 409, 422),
       summary="Give a member a tag by hand (idempotent: a tag held already changes nothing; at most 50)")
def add_member_tag(call: Call, member_id: str) -> MemberTagsView:
    body: ManualTag = call.body
    live, held = tag_service.add_tag(member_id, body.tag, call.principal, bootstrap.tags(), bootstrap.ledger())
    return MemberTagsView(member_id=live, tags=list(held))


@route("/members/{member_id}/tags/{tag}", "DELETE", op="tags.remove", tag=TAG, response=MemberTagsView,
       errors=(404, 422),
       summary="Take a manual tag off a member (the tag URL-encoded; idempotent: a tag not held changes nothing)")
def remove_member_tag(call: Call, member_id: str, tag: str) -> MemberTagsView:
    live, held = tag_service.remove_tag(member_id, _path_tag(tag), call.principal, bootstrap.tags(),
                                        bootstrap.ledger())
    return MemberTagsView(member_id=live, tags=list(held))


def _path_tag(raw: str) -> str:
    """The tag a path segment names, cleaned as a body's would be. API Gateway hands path parameters over
    URL-decoded, Chalice's local server still encoded: one more decode is right for both, because a tag holds
    no '%' (and so a decoded one decodes to itself)."""
    try:
        return ManualTag.model_validate({"tag": unquote(raw, errors="strict")}).tag
    except UnicodeDecodeError:
        raise Invalid("path is not valid", code="validation_error",
                      details=[{"loc": ["path", "tag"], "msg": "not UTF-8 once URL-decoded", "type": "invalid_tag"}]
                      ) from None
    except ValidationError as err:
        raise Invalid("path is not valid", code="validation_error", details=validation_details(err, "path")) from None
