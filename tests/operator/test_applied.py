"""The memory of what this process applied (apps/operator/applied.py): pure, with a fake clock."""

from __future__ import annotations

from apps.operator.applied import AppliedCache, digest, key_of

SECRET = {"kind": "Secret", "metadata": {"name": "i-1-ssh", "namespace": "t-acme"}, "data": {"k": "v"}}
NAMESPACE = {"kind": "Namespace", "metadata": {"name": "t-acme"}}
QUOTA = {"kind": "ResourceQuota", "metadata": {"name": "quota", "namespace": "t-acme"}}
OTHER = {"kind": "Secret", "metadata": {"name": "i-2-ssh", "namespace": "t-other"}}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def remembered(cache: AppliedCache, *manifests: dict, cluster: str = "https://a") -> None:
    for manifest in manifests:
        cache.remember(key_of(cluster, manifest), digest(manifest))


def current(cache: AppliedCache, manifest: dict, cluster: str = "https://a") -> bool:
    return cache.is_current(key_of(cluster, manifest), digest(manifest))


def test_the_same_manifest_is_current_until_the_ttl_passes() -> None:
    clock = Clock()
    cache = AppliedCache(ttl=300, clock=clock)
    assert not current(cache, SECRET)
    remembered(cache, SECRET)
    assert current(cache, SECRET)
    clock.now += 299
    assert current(cache, SECRET)
    clock.now += 2
    assert not current(cache, SECRET)


def test_a_changed_manifest_or_another_cluster_is_not_current() -> None:
    cache = AppliedCache(clock=Clock())
    remembered(cache, SECRET)
    changed = {**SECRET, "data": {"k": "new"}}
    assert not current(cache, changed)
    assert not current(cache, SECRET, cluster="https://b")
    remembered(cache, changed)
    assert current(cache, changed) and not current(cache, SECRET)


def test_forgetting_a_namespace_forgets_it_and_everything_inside_only() -> None:
    cache = AppliedCache(clock=Clock())
    remembered(cache, SECRET, NAMESPACE, QUOTA, OTHER)
    remembered(cache, NAMESPACE, cluster="https://b")
    cache.forget_namespace("https://a", "t-acme")
    assert not any(current(cache, m) for m in (SECRET, NAMESPACE, QUOTA))
    assert current(cache, OTHER) and current(cache, NAMESPACE, cluster="https://b")


def test_forget_missing_drops_what_a_fresh_list_lacks() -> None:
    cache = AppliedCache(clock=Clock())
    remembered(cache, SECRET, OTHER, QUOTA)
    assert cache.forget_missing("https://a", "Secret", {("t-other", "i-2-ssh")}) == 1
    assert not current(cache, SECRET)
    assert current(cache, OTHER) and current(cache, QUOTA)  # another kind is not touched


def test_learning_from_a_list_remembers_the_stamped_digest_and_forgets_the_rest() -> None:
    from apps.operator.applied import stamp_of, stamped

    cache = AppliedCache(clock=Clock())
    remembered(cache, OTHER)
    sent = stamped(SECRET, digest(SECRET))
    assert stamp_of(sent) == digest(SECRET) and SECRET["metadata"].get("annotations") is None  # a copy
    unstamped = {**QUOTA, "kind": "Secret"}  # made by someone else: nothing to learn
    cache.learn("https://a", "Secret", {("t-acme", "i-1-ssh"): sent, ("t-acme", "quota"): unstamped})
    assert current(cache, SECRET)
    assert not current(cache, OTHER)  # not in the list: applied again when next reconciled
    assert not current(cache, {**SECRET, "data": {"k": "changed"}})
