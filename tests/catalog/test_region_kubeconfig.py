"""A region's kubeconfig is encrypted at rest, set in the admin and never shown back."""

from __future__ import annotations

import pytest
from django.db import connection

from apps.audit.models import AuditEvent
from apps.catalog.admin import RegionForm
from apps.catalog.models import Region
from apps.core import crypto
from tests.conftest import login_staff
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: us-east-1
  cluster: {server: "https://10.0.0.1:6443", certificate-authority-data: Q0EtREFUQQ==}
users:
- name: gpucloud
  user: {token: super-secret-service-account-token}
contexts:
- name: us-east-1
  context: {cluster: us-east-1, user: gpucloud}
current-context: us-east-1
"""
SECRET = "super-secret-service-account-token"


def stored_column(region: Region) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT kubeconfig_encrypted FROM catalog_region WHERE id = %s", [region.pk])
        return cursor.fetchone()[0]


def test_kubeconfig_is_encrypted_at_rest_and_round_trips():
    region = Region(slug="r1", name="R1")
    region.set_kubeconfig(KUBECONFIG)
    region.save()

    raw = stored_column(region)
    assert raw
    assert SECRET not in raw
    assert "clusters" not in raw
    assert Region.objects.get(pk=region.pk).get_kubeconfig() == KUBECONFIG
    assert region.has_kubeconfig


def test_each_encryption_differs():
    one, two = Region(slug="a", name="A"), Region(slug="b", name="B")
    one.set_kubeconfig(KUBECONFIG)
    two.set_kubeconfig(KUBECONFIG)

    assert one.kubeconfig_encrypted != two.kubeconfig_encrypted


def test_no_kubeconfig():
    region = Region.objects.create(slug="r1", name="R1")

    assert region.get_kubeconfig() == ""
    assert not region.has_kubeconfig


def test_a_key_rotation_keeps_old_values_readable(settings):
    settings.FIELD_ENCRYPTION_KEYS = ["kP8vZ0o3hW2dC8p5s1mQeW9tY6uI4oP2aS7dF3gH1jA="]
    region = Region(slug="r1", name="R1")
    region.set_kubeconfig(KUBECONFIG)
    region.save()

    settings.FIELD_ENCRYPTION_KEYS = [
        "bq3TLkHc1H1Jr8CkR0tD1o6gGXlpB0F8lN5cQ8XcZzE=",
        *settings.FIELD_ENCRYPTION_KEYS,
    ]
    assert Region.objects.get(pk=region.pk).get_kubeconfig() == KUBECONFIG

    settings.FIELD_ENCRYPTION_KEYS = ["bq3TLkHc1H1Jr8CkR0tD1o6gGXlpB0F8lN5cQ8XcZzE="]
    with pytest.raises(ValueError, match="Cannot decrypt"):
        Region.objects.get(pk=region.pk).get_kubeconfig()


def form_data(**overrides):
    data = {
        "slug": "us-east-1",
        "name": "US East 1",
        "status": "available",
        "position": "0",
        "kubeconfig_context": "",
        "storage_class": "",
        "storage_access_mode": "ReadWriteOnce",
        "storage_expandable": "on",
        "access_service_type": "NodePort",
        "runtime_class_name": "",
        "blocked_egress_cidrs": "",
        "topology_block_label": "network.topology.nvidia.com/spine",
        "topology_rack_label": "network.topology.nvidia.com/leaf",
        "max_cluster_nodes": "64",
        "fabric_env": "{}",
        "rdma_resources": "{}",
        "kubeconfig": "",
        "capacities-TOTAL_FORMS": "0",
        "capacities-INITIAL_FORMS": "0",
        "capacities-MIN_NUM_FORMS": "0",
        "capacities-MAX_NUM_FORMS": "1000",
    }
    data.update(overrides)
    return data


@pytest.fixture
def staff_client(client):
    return login_staff(client, UserFactory(is_staff=True, is_superuser=True))


def test_the_admin_sets_the_kubeconfig_and_never_renders_it_back(staff_client):
    response = staff_client.post("/admin/catalog/region/add/", form_data(kubeconfig=KUBECONFIG))

    assert response.status_code == 302, response.content.decode()[:2000]
    region = Region.objects.get(slug="us-east-1")
    assert region.get_kubeconfig().strip() == KUBECONFIG.strip()
    page = staff_client.get(f"/admin/catalog/region/{region.pk}/change/").content.decode()
    assert SECRET not in page
    assert region.kubeconfig_encrypted not in page
    audit = AuditEvent.objects.get(action="admin.region.create")
    assert SECRET not in str(audit.changes)


def test_the_admin_keeps_the_kubeconfig_when_left_empty_and_clears_it_on_request(staff_client):
    region = Region(slug="us-east-1", name="US East 1")
    region.set_kubeconfig(KUBECONFIG)
    region.save()
    url = f"/admin/catalog/region/{region.pk}/change/"

    assert staff_client.post(url, form_data(storage_class="fast")).status_code == 302
    region.refresh_from_db()
    assert (region.storage_class, region.get_kubeconfig()) == ("fast", KUBECONFIG)

    assert staff_client.post(url, form_data(clear_kubeconfig="on")).status_code == 302
    region.refresh_from_db()
    assert not region.has_kubeconfig


def test_the_admin_list_shows_only_whether_a_kubeconfig_is_set(staff_client):
    region = Region(slug="us-east-1", name="US East 1")
    region.set_kubeconfig(KUBECONFIG)
    region.save()

    page = staff_client.get("/admin/catalog/region/").content.decode()

    assert "us-east-1" in page
    assert SECRET not in page


@pytest.mark.parametrize(
    ("kubeconfig", "message"),
    [
        ("clusters: [unclosed", "Not valid YAML."),
        ("just a string", "Not a kubeconfig"),
        ("apiVersion: v1\nkind: Config\nusers: []\n", "Not a kubeconfig"),
    ],
)
def test_the_admin_form_refuses_what_is_not_a_kubeconfig(kubeconfig, message):
    form = RegionForm(data=form_data(kubeconfig=kubeconfig))

    assert not form.is_valid()
    assert message in form.errors["kubeconfig"][0]


def test_the_admin_refuses_bad_yaml_and_keeps_the_old_value(staff_client):
    region = Region(slug="us-east-1", name="US East 1")
    region.set_kubeconfig(KUBECONFIG)
    region.save()

    response = staff_client.post(
        f"/admin/catalog/region/{region.pk}/change/", form_data(kubeconfig="clusters: [unclosed")
    )

    assert response.status_code == 200  # the form again, with the error
    assert "Not valid YAML." in response.content.decode()
    region.refresh_from_db()
    assert region.get_kubeconfig() == KUBECONFIG


EXEC_KUBECONFIG = KUBECONFIG.replace(
    "user: {token: super-secret-service-account-token}",
    "user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sh, args: [-c, 'id']}}",
)
TOKEN_FILE_KUBECONFIG = KUBECONFIG.replace(
    "user: {token: super-secret-service-account-token}",
    "user: {tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token}",
)
HTTP_KUBECONFIG = KUBECONFIG.replace('"https://10.0.0.1:6443"', '"http://127.0.0.1:8080"')


@pytest.mark.parametrize(
    ("kubeconfig", "field"),
    [
        (EXEC_KUBECONFIG, "users[0].user.exec"),
        (TOKEN_FILE_KUBECONFIG, "users[0].user.tokenFile"),
        (HTTP_KUBECONFIG, "clusters[0].cluster.server"),
    ],
)
def test_the_admin_refuses_a_kubeconfig_that_runs_code_reads_files_or_is_not_https(
    staff_client, kubeconfig, field
):
    response = staff_client.post("/admin/catalog/region/add/", form_data(kubeconfig=kubeconfig))

    assert response.status_code == 200  # the form again, naming the field
    assert field in response.content.decode()
    assert not Region.objects.exists()


def test_a_sandbox_region_may_use_plain_http(staff_client):
    response = staff_client.post(
        "/admin/catalog/region/add/", form_data(kubeconfig=HTTP_KUBECONFIG, sandbox="on")
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    region = Region.objects.get(slug="us-east-1")
    assert region.sandbox and region.get_kubeconfig().strip() == HTTP_KUBECONFIG.strip()


def test_a_sandbox_region_still_may_not_run_code(staff_client):
    response = staff_client.post(
        "/admin/catalog/region/add/", form_data(kubeconfig=EXEC_KUBECONFIG, sandbox="on")
    )

    assert response.status_code == 200
    assert "users[0].user.exec" in response.content.decode()
    assert not Region.objects.exists()


def test_unmarking_a_sandbox_checks_the_stored_kubeconfig_again(staff_client):
    region = Region(slug="us-east-1", name="US East 1", sandbox=True)
    region.set_kubeconfig(HTTP_KUBECONFIG)
    region.save()
    url = f"/admin/catalog/region/{region.pk}/change/"

    refused = staff_client.post(url, form_data())  # sandbox unticked, kubeconfig kept

    assert refused.status_code == 200
    assert "clusters[0].cluster.server" in refused.content.decode()
    region.refresh_from_db()
    assert region.sandbox
    # Clearing it (or pasting an https one) in the same change is fine.
    assert staff_client.post(url, form_data(clear_kubeconfig="on")).status_code == 302
    region.refresh_from_db()
    assert not region.sandbox and not region.has_kubeconfig


def test_the_image_policy_refuses_ip_addresses_and_localhost_in_the_allowlist(staff_client):
    from apps.catalog.models import ImagePolicy

    policy = ImagePolicy.current()
    url = f"/admin/catalog/imagepolicy/{policy.pk}/change/"
    data = {"allow_custom_images": "on", "allowed_registries": "ghcr.io,10.0.0.5:5000,localhost"}

    response = staff_client.post(url, data)

    assert response.status_code == 200
    page = response.content.decode()
    assert "10.0.0.5:5000: IP addresses are not allowed" in page and "localhost: localhost" in page
    policy.refresh_from_db()
    assert policy.allowed_registries == []
    assert staff_client.post(url, {**data, "allowed_registries": "ghcr.io,nvcr.io"}).status_code == 302
    policy.refresh_from_db()
    assert policy.allowed_registries == ["ghcr.io", "nvcr.io"]


# --- two key sets: the operator's credential (FIELD) and the console's logs credential (LOGS) -------------


@pytest.fixture
def web_process(settings):
    """Settings as web has them in production: LOGS_ENCRYPTION_KEYS, no FIELD_ENCRYPTION_KEYS, and no key
    derived from SECRET_KEY (config/settings/production.py)."""
    settings.FIELD_ENCRYPTION_KEYS = []
    settings.LOGS_ENCRYPTION_KEYS = ["bq3TLkHc1H1Jr8CkR0tD1o6gGXlpB0F8lN5cQ8XcZzE="]
    settings.ENCRYPTION_KEYS_FROM_SECRET_KEY = False
    return settings


def test_the_two_credentials_are_encrypted_under_different_keys(settings):
    settings.FIELD_ENCRYPTION_KEYS = ["kP8vZ0o3hW2dC8p5s1mQeW9tY6uI4oP2aS7dF3gH1jA="]
    settings.LOGS_ENCRYPTION_KEYS = ["bq3TLkHc1H1Jr8CkR0tD1o6gGXlpB0F8lN5cQ8XcZzE="]
    region = Region(slug="r1", name="R1")
    region.set_kubeconfig(KUBECONFIG)
    region.set_logs_kubeconfig(KUBECONFIG)
    region.save()

    settings.FIELD_ENCRYPTION_KEYS, settings.LOGS_ENCRYPTION_KEYS = settings.LOGS_ENCRYPTION_KEYS, []
    settings.ENCRYPTION_KEYS_FROM_SECRET_KEY = False
    region.refresh_from_db()
    with pytest.raises(ValueError, match="Cannot decrypt: wrong FIELD_ENCRYPTION_KEYS"):
        region.get_kubeconfig()  # the logs key does not open the operator's credential
    with pytest.raises(crypto.KeysUnavailable, match="LOGS_ENCRYPTION_KEYS"):
        region.get_logs_kubeconfig()


def test_without_its_key_set_a_production_process_can_neither_read_nor_write(settings, web_process):
    settings.ENCRYPTION_KEYS_FROM_SECRET_KEY = True  # as dev stored it: a key derived from SECRET_KEY
    region = Region(slug="r1", name="R1")
    region.set_kubeconfig(KUBECONFIG)
    region.save()
    settings.ENCRYPTION_KEYS_FROM_SECRET_KEY = False  # production: SECRET_KEY alone opens nothing

    with pytest.raises(crypto.KeysUnavailable, match="This process holds no FIELD_ENCRYPTION_KEYS"):
        Region.objects.get(pk=region.pk).get_kubeconfig()
    with pytest.raises(crypto.KeysUnavailable):
        Region(slug="r2", name="R2").set_kubeconfig(KUBECONFIG)
    assert not crypto.available(crypto.FIELD) and crypto.available(crypto.LOGS)


def test_the_admin_in_web_refuses_the_operators_kubeconfig_and_names_the_way(staff_client, web_process):
    response = staff_client.post("/admin/catalog/region/add/", form_data(kubeconfig=KUBECONFIG))

    assert response.status_code == 200  # the form again, with the error on the field
    page = response.content.decode()
    assert "This process holds no FIELD_ENCRYPTION_KEYS" in page
    assert "manage.py connect_region" in page
    assert not Region.objects.filter(slug="us-east-1").exists()  # nothing half-written


def test_the_admin_in_web_stores_the_logs_kubeconfig(staff_client, web_process):
    response = staff_client.post("/admin/catalog/region/add/", form_data(logs_kubeconfig=KUBECONFIG))

    assert response.status_code == 302, response.content.decode()[:2000]
    region = Region.objects.get(slug="us-east-1")
    assert region.get_logs_kubeconfig().strip() == KUBECONFIG.strip()
    assert not region.has_kubeconfig
    assert SECRET not in region.logs_kubeconfig_encrypted
    assert SECRET not in staff_client.get(f"/admin/catalog/region/{region.pk}/change/").content.decode()
    audit = AuditEvent.objects.get(action="admin.region.create")
    assert SECRET not in str(audit.changes)


def test_connect_region_stores_each_credential_where_its_keys_are(tmp_path, settings, web_process):
    from io import StringIO

    from django.core.management import CommandError, call_command

    region = Region.objects.create(slug="us-east-1", name="US East 1")
    path = tmp_path / "k.yaml"
    path.write_text(KUBECONFIG)

    with pytest.raises(CommandError, match="holds no FIELD_ENCRYPTION_KEYS"):  # in web's pod
        call_command("connect_region", "us-east-1", "--kubeconfig", str(path), "--logs-kubeconfig", str(path))
    region.refresh_from_db()
    assert not region.has_kubeconfig and not region.has_logs_kubeconfig  # nothing half-written

    settings.FIELD_ENCRYPTION_KEYS = ["kP8vZ0o3hW2dC8p5s1mQeW9tY6uI4oP2aS7dF3gH1jA="]  # the operator's pod
    settings.LOGS_ENCRYPTION_KEYS = []
    out = StringIO()
    call_command(
        "connect_region", "us-east-1", "--kubeconfig", str(path), "--context", "us-east-1", stdout=out
    )
    region.refresh_from_db()
    assert (region.get_kubeconfig(), region.kubeconfig_context) == (KUBECONFIG, "us-east-1")
    event = AuditEvent.objects.get(action="region.connect")
    assert event.metadata == {"fields": ["kubeconfig_encrypted", "kubeconfig_context"]}
    assert SECRET not in str(event.changes) + str(event.metadata)

    bad = tmp_path / "bad.yaml"
    bad.write_text("users: []\n")
    with pytest.raises(CommandError, match="Not a kubeconfig"):
        call_command("connect_region", "us-east-1", "--kubeconfig", str(bad))
    with pytest.raises(CommandError, match="No region"):
        call_command("connect_region", "nowhere-1", "--kubeconfig", str(path))
