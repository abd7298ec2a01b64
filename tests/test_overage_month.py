"""A simulated month (vif_qos/sim/month.py: injected clock, 20 guests, 3 heavy, known
traffic): without auto-overage the total's 95th exceeds the 10 Mbit/s target, with it
the total stays under, and every move is one the decision made for a reason."""

from vif_qos.core import billing
from vif_qos.sim.month import MBIT, simulate_month


def test_month_without_and_with_auto_overage():
    without = simulate_month(auto_overage=False)
    with_ = simulate_month(auto_overage=True)
    assert without.slots == with_.slots == 8928
    assert without.total_p95_bits_per_s > 10 * MBIT
    assert without.moves == []
    assert with_.total_p95_bits_per_s <= 10 * MBIT
    # the 95th allows 446 slots above it in 8928; auto-overage needs far fewer
    assert with_.slots_above_target <= 8928 - billing.rank_position(8928)
    moved = {target for _t, action, target in with_.moves if action == "assign"}
    assert moved and moved <= {"heavy1:0", "heavy2:0", "heavy3:0"}
    # guests are let out again (cooldown), so assigns and unsets alternate per guest
    for target in moved:
        actions = [a for _t, a, g in with_.moves if g == target]
        assert all(x != y for x, y in zip(actions, actions[1:])), (target, actions)
        assert "unset" in actions
    # light guests keep their traffic: their 95th does not change
    for name, p95 in without.guest_p95_bits_per_s.items():
        if name.startswith("light"):
            assert with_.guest_p95_bits_per_s[name] == p95
