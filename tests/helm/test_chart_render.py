"""helm/gpucloud without a cluster: lint, what each values file renders, and what the schema refuses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helm.support import (
    CHART,
    COMPONENTS,
    PRODUCTION_VALUES,
    REPO_ROOT,
    SECRET_SETTINGS,
    component,
    env_of,
    helm,
    kube_version,
    one,
    pick,
    pod_templates,
    render,
)

pytestmark = pytest.mark.sandbox  # helm (and kubectl) come from the sandbox build

VALUES_FILES = {"default": [], "production": ["-f", str(PRODUCTION_VALUES)]}


@pytest.fixture(scope="module")
def default_docs() -> list[dict[str, Any]]:
    return render()


@pytest.fixture(scope="module")
def production_docs() -> list[dict[str, Any]]:
    return render("-f", str(PRODUCTION_VALUES))


@pytest.fixture(scope="module", params=sorted(VALUES_FILES))
def docs(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(*VALUES_FILES[request.param])


@pytest.mark.parametrize("values", sorted(VALUES_FILES))
def test_helm_lint_is_clean(values: str) -> None:
    result = helm("lint", "--strict", str(CHART), "--kube-version", kube_version(), *VALUES_FILES[values])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_default_values_render_every_component(default_docs: list[dict[str, Any]]) -> None:
    kinds = sorted((d["kind"], component(d)) for d in default_docs)
    assert kinds == sorted(
        [
            *[("Deployment", c) for c in COMPONENTS],
            *[("ServiceAccount", c) for c in (*COMPONENTS, "migrations")],
            ("Service", "web"),
            ("Service", "worker"),
            ("Service", "operator"),
            ("ConfigMap", "config"),
            ("Job", "migrations"),
            ("ClusterRole", "operator"),
            ("ClusterRoleBinding", "operator"),
            ("ValidatingAdmissionPolicy", "operator"),
            ("ValidatingAdmissionPolicyBinding", "operator"),
            ("ClusterRole", "logs"),
            ("ServiceAccount", "logs"),
            ("HorizontalPodAutoscaler", "web"),
            ("HorizontalPodAutoscaler", "worker"),
            ("PodDisruptionBudget", "web"),
            ("PodDisruptionBudget", "worker"),
            ("PodDisruptionBudget", "operator"),
        ]
    )


def test_production_values_add_tls_ingress_and_service_monitor(production_docs: list[dict[str, Any]]) -> None:
    ingress = one(production_docs, "Ingress")
    hosts = ["console.gpucloud.example.com", "api.gpucloud.example.com"]
    assert ingress["spec"]["tls"] == [{"secretName": "gpucloud-tls", "hosts": hosts}]
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == hosts
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "gc-gpucloud-web", "port": {"name": "http"}}

    monitor = one(production_docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    web_endpoint, exporters = monitor["spec"]["endpoints"]
    # web's /metrics on its HTTP port, presenting METRICS_TOKEN from the Secret the web reads it from
    assert web_endpoint["port"] == "http" and web_endpoint["path"] == "/metrics"
    assert web_endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "gpucloud", "key": "METRICS_TOKEN"},
    }
    assert exporters["port"] == "metrics" and "authorization" not in exporters
    # It selects exactly the three metrics Services, whose ports the endpoints name.
    selector = monitor["spec"]["selector"]["matchLabels"].items()
    selected = [s for s in pick(production_docs, "Service") if selector <= s["metadata"]["labels"].items()]
    assert {component(s): [p["name"] for p in s["spec"]["ports"]] for s in selected} == {
        "web": ["http"],
        "worker": ["metrics"],
        "operator": ["metrics"],
    }

    config = one(production_docs, "ConfigMap")["data"]
    assert config["ALLOWED_HOSTS"] == ",".join(hosts)
    assert config["DJANGO_SETTINGS_MODULE"] == "config.settings.production"
    web = one(production_docs, "Deployment", "web")["spec"]["template"]["spec"]
    assert web["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert web["containers"][0]["image"] == "registry.example.com/gpucloud/gpucloud:0.1.0"


def test_service_monitor_and_ingress_only_when_enabled(default_docs: list[dict[str, Any]]) -> None:
    assert not pick(default_docs, "ServiceMonitor")
    assert not pick(default_docs, "Ingress")


def test_every_pod_runs_restricted(docs: list[dict[str, Any]]) -> None:
    pods = pod_templates(docs)
    assert set(pods) == {*COMPONENTS, "migrations"}
    for name, pod in pods.items():
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True, name
        assert context["runAsUser"] == 10001, name
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        tmp_volumes = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts["/tmp"] in tmp_volumes, name  # noqa: S108  # the pod's emptyDir, not a host path
            assert container["resources"]["requests"]["memory"], name
            assert container["resources"]["limits"]["memory"], name


def test_only_the_operator_holds_a_kubernetes_token(docs: list[dict[str, Any]]) -> None:
    for name, pod in pod_templates(docs).items():
        assert pod["automountServiceAccountToken"] is (name == "operator"), name
    for account in pick(docs, "ServiceAccount"):
        assert account["automountServiceAccountToken"] is (component(account) == "operator")
    assert not pick(docs, "Role") and not pick(docs, "RoleBinding")
    binding = one(docs, "ClusterRoleBinding")
    operator_sa = one(docs, "ServiceAccount", "operator")["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": operator_sa, "namespace": "gpucloud"}]
    assert binding["roleRef"]["name"] == one(docs, "ClusterRole", "operator")["metadata"]["name"]
    assert pod_templates(docs)["operator"]["serviceAccountName"] == operator_sa
    # The pod-logs role is bound by nobody cluster-wide: the operator binds it per tenant namespace.
    assert one(docs, "ClusterRole", "logs")["rules"] == [
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}
    ]


def test_operator_cluster_role_is_exactly_what_the_code_uses(default_docs: list[dict[str, Any]]) -> None:
    # Derived in templates/operator-rbac.yaml from apps/operator/*.py; a change here must be deliberate.
    role = one(default_docs, "ClusterRole", "operator")["rules"]
    rules = {
        (group, resource): sorted(rule["verbs"])
        for rule in role
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    apply = ["create", "patch"]
    stored = ["list", "watch"]  # the operator's watch-fed stores (apps/operator/stores.py)
    assert rules == {
        ("", "namespaces"): sorted([*apply, *stored, "delete"]),
        ("", "resourcequotas"): sorted([*apply, *stored]),
        ("", "limitranges"): sorted([*apply, *stored]),
        ("", "serviceaccounts"): sorted([*apply, *stored]),
        ("networking.k8s.io", "networkpolicies"): sorted([*apply, *stored]),
        ("rbac.authorization.k8s.io", "rolebindings"): sorted([*apply, *stored]),
        ("rbac.authorization.k8s.io", "clusterroles"): ["bind"],
        ("", "secrets"): sorted([*apply, "delete"]),  # no list, no get: it never reads a Secret
        ("", "services"): sorted([*apply, "get", *stored, "delete"]),
        ("", "pods"): sorted(["create", "get", "list", "watch", "delete"]),
        ("", "persistentvolumeclaims"): sorted([*apply, "get", "delete"]),
        ("", "configmaps"): apply,  # a cluster's hostfile: written, never read
        ("scheduling.k8s.io", "workloads"): ["create"],  # a cluster's gang
        ("", "events"): ["list", "watch"],
        ("", "nodes"): ["get", "list", "watch"],
    }
    # The one named rule: it may bind the pod-logs role, and no other, without holding its right.
    logs_role = one(default_docs, "ClusterRole", "logs")["metadata"]["name"]
    assert [rule.get("resourceNames") for rule in role if "resourceNames" in rule] == [[logs_role]]
    assert [rule["verbs"] for rule in role if "resourceNames" in rule] == [["bind"]]


def test_the_admission_policy_binds_the_operators_identities_and_covers_every_write(
    default_docs: list[dict[str, Any]],
) -> None:
    """templates/operator-policy.yaml: every resource the operator may write is matched, for exactly its
    ServiceAccount (and rbac.operatorUsers), and the binding denies."""
    policy = one(default_docs, "ValidatingAdmissionPolicy")
    binding = one(default_docs, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}
    assert policy["spec"]["failurePolicy"] == "Fail"
    [condition] = policy["spec"]["matchConditions"]
    assert condition["expression"] == (
        'request.userInfo.username in ["system:serviceaccount:gpucloud:gc-gpucloud-operator"]'
    )
    matched = {
        (group, resource)
        for rule in policy["spec"]["matchConstraints"]["resourceRules"]
        if set(rule["operations"]) == {"CREATE", "UPDATE", "DELETE"}
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    writable = {
        (group, resource)
        for rule in one(default_docs, "ClusterRole", "operator")["rules"]
        if {"create", "patch", "delete"} & set(rule["verbs"])
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert writable <= matched, writable - matched
    assert all(v.get("reason") == "Forbidden" for v in policy["spec"]["validations"])

    users = render(
        "--set", "rbac.operatorUsers={gpucloud-operator}", "--set", "rbac.logsUsers={gpucloud-logs}"
    )
    [condition] = one(users, "ValidatingAdmissionPolicy")["spec"]["matchConditions"]
    assert condition["expression"].endswith(
        '["system:serviceaccount:gpucloud:gc-gpucloud-operator","gpucloud-operator"]'
    )
    assert {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "gpucloud-operator"} in one(
        users, "ClusterRoleBinding"
    )["subjects"]
    assert (
        's.name in ["gpucloud-logs"]'
        in one(users, "ValidatingAdmissionPolicy")["spec"]["validations"][-1]["expression"]
    )


def test_the_operator_binds_the_logs_role_to_the_logs_identity(default_docs: list[dict[str, Any]]) -> None:
    env = env_of(pod_templates(default_docs)["operator"]["containers"][0])
    assert (
        env["LOGS_READER_CLUSTER_ROLE"]["value"]
        == one(default_docs, "ClusterRole", "logs")["metadata"]["name"]
    )
    logs_sa = one(default_docs, "ServiceAccount", "logs")
    assert logs_sa["automountServiceAccountToken"] is False
    assert env["LOGS_READER_SUBJECTS"]["value"] == f"ServiceAccount:gpucloud:{logs_sa['metadata']['name']}"
    users = render("--set", "rbac.logsUsers={gpucloud-logs}")
    env = env_of(pod_templates(users)["operator"]["containers"][0])
    assert env["LOGS_READER_SUBJECTS"]["value"].endswith(",User:gpucloud-logs")


def test_web_serves_gunicorn_with_health_probes(default_docs: list[dict[str, Any]]) -> None:
    pod = one(default_docs, "Deployment", "web")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"][:3] == ["gunicorn", "config.wsgi:application", "--bind=0.0.0.0:8000"]
    assert {"--worker-tmp-dir=/tmp", "--no-control-socket"} <= set(container["command"])
    assert "--config=python:config.gunicorn" in container["command"]  # its own log as JSON, redacted
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # Probes (and Prometheus) reach the pod by IP: ALLOWED_HOSTS names it, after POD_IP is defined.
    names = [e["name"] for e in container["env"]]
    assert names.index("POD_IP") < names.index("ALLOWED_HOSTS")
    assert env_of(container)["ALLOWED_HOSTS"]["value"] == "gpucloud.example.com,$(POD_IP)"
    service = one(default_docs, "Service", "web")
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]


def test_every_deployment_has_a_liveness_probe(docs: list[dict[str, Any]]) -> None:
    """web is probed over HTTP; worker, beat and operator by the age of the heartbeat file their main loop
    touches (apps/core/heartbeat.py), which their environment names; worker and operator are ready once
    their exporter answers."""
    deployments = {component(d): d for d in pick(docs, "Deployment")}
    assert set(deployments) == set(COMPONENTS)
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert "livenessProbe" in container, name
        assert "startupProbe" in container, name
        probe = container["livenessProbe"]
        if name == "web":
            assert probe["httpGet"] == {"path": "/healthz", "port": "http"}
            continue
        command = probe["exec"]["command"]
        assert command == ["python", "-m", "apps.core.heartbeat", "/tmp/heartbeat", "120"], name  # noqa: S108
        assert container["startupProbe"]["exec"]["command"] == command, name
        assert env_of(container)["HEARTBEAT_FILE"]["value"] == command[3], name
        # Stale for longer than the heartbeat's interval many times over before the pod restarts.
        assert probe["periodSeconds"] * probe["failureThreshold"] >= 60, name
        if name in ("worker", "operator"):
            assert container["readinessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}, name
        else:
            assert "readinessProbe" not in container, name  # beat: no Service, strategy Recreate


def test_heartbeat_probe_answers_by_the_files_age(tmp_path: Path) -> None:
    """The rendered probe command itself, run against a missing, a fresh and a stale file."""
    docs = render("--set", "heartbeat.maxAgeSeconds=60")
    container = one(docs, "Deployment", "operator")["spec"]["template"]["spec"]["containers"][0]
    python, *args = container["livenessProbe"]["exec"]["command"]
    assert python == "python" and args[-1] == "60"
    beat_file = tmp_path / "heartbeat"
    args[-2] = str(beat_file)

    def probe() -> int:
        env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}  # no Django needed
        result = subprocess.run(
            [sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode in (0, 1), result.stderr
        return result.returncode

    assert probe() == 1  # not touched yet
    beat_file.touch()
    assert probe() == 0
    stale = time.time() - 61
    os.utime(beat_file, (stale, stale))
    assert probe() == 1


def test_worker_and_operator_serve_metrics_on_the_pod_address(default_docs: list[dict[str, Any]]) -> None:
    for name, port in (("worker", 9101), ("operator", 9102)):
        (container,) = one(default_docs, "Deployment", name)["spec"]["template"]["spec"]["containers"]
        assert container["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
        env = env_of(container)
        assert env["METRICS_BIND_ADDRESS"]["value"] == "0.0.0.0"  # noqa: S104  # inside the pod
        assert env[f"METRICS_{name.upper()}_PORT"]["value"] == str(port)
        service = one(default_docs, "Service", name)
        assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    # Gunicorn's and Celery's processes add their metrics up through an emptyDir (not beat, not operator).
    for name, pod in pod_templates(default_docs).items():
        env = env_of(pod["containers"][0])
        multiproc = name in ("web", "worker")
        assert ("PROMETHEUS_MULTIPROC_DIR" in env) is multiproc, name
        if multiproc:
            mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
            volume = mounts[env["PROMETHEUS_MULTIPROC_DIR"]["value"]]
            assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == volume)


def test_worker_beat_and_operator_commands() -> None:
    docs = render(
        "--set",
        "beat.extraArgs={--max-interval=10}",
        "--set-string",
        "beat.env.BEAT_LOCK_TIMEOUT=60",
        "--set",
        "operator.regions={us-east-1,eu-west-1}",
        "--set",
        "database.maxConnections=200",  # two regions' operator threads (docs/operations.md)
    )
    worker = one(docs, "Deployment", "worker")["spec"]["template"]["spec"]["containers"][0]
    assert worker["command"] == ["celery", "-A", "config", "worker", "--loglevel=INFO", "--concurrency=4"]

    beat = one(docs, "Deployment", "beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    (container,) = beat["spec"]["template"]["spec"]["containers"]
    assert container["command"] == [
        "celery",
        "-A",
        "config",
        "beat",
        "--loglevel=INFO",
        "--schedule=/tmp/celerybeat-schedule",
        "--max-interval=10",
    ]
    assert env_of(container)["BEAT_LOCK_TIMEOUT"] == {"name": "BEAT_LOCK_TIMEOUT", "value": "60"}

    operator = one(docs, "Deployment", "operator")
    assert operator["spec"]["replicas"] == 2
    assert operator["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "python",
        "manage.py",
        "operator",
        "--resync-seconds=30",
        "--pod-workers=2",
        "--change-workers=2",
        "--resync-workers=4",
        "--region=us-east-1",
        "--region=eu-west-1",
    ]


def test_autoscaler_owns_the_replica_count_when_enabled(default_docs: list[dict[str, Any]]) -> None:
    for name in ("web", "worker"):
        assert "replicas" not in one(default_docs, "Deployment", name)["spec"]
        hpa = one(default_docs, "HorizontalPodAutoscaler", name)
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": f"gc-gpucloud-{name}",
        }
    fixed = render("--set", "web.autoscaling.enabled=false", "--set", "web.replicas=3")
    assert one(fixed, "Deployment", "web")["spec"]["replicas"] == 3
    assert [component(h) for h in pick(fixed, "HorizontalPodAutoscaler")] == ["worker"]


def test_disruption_budgets_only_for_more_than_one_pod() -> None:
    docs = render("--set", "operator.replicas=1", "--set", "worker.autoscaling.minReplicas=1")
    assert [component(p) for p in pick(docs, "PodDisruptionBudget")] == ["web"]
    assert one(docs, "PodDisruptionBudget", "web")["spec"]["minAvailable"] == 1


def test_secrets_reach_pods_only_by_reference(docs: list[dict[str, Any]]) -> None:
    assert not pick(docs, "Secret")
    config = one(docs, "ConfigMap")["data"]
    assert not SECRET_SETTINGS & set(config)
    for name, pod in pod_templates(docs).items():
        env = env_of(pod["containers"][0])
        for setting in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL"):
            assert set(env[setting]["valueFrom"]) == {"secretKeyRef"}, (name, setting)
        for setting in SECRET_SETTINGS & set(env):
            assert "value" not in env[setting], (name, setting)
            assert set(env[setting]["valueFrom"]) == {"secretKeyRef"}, (name, setting)


# Which process may decrypt which credential (helpers "gpucloud.secretScopes"; docs/operations.md).
KEY_HOLDERS = {
    "FIELD_ENCRYPTION_KEYS": {"worker", "operator"},
    "LOGS_ENCRYPTION_KEYS": {"web"},
    "STORAGE_ENCRYPTION_KEYS": {"web", "worker"},
}


def test_each_encryption_key_set_reaches_only_the_processes_that_decrypt_with_it(
    docs: list[dict[str, Any]],
) -> None:
    """The operator's cluster credentials are decrypted by the operator and the worker only; web, beat and
    the migrations hook never receive FIELD_ENCRYPTION_KEYS. The logs credentials: web only. The tenants'
    presign secrets: web (which signs URLs) and the worker."""
    pods = pod_templates(docs)
    for setting, holders in KEY_HOLDERS.items():
        having = {name for name, pod in pods.items() if setting in env_of(pod["containers"][0])}
        assert having == holders, (setting, having)


def test_key_scopes_hold_whatever_secrets_env_says() -> None:
    """Mapping the key set under another name or Secret does not widen who gets it."""
    docs = render(
        "--set",
        "secrets.env.FIELD_ENCRYPTION_KEYS.secretName=elsewhere",
        "--set",
        "secrets.env.LOGS_ENCRYPTION_KEYS.optional=false",
    )
    pods = pod_templates(docs)
    for setting, holders in KEY_HOLDERS.items():
        assert {n for n, pod in pods.items() if setting in env_of(pod["containers"][0])} == holders
    field = env_of(pods["operator"]["containers"][0])["FIELD_ENCRYPTION_KEYS"]["valueFrom"]["secretKeyRef"]
    assert field["name"] == "elsewhere"


def test_secret_references_name_their_secret(production_docs: list[dict[str, Any]]) -> None:
    env = env_of(one(production_docs, "Deployment", "worker")["spec"]["template"]["spec"]["containers"][0])
    assert env["STRIPE_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "gpucloud-stripe",
        "key": "secret-key",
    }
    assert env["SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "gpucloud", "key": "SECRET_KEY"}


def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook(default_docs: list[dict[str, Any]]) -> None:
    job = one(default_docs, "Job", "migrations")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["command"] == ["python", "manage.py", "migrate", "--noinput"]
    # Hooks run before the release's ConfigMap exists: the settings are inline.
    assert "envFrom" not in container
    env = env_of(container)
    assert env["DJANGO_SETTINGS_MODULE"]["value"] == "config.settings.production"
    assert env["ALLOWED_HOSTS"]["value"] == "gpucloud.example.com"
    # Its ServiceAccount is a hook too, created first (lower weight).
    account = one(default_docs, "ServiceAccount", "migrations")
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert account["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(account["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        annotations["helm.sh/hook-weight"]
    )
    assert not pick(render("--set", "migrations.enabled=false"), "Job")


def test_a_changed_setting_rolls_the_pods(default_docs: list[dict[str, Any]]) -> None:
    def checksums(docs: list[dict[str, Any]]) -> set[str]:
        return {
            d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            for d in pick(docs, "Deployment")
        }

    before = checksums(default_docs)
    assert len(before) == 1
    assert checksums(render("--set", "config.LOG_LEVEL=DEBUG")).isdisjoint(before)


SCHEMA = "values don't meet the specifications of the schema"
# Refused by the schema (helm names the field), or by a template's `fail` where the schema cannot say it.
REFUSALS = [
    (["--set-string", "web.replicas=two"], [SCHEMA, "/web/replicas", "want integer"]),
    (["--set", "secrets.env.SECRET_KEY=plaintext-value"], [SCHEMA, "/secrets/env/SECRET_KEY", "want object"]),
    (["--set", "config.STRIPE_SECRET_KEY=plaintext-value"], [SCHEMA, "/config/STRIPE_SECRET_KEY"]),
    (["--set", "config.DATABASE_URL=plaintext-value"], [SCHEMA, "/config/DATABASE_URL"]),
    (["--set", "worker.env.SMTP_PASSWORD=plaintext-value"], [SCHEMA, "/worker/env/SMTP_PASSWORD"]),
    (["--set", "secretKey=plaintext-value"], [SCHEMA, "additional properties 'secretKey' not allowed"]),
    (["--set", "web.replicaz=2"], [SCHEMA, "/web", "additional properties 'replicaz' not allowed"]),
    (["--set", "image.pullPolicy=Sometimes"], [SCHEMA, "/image/pullPolicy", "IfNotPresent"]),
    (["--set", "secrets.env.SECRET_KEY=null"], [SCHEMA, "/secrets/env", "missing property 'SECRET_KEY'"]),
    (["--set", "web.port=80"], [SCHEMA, "/web/port", "1,024"]),
    (["--set", "beat.replicas=0"], [SCHEMA, "/beat/replicas"]),
    (["--set", "beat.replicas=3"], [SCHEMA, "/beat/replicas", "maximum"]),  # docs: at most 2
    (["--set", "operator.podWorkers=0"], [SCHEMA, "/operator/podWorkers", "minimum"]),
    (["--set", "ingress.hosts[0].paths[0].pathType=Anything"], [SCHEMA, "/ingress/hosts/0/paths/0/pathType"]),
    # What config/settings accept: LOG_FORMAT json|plain (observability.LOG_FORMATS), LOG_LEVEL a level name.
    (["--set", "config.LOG_FORMAT=xml"], [SCHEMA, "/config/LOG_FORMAT", "'json', 'plain'"]),
    (["--set", "config.LOG_LEVEL=verbose"], [SCHEMA, "/config/LOG_LEVEL", "'WARNING'"]),
    (["--set", "config.LOG_LEVEL=info"], [SCHEMA, "/config/LOG_LEVEL"]),
    (["--set", "worker.env.LOG_LEVEL=loud"], [SCHEMA, "/worker/env/LOG_LEVEL"]),
    (["--set", "config.lower_case=x"], [SCHEMA, "/config/lower_case"]),
    (["--set", "config.TRUSTED_PROXY_HOPS=-1"], [SCHEMA, "/config/TRUSTED_PROXY_HOPS", "minimum"]),
    (["--set-string", "config.TRUSTED_PROXY_HOPS=1"], [SCHEMA, "/config/TRUSTED_PROXY_HOPS", "want integer"]),
    (["--set", "heartbeat.maxAgeSeconds=5"], [SCHEMA, "/heartbeat/maxAgeSeconds", "minimum"]),
    # An enabled ingress needs a host (a disabled one may have none).
    (
        ["--set", "ingress.enabled=true", "--set-json", "ingress.hosts=[]"],
        [SCHEMA, "/ingress/hosts", "minItems"],
    ),
    (["--set", "ingress.enabled=true", "--set", "ingress.hosts=null"], [SCHEMA, "missing property 'hosts'"]),
    # The HorizontalPodAutoscaler would be refused by the apiserver (or silently clamped).
    (
        ["--set", "web.autoscaling.minReplicas=5", "--set", "web.autoscaling.maxReplicas=3"],
        ["web.autoscaling.minReplicas (5) must not be above web.autoscaling.maxReplicas (3)"],
    ),
    (
        ["--set", "worker.autoscaling.minReplicas=5"],
        ["worker.autoscaling.minReplicas (5) must not be above worker.autoscaling.maxReplicas (4)"],
    ),
]


@pytest.mark.parametrize(("args", "names"), REFUSALS)
def test_invalid_values_are_refused(args: list[str], names: list[str]) -> None:
    result = helm("template", "gc", str(CHART), "--kube-version", kube_version(), *args)
    assert result.returncode != 0
    for name in names:
        assert name in result.stderr
    assert "plaintext-value" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--set", "ingress.enabled=false", "--set-json", "ingress.hosts=[]"],
        [
            "--set",
            "web.autoscaling.minReplicas=4",
            "--set",
            "web.autoscaling.maxReplicas=4",
            "--set",
            "database.maxConnections=110",  # 5 web pods at their peak
        ],
        ["--set", "web.autoscaling.enabled=false", "--set", "web.autoscaling.minReplicas=5"],
        ["--set", "config.LOG_FORMAT=plain", "--set", "config.LOG_LEVEL=WARNING"],
        ["--set", "config.TRUSTED_PROXY_HOPS=2", "--set-string", "web.env.TRUSTED_PROXY_HOPS=2"],
    ],
)
def test_valid_edge_values_render(args: list[str]) -> None:
    assert pick(render(*args), "Deployment")


def test_trusted_proxy_hops_reaches_the_config_map(
    default_docs: list[dict[str, Any]], production_docs: list[dict[str, Any]]
) -> None:
    # Without an ingress nothing appends to X-Forwarded-For; the production-like values sit behind one.
    assert one(default_docs, "ConfigMap")["data"]["TRUSTED_PROXY_HOPS"] == "0"
    assert one(production_docs, "ConfigMap")["data"]["TRUSTED_PROXY_HOPS"] == "1"
    assert pick(production_docs, "Ingress")


def test_rendering_needs_a_host(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("allowedHosts: []\n")
    result = helm("template", "gc", str(CHART), "--kube-version", kube_version(), "-f", str(values))
    assert result.returncode != 0
    assert "allowedHosts (or ingress.hosts with ingress.enabled) must name at least one host" in result.stderr
