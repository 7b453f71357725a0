#!/usr/bin/env bash
# Checks helm/gpucloud (docs/operations.md "Helm chart"); `make chart` runs it before the test suite.
#   1. helm lint --strict with the default values and helm/gpucloud/ci/production-values.yaml
#   2. helm template with both
#   3. kubectl apply --dry-run=server of both renders against the sandbox's default region, in a throwaway
#      namespace that enforces the restricted Pod Security Standard (deleted on exit)
# tests/helm/ proves the rest (schema refusals, an actual install, RBAC via kubectl auth can-i) under pytest.
# Needs a sandbox instance: the tests' one, `test` (make test-sandbox), unless GPUCLOUD_SANDBOX_INSTANCE names
# another; its helm and kubectl, and its running apiserver. Any failure fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../sandbox/common.sh
. "$ROOT/sandbox/common.sh"

CHART="$ROOT/helm/gpucloud"
PRODUCTION="$CHART/ci/production-values.yaml"
HELM="${GPUCLOUD_HELM:-$HELM_BIN/helm}"
KUBECTL="${GPUCLOUD_KUBECTL:-$K8S_BIN/kubectl}"
# A check like the tests: on the tests' instance, never make run's (docs/sandbox.md, "Instances").
SANDBOX_DEFAULT_INSTANCE=test
# shellcheck source=../sandbox/instance.sh
. "$ROOT/sandbox/instance.sh"  # SANDBOX_INSTANCE, SANDBOX_DIR
KUBECONFIG_FILE="$SANDBOX_DIR/kubeconfig"
KUBE_VERSION="${K8S_VERSION#v}"

say() { printf '[chart] %s\n' "$*" >&2; }
for tool in "$HELM" "$KUBECTL"; do
  [[ -x $tool ]] || die "$tool is missing: run make sandbox (or set GPUCLOUD_HELM / GPUCLOUD_KUBECTL)"
done
[[ -f $KUBECONFIG_FILE ]] ||
  die "no kubeconfig of sandbox instance $SANDBOX_INSTANCE at $KUBECONFIG_FILE: run make test-sandbox"
kubectl_() { "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" "$@"; }
# Count as a test session on the instance (docs/sandbox.md, "Instances"): a pytest session starting alone
# would otherwise clear the throwaway namespace, and `sandbox.sh reset` restart the cluster, mid-check.
exec 8>>"$SANDBOX_DIR/sessions.lock"
flock -s -w 900 8 || die "sandbox instance $SANDBOX_INSTANCE is being reset (sessions.lock held for 900 s)"

declare -A VALUES=([default]="" [production]="-f $PRODUCTION")
for name in default production; do
  # shellcheck disable=SC2086  # the values arguments are meant to split
  "$HELM" lint --strict "$CHART" --kube-version "$KUBE_VERSION" ${VALUES[$name]} >/dev/null
  say "helm lint ($name values): ok"
done

say "dry runs against sandbox instance $SANDBOX_INSTANCE ($KUBECONFIG_FILE)"
NS="chart-check-$(date +%s)-$$"
trap 'kubectl_ delete namespace "$NS" --wait=false >/dev/null 2>&1 || true' EXIT
kubectl_ create namespace "$NS" >/dev/null
kubectl_ label namespace "$NS" pod-security.kubernetes.io/enforce=restricted \
  pod-security.kubernetes.io/warn=restricted >/dev/null

for name in default production; do
  # The sandbox has no Prometheus Operator CRDs; the ServiceMonitor is covered by tests/helm.
  # shellcheck disable=SC2086
  rendered=$("$HELM" template gpucloud "$CHART" --namespace "$NS" --kube-version "$KUBE_VERSION" \
    ${VALUES[$name]} --set serviceMonitor.enabled=false)
  say "helm template ($name values): $(grep -c '^kind:' <<<"$rendered") objects"
  out=$(kubectl_ apply --dry-run=server -n "$NS" -f - 2>&1 <<<"$rendered") || { echo "$out" >&2; exit 1; }
  if grep -q 'violate PodSecurity' <<<"$out"; then echo "$out" >&2; die "a pod violates the restricted policy"; fi
  say "kubectl apply --dry-run=server ($name values): ok"
done
