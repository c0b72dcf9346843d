"""The auditor: walks a member's items in the table and checks the ledger's invariants.

Used after concurrency, property-based and fault runs. It reads the raw table through the repository's
own mapping but recomputes everything itself from lots and entries."""
from __future__ import annotations

from collections import Counter

from chalicelib import bootstrap


def audit_member(member_id: str) -> dict[str, int]:
    ledger = bootstrap.ledger()
    _, state = ledger.load_member(member_id)
    entries = ledger.all_entries(member_id)
    lots = [e.lot for e in entries if e.lot is not None]
    problems = []
    hidden = [lot.lot_id for lot in lots
              if lot.remaining > 0 and state.open_lots_from is not None and lot.at < state.open_lots_from]
    if hidden:
        problems.append(f"lots holding points before the state's open_lots_from bound: {hidden}")
    lot_sum = sum(lot.remaining for lot in lots)
    if state.available != lot_sum:
        problems.append(f"available {state.available} != sum of lot remainders {lot_sum}")
    entry_sum = sum(e.points for e in entries)
    if state.balance != entry_sum:
        problems.append(f"balance {state.balance} != sum of ledger entries {entry_sum}")
    if any(lot.remaining < 0 for lot in lots) or state.owed < 0 or state.available < 0:
        problems.append("negative remainder, debt or available")
    earned = Counter(e.ref for e in entries if e.kind == "earn")
    doubled = [ref for ref, n in earned.items() if n > 1]
    if doubled:
        problems.append(f"orders credited twice: {doubled}")
    redeemed = Counter(e.ref for e in entries if e.kind == "redemption")
    if any(n > 1 for n in redeemed.values()):
        problems.append("a redemption applied twice")
    cancels = Counter(e.ref for e in entries if e.kind == "redemption_cancel")
    if any(n > 1 for n in cancels.values()):
        problems.append("a redemption cancelled twice")
    refunds = Counter((e.ref, e.detail.get("refund_id")) for e in entries if e.kind == "refund")  # ids per order
    if any(n > 1 for n in refunds.values()):
        problems.append("a refund applied twice")
    # Refunds must reverse exactly: every reversed point is removed, owed or forgiven (never kept), and a
    # fully refunded order has reversed all it earned.
    reversed_by_order: Counter[str] = Counter()
    for e in entries:  # a guest order attached after refunds reversed their share at the attach
        if e.kind == "earn":
            reversed_by_order[e.ref] += e.detail.get("reversed_before_attach", 0)
    for e in entries:
        if e.kind == "refund":
            d = e.detail
            if d["removed"] + d["owed"] + d["forgiven"] != d["reversed"]:
                problems.append(f"refund {d['refund_id']}: removed+owed+forgiven != reversed")
            if e.points != -(d["removed"] + d["owed"]):
                problems.append(f"refund {d['refund_id']}: ledger points do not match what was taken")
            reversed_by_order[e.ref] += d["reversed"]
    orders, cursor = ledger.member_orders(member_id, None, 100)
    while cursor:
        more, cursor = ledger.member_orders(member_id, cursor, 100)
        orders += more
    for o in orders:
        if reversed_by_order[o.order_id] != o.points_reversed:
            problems.append(f"order {o.order_id}: refund entries reversed {reversed_by_order[o.order_id]}, "
                            f"order says {o.points_reversed}")
        if o.refunded_amount == o.amount and o.points_reversed != o.points_earned:
            problems.append(f"order {o.order_id} fully refunded but {o.points_earned - o.points_reversed} kept")
    assert not problems, f"member {member_id}: " + "; ".join(problems)
    return {"balance": state.balance, "available": state.available, "owed": state.owed, "lots": len(lots),
            "entries": len(entries), "orders": len(earned), "redemptions": len(redeemed)}
