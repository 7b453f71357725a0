"""When a node counts as lost (observe.lost_node): not Ready for long enough, dated by its last sign of
life. Pure: node JSON as the API returns it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from apps.operator import observe

NOW = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
AFTER = timedelta(seconds=60)


def node(status: str, *, transition: datetime, heartbeat: datetime | None = None, zone: str = "z-b") -> Any:
    ready = {"type": "Ready", "status": status, "lastTransitionTime": transition.isoformat()}
    if heartbeat is not None:
        ready["lastHeartbeatTime"] = heartbeat.isoformat().replace("+00:00", "Z")
    return {
        "metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": zone}},
        "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, ready]},
    }


def test_a_ready_node_or_a_missing_one_is_not_lost() -> None:
    assert observe.lost_node(node("True", transition=NOW - timedelta(hours=1)), now=NOW, after=AFTER) is None
    assert observe.lost_node(None, now=NOW, after=AFTER) is None
    assert observe.lost_node({"metadata": {"name": "n"}, "status": {}}, now=NOW, after=AFTER) is None


def test_a_kubelet_saying_not_ready_loses_the_node_from_the_transition_once_it_lasts() -> None:
    since = NOW - timedelta(seconds=90)
    lost = observe.lost_node(node("False", transition=since, heartbeat=NOW), now=NOW, after=AFTER)
    assert lost == observe.LostNode(name="n1", zone="z-b", lost_at=since)
    blip = node("False", transition=NOW - timedelta(seconds=30))
    assert observe.lost_node(blip, now=NOW, after=AFTER) is None


def test_a_silent_kubelet_is_lost_from_its_last_heartbeat_not_from_when_it_was_noticed() -> None:
    heard = NOW - timedelta(seconds=100)
    noticed = heard + timedelta(seconds=40)  # the node controller's grace period
    lost = observe.lost_node(node("Unknown", transition=noticed, heartbeat=heard), now=NOW, after=AFTER)
    assert lost is not None and lost.lost_at == heard
    assert observe.lost_node(node("Unknown", transition=noticed), now=NOW, after=AFTER).lost_at == noticed
