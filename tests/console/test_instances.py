"""The instance list (filters, live status by HTMX polling), the instance page (state, reason, timeline,
connection command, cost, logs) and stop/start/restart/terminate with a confirmation step; roles and
isolation: a viewer sees but cannot act, another tenant's instance is a 404 that names nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.instances import selectors, services
from apps.instances.models import Instance
from apps.instances.states import Observation
from apps.operator.cluster import Cluster
from apps.tenants.models import TenantStatus
from apps.tenants.roles import Role
from tests.console.helpers import client_for, make_instance, page
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db

CONNECTION = {
    "host": "203.0.113.7",
    "port": 30022,
    "user": "root",
    "ssh_command": "ssh -p 30022 root@203.0.113.7",
}


@pytest.fixture
def owner(make_actor: Callable[..., Any], catalog: Any) -> Any:
    return make_actor(Role.OWNER, tenant=TenantFactory(name="Acme Research", slug="acme"))


def _launch(owner: Any, **req: Any) -> Instance:
    body = {"instance_type": "gpu-h100x1", "region": "us-east-1", "image": "pytorch", **req}
    return services.instance_launch(actor=owner.user, tenant=owner.tenant, req=services.LaunchRequest(**body))


# --- list ----------------------------------------------------------------------------------------------


def test_the_list_shows_live_instances_and_polls(owner: Any) -> None:
    make_instance(owner.tenant, created_by=owner.user, name="alpha")
    make_instance(owner.tenant, created_by=owner.user, name="gone", state="terminated")

    response = client_for(owner.user).get(page("instances", owner.tenant))

    assert response.status_code == 200
    assert [i.name for i in response.context["instances"]] == ["alpha"]
    html = response.content.decode()
    assert "alpha" in html and "gone" not in html
    assert 'hx-trigger="every 2s"' in html
    assert f'hx-get="{page("instances_table", owner.tenant)}?' in html


def test_the_list_filters_by_state_and_region(owner: Any) -> None:
    make_instance(owner.tenant, created_by=owner.user, name="east-run")
    make_instance(owner.tenant, created_by=owner.user, name="east-stop", state="stopped")
    make_instance(owner.tenant, created_by=owner.user, name="west-run", region="eu-west-1")
    make_instance(owner.tenant, created_by=owner.user, name="gone", state="terminated")
    client = client_for(owner.user)

    def names(**params: str) -> list[str]:
        response = client.get(page("instances", owner.tenant), params)
        return sorted(i.name for i in response.context["instances"])

    assert names(state="running") == ["east-run", "west-run"]
    assert names(region="eu-west-1") == ["west-run"]
    assert names(state="running", region="us-east-1") == ["east-run"]
    assert names(state="terminated") == ["gone"]
    assert names(state="bogus") == ["east-run", "east-stop", "west-run"]  # an unknown filter is ignored
    # The polled table keeps the filters.
    response = client.get(page("instances", owner.tenant), {"state": "stopped"})
    assert "state=stopped" in response.context["poll_url"]


def test_the_polled_table_answers_204_until_something_changes(owner: Any) -> None:
    instance = make_instance(owner.tenant, created_by=owner.user, name="alpha", state="pending")
    client = client_for(owner.user)
    poll_url = client.get(page("instances", owner.tenant)).context["poll_url"]

    unchanged = client.get(poll_url, headers={"HX-Request": "true"})
    assert unchanged.status_code == 204

    services.instance_observe(
        instance_id=instance.pk, observation=Observation.POD_READY, connection=CONNECTION
    )
    changed = client.get(poll_url, headers={"HX-Request": "true"})
    assert changed.status_code == 200
    html = changed.content.decode()
    assert "<html" not in html
    assert "state-running" in html
    assert changed.context["poll_url"] != poll_url  # the next poll compares against the new state
    assert client.get(changed.context["poll_url"]).status_code == 204


def test_a_viewer_sees_the_list_without_a_launch_button(make_actor: Callable[..., Any], owner: Any) -> None:
    make_instance(owner.tenant, created_by=owner.user, name="alpha")
    viewer = make_actor(Role.VIEWER, tenant=owner.tenant)
    response = client_for(viewer.user).get(page("instances", owner.tenant))
    assert response.status_code == 200
    html = response.content.decode()
    assert "alpha" in html and "Launch an instance" not in html


# --- one instance --------------------------------------------------------------------------------------


def test_the_instance_page_shows_state_connection_cost_and_timeline(owner: Any) -> None:
    instance = _launch(owner, name="trainer")
    services.instance_observe(
        instance_id=instance.pk, observation=Observation.POD_READY, connection=CONNECTION
    )
    two_hours_ago = timezone.now() - timedelta(hours=2)
    Instance.objects.filter(pk=instance.pk).update(running_since=two_hours_ago, billing_since=two_hours_ago)

    response = client_for(owner.user).get(page("instance_detail", owner.tenant, instance.pk))

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="instance-state">running<' in html
    assert '<code id="connect-command">ssh -p 30022 root@203.0.113.7</code>' in html
    assert 'data-copy-target="connect-command"' in html and "the connection command" in html
    assert "$2.49 per hour" in html
    assert "$4.98" in html  # two hours at 2.49
    assert [e.name for e in response.context["events"]] == ["pod_ready", "pod_started", "launch"]
    assert owner.user.email in html
    assert response.context["actions"] == ["stop", "restart", "terminate"]
    for action in ("stop", "restart", "terminate"):
        assert f'action="{page("instance_action", owner.tenant, instance.pk, action)}"' in html
    assert 'hx-trigger="every 2s"' in html
    assert f'hx-get="{page("instance_logs", owner.tenant, instance.pk)}"' in html


def test_a_failed_instance_shows_its_reason(owner: Any) -> None:
    instance = _launch(owner, name="broken")
    services.instance_observe(
        instance_id=instance.pk,
        observation=Observation.FAILED,
        reason="image_pull_error",
        message="Back-off pulling image",
    )
    html = client_for(owner.user).get(page("instance_detail", owner.tenant, instance.pk)).content.decode()
    assert "image_pull_error: Back-off pulling image" in html
    assert "Available once the instance is running." in html


def test_the_status_section_answers_204_until_something_changes(owner: Any) -> None:
    instance = _launch(owner, name="trainer")
    client = client_for(owner.user)
    poll_url = client.get(page("instance_detail", owner.tenant, instance.pk)).context["poll_url"]
    assert poll_url.startswith(page("instance_status", owner.tenant, instance.pk))

    assert client.get(poll_url, headers={"HX-Request": "true"}).status_code == 204

    services.instance_observe(
        instance_id=instance.pk, observation=Observation.POD_READY, connection=CONNECTION
    )
    changed = client.get(poll_url, headers={"HX-Request": "true"})
    assert changed.status_code == 200
    html = changed.content.decode()
    assert "<html" not in html and 'id="instance-state">running<' in html
    assert "ssh -p 30022" in html


@pytest.mark.parametrize(
    ("action", "start_state", "end_state"),
    [
        ("stop", "running", "stopping"),
        ("restart", "running", "starting"),
        ("terminate", "running", "terminating"),
        ("start", "stopped", "starting"),
    ],
)
def test_actions_confirm_then_post(owner: Any, action: str, start_state: str, end_state: str) -> None:
    instance = make_instance(owner.tenant, created_by=owner.user, name="trainer", state=start_state)
    client = client_for(owner.user)
    url = page("instance_action", owner.tenant, instance.pk, action)

    confirm = client.get(url)
    assert confirm.status_code == 200
    html = confirm.content.decode()
    assert f"Yes, {action} trainer" in html and 'method="post"' in html and "csrfmiddlewaretoken" in html
    instance.refresh_from_db()
    assert instance.state == start_state  # the confirmation page changes nothing

    done = client.post(url)
    assert done.status_code == 302
    assert done.url == page("instance_detail", owner.tenant, instance.pk)
    instance.refresh_from_db()
    assert instance.state == end_state
    assert AuditEvent.objects.get(action=f"instance.{action}", tenant=owner.tenant).via == "console"


def test_an_invalid_transition_is_explained(owner: Any) -> None:
    instance = make_instance(owner.tenant, created_by=owner.user, name="trainer", state="running")
    response = client_for(owner.user).post(page("instance_action", owner.tenant, instance.pk, "start"))
    assert response.status_code == 409
    assert "Cannot start an instance that is running." in response.content.decode()


def test_an_unknown_action_is_404(owner: Any) -> None:
    instance = make_instance(owner.tenant, created_by=owner.user)
    client = client_for(owner.user)
    assert client.get(page("instance_action", owner.tenant, instance.pk, "explode")).status_code == 404
    assert client.post(page("instance_action", owner.tenant, instance.pk, "explode")).status_code == 404


def test_a_suspended_tenant_may_stop_but_not_start(make_actor: Callable[..., Any], catalog: Any) -> None:
    tenant = TenantFactory(status=TenantStatus.SUSPENDED, status_reason="Unpaid")
    owner = make_actor(Role.OWNER, tenant=tenant)
    running = make_instance(tenant, created_by=owner.user, state="running")
    stopped = make_instance(tenant, created_by=owner.user, state="stopped")
    client = client_for(owner.user)

    assert client.post(page("instance_action", tenant, running.pk, "stop")).status_code == 302
    refused = client.post(page("instance_action", tenant, stopped.pk, "start"))
    assert refused.status_code == 403
    assert "suspended" in refused.content.decode()
    stopped.refresh_from_db()
    assert stopped.state == "stopped"


def test_a_viewer_sees_no_action_buttons_and_cannot_post(make_actor: Callable[..., Any], owner: Any) -> None:
    instance = make_instance(owner.tenant, created_by=owner.user, name="trainer")
    viewer = make_actor(Role.VIEWER, tenant=owner.tenant)
    client = client_for(viewer.user)

    detail = client.get(page("instance_detail", owner.tenant, instance.pk))
    assert detail.status_code == 200
    assert detail.context["actions"] == []
    html = detail.content.decode()
    assert "trainer" in html and "Instance actions" not in html
    for action in ("stop", "terminate"):
        url = page("instance_action", owner.tenant, instance.pk, action)
        assert url not in html
        assert client.get(url).status_code == 403
        assert client.post(url).status_code == 403
    instance.refresh_from_db()
    assert instance.state == "running"
    assert not AuditEvent.objects.filter(action__startswith="instance.").exists()


def test_another_tenants_instance_is_a_404_that_names_nothing(
    make_actor: Callable[..., Any], owner: Any
) -> None:
    secret = make_instance(owner.tenant, created_by=owner.user, name="secret-trainer")
    stranger = make_actor(Role.OWNER, tenant=TenantFactory(name="Other Co", slug="other"))
    client = client_for(stranger.user)

    urls = [
        # Their own tenant's URL with the other tenant's instance id, and the other tenant's URL.
        page("instance_detail", stranger.tenant, secret.pk),
        page("instance_status", stranger.tenant, secret.pk),
        page("instance_logs", stranger.tenant, secret.pk),
        page("instance_action", stranger.tenant, secret.pk, "stop"),
        page("instance_detail", owner.tenant, secret.pk),
        page("instances", owner.tenant),
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 404, url
        html = response.content.decode()
        assert "Acme Research" not in html and "secret-trainer" not in html, url
    assert client.post(page("instance_action", stranger.tenant, secret.pk, "terminate")).status_code == 404
    assert client.post(page("instance_action", owner.tenant, secret.pk, "terminate")).status_code == 404
    secret.refresh_from_db()
    assert secret.state == "running"


def test_pages_need_a_session(owner: Any) -> None:
    from django.test import Client

    instance = make_instance(owner.tenant, created_by=owner.user)
    response = Client().get(page("instance_detail", owner.tenant, instance.pk))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


# --- logs ----------------------------------------------------------------------------------------------


def test_logs_without_a_cluster_say_no_logs_yet(owner: Any) -> None:
    instance = make_instance(owner.tenant, created_by=owner.user)
    client = client_for(owner.user)

    fragment = client.get(page("instance_logs", owner.tenant, instance.pk), headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert "No logs yet." in fragment.content.decode() and "<html" not in fragment.content.decode()
    assert fragment.wsgi_request.htmx  # django-htmx's middleware read the header

    full = client.get(page("instance_logs", owner.tenant, instance.pk))
    assert "No logs yet." in full.content.decode() and "<html" in full.content.decode()
    assert not full.wsgi_request.htmx


def test_logs_are_shown_when_the_cluster_has_them(owner: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    instance = make_instance(owner.tenant, created_by=owner.user)
    monkeypatch.setattr(selectors, "pod_log_tail", lambda *, instance: "sshd: listening on 0.0.0.0 <ok>\n")
    html = client_for(owner.user).get(page("instance_logs", owner.tenant, instance.pk)).content.decode()
    assert "sshd: listening on 0.0.0.0 &lt;ok&gt;" in html
    assert "No logs yet." not in html


def test_pod_log_tail_reads_the_pod_and_swallows_errors(owner: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from kubernetes.client.rest import ApiException

    from apps.operator import client as kube_client
    from apps.operator import names

    instance = make_instance(owner.tenant, created_by=owner.user)
    monkeypatch.setattr(kube_client, "has_logs_credential", lambda region: True)
    monkeypatch.setattr(kube_client, "logs_api_client", lambda region: mock.MagicMock())
    calls: list[tuple[str, str, int]] = []

    def read(self: Cluster, namespace: str, name: str, *, tail_lines: int = 200, timeout: float = 3) -> str:
        calls.append((namespace, name, tail_lines))
        return "line 1\nline 2\n"

    monkeypatch.setattr(Cluster, "read_pod_log", read)
    assert selectors.pod_log_tail(instance=instance) == "line 1\nline 2\n"
    assert calls == [
        (
            names.namespace_name(owner.tenant.pk, owner.tenant.slug),
            names.instance_object_name(instance.pk),
            200,
        )
    ]

    def fail(self: Cluster, *args: Any, **kwargs: Any) -> str:
        raise ApiException(status=400, reason="container is waiting to start")

    monkeypatch.setattr(Cluster, "read_pod_log", fail)
    assert selectors.pod_log_tail(instance=instance) is None


OPERATOR_KUBECONFIG = (
    "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://operator.invalid'}}]\n"
    "users: [{name: u, user: {token: operator-token}}]\n"
    "contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n"
)
LOGS_KUBECONFIG = OPERATOR_KUBECONFIG.replace("operator", "logs")


def test_pod_logs_are_read_with_the_logs_credential_in_a_process_without_the_operators_keys(
    owner: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Web in production: LOGS_ENCRYPTION_KEYS but no FIELD_ENCRYPTION_KEYS and no key derived from
    SECRET_KEY. The log view still works, with the logs kubeconfig; the operator's is never decrypted."""
    from cryptography.fernet import Fernet

    from apps.core import crypto
    from apps.operator import client as kube_client

    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    settings.LOGS_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    instance = make_instance(owner.tenant, created_by=owner.user)
    region = instance.region
    region.set_kubeconfig(OPERATOR_KUBECONFIG)  # as the operator's pod stored it
    region.set_logs_kubeconfig(LOGS_KUBECONFIG)
    region.save()
    settings.FIELD_ENCRYPTION_KEYS = []
    settings.ENCRYPTION_KEYS_FROM_SECRET_KEY = False
    with pytest.raises(crypto.KeysUnavailable):
        region.get_kubeconfig()  # web cannot read the operator's credential at all

    servers: list[str] = []

    def read(self: Cluster, namespace: str, name: str, **kwargs: Any) -> str:
        servers.append(self.api.configuration.host)  # which credential's cluster entry built this client
        return "booted\n"

    monkeypatch.setattr(Cluster, "read_pod_log", read)  # the apiserver is the boundary here
    instance.refresh_from_db()
    assert selectors.pod_log_tail(instance=instance) == "booted\n"
    assert servers == ["https://logs.invalid"]
    kube_client._cache.clear()

    html = client_for(owner.user).get(page("instance_logs", owner.tenant, instance.pk)).content.decode()
    assert "booted" in html


def test_no_pod_logs_without_a_logs_credential_even_with_the_operators(owner: Any) -> None:
    from apps.operator import client as kube_client

    instance = make_instance(owner.tenant, created_by=owner.user)
    instance.region.set_kubeconfig(OPERATOR_KUBECONFIG)
    instance.region.save()
    with (
        mock.patch.object(kube_client, "api_client") as operator_client,
        mock.patch.object(Cluster, "read_pod_log", return_value="read with the operator's credential\n"),
    ):
        assert selectors.pod_log_tail(instance=instance) is None
    operator_client.assert_not_called()


def test_cluster_read_pod_log_asks_for_the_tail_with_a_short_timeout() -> None:
    cluster = Cluster.__new__(Cluster)
    cluster.core = mock.MagicMock()
    cluster.core.read_namespaced_pod_log.return_value = "hello\n"

    assert cluster.read_pod_log("t-acme-1234", "i-abc") == "hello\n"

    args, kwargs = cluster.core.read_namespaced_pod_log.call_args
    assert args == ("i-abc", "t-acme-1234")
    assert kwargs["tail_lines"] == 200
    assert kwargs["_request_timeout"] == (2, 3)
