"""The watch's memory of recent Services and nodes (apps/operator/recent.py), with a fake clock; and
that a reconcile's applied Service spares the watch reading it again (cluster.recent_service)."""

from __future__ import annotations

from apps.operator.recent import Recent

KEY = ("https://a", "Service", "t-acme", "i-1")


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_lives_until_the_ttl_and_can_be_forgotten() -> None:
    clock = Clock()
    recent = Recent(ttl=60, clock=clock)
    assert recent.get(KEY) is None
    recent.put(KEY, {"spec": {"ports": [{"nodePort": 30022}]}})
    clock.now += 59
    assert recent.get(KEY) == {"spec": {"ports": [{"nodePort": 30022}]}}
    clock.now += 1
    assert recent.get(KEY) is None
    recent.put(KEY, {"spec": {}})
    recent.forget(KEY)
    assert recent.get(KEY) is None
    assert recent.get(("https://b", *KEY[1:])) is None
