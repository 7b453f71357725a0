"""The Python client's lists follow each page's `next` link (gpucloud_cli/client.py `_list`): on the
instance list that is a cursor, so instances launched while the client pages through do not shift a row
onto the next page twice, as an offset did. Against the live server, in-process."""

from __future__ import annotations

from typing import Any

import pytest

from gpucloud_cli import Client
from gpucloud_cli.client import PAGE
from tests.conftest import Actor
from tests.support.factories import make_instance

pytestmark = pytest.mark.django_db(transaction=True)


class LaunchingWhilePaging(Client):
    """The client, with an instance created after each page it reads (as other users launching would)."""

    def __init__(self, *args: Any, actor: Actor, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.actor = actor
        self.pages: list[str] = []

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = super().request(method, path, **kwargs)
        if path.endswith("/instances"):
            self.pages.append(str(kwargs.get("params")))
            make_instance(self.actor.tenant, created_by=self.actor.user, name=f"late-{len(self.pages)}")
        return answer


def test_instances_lists_every_instance_once_while_others_launch(server: str, funded: Actor) -> None:
    before = [str(make_instance(funded.tenant, created_by=funded.user).pk) for _ in range(PAGE * 2 + 5)]
    api = LaunchingWhilePaging(server, funded.token_plaintext, tenant=funded.tenant.slug, actor=funded)
    listed = [row["id"] for row in api.instances()]
    assert len(api.pages) == 3
    assert len(listed) == len(set(listed)), "a row came twice"
    assert set(before) <= set(listed)
    assert "cursor" in api.pages[1] and "offset" not in api.pages[1]


def test_instances_keeps_the_filters_on_every_page(server: str, funded: Actor) -> None:
    stopped = {
        str(make_instance(funded.tenant, created_by=funded.user, state="stopped").pk) for _ in range(PAGE + 3)
    }
    for _ in range(4):
        make_instance(funded.tenant, created_by=funded.user, state="running")
    api = Client(server, funded.token_plaintext, tenant=funded.tenant.slug)
    assert {row["id"] for row in api.instances(state="stopped")} == stopped
