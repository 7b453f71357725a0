{{/* Names: <release>-gpucloud unless the release name already says gpucloud; 63 characters at most. */}}
{{- define "gpucloud.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gpucloud.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A component's object name: <fullname>-<component>, trimmed to 63 characters. */}}
{{- define "gpucloud.componentName" -}}
{{- $fullname := include "gpucloud.fullname" .root -}}
{{- printf "%s-%s" ($fullname | trunc (int (sub 62 (len .component)))) .component | trimSuffix "-" -}}
{{- end -}}

{{- define "gpucloud.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "gpucloud.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: gpucloud
{{- end -}}

{{- define "gpucloud.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gpucloud.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "gpucloud.image" -}}
{{- $image := .Values.image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The ServiceAccount a component runs as: its own, or the one named in values. */}}
{{- define "gpucloud.serviceAccountName" -}}
{{- $sa := (index .root.Values .component).serviceAccount -}}
{{- if $sa.create -}}
{{- default (include "gpucloud.componentName" .) $sa.name -}}
{{- else -}}
{{- default "default" $sa.name -}}
{{- end -}}
{{- end -}}

{{/* The non-secret settings (the ConfigMap's data, and the migrations hook's env before it exists). */}}
{{- define "gpucloud.configData" -}}
{{- $hosts := list -}}
{{- range .Values.allowedHosts }}{{ $hosts = append $hosts . }}{{ end -}}
{{- if .Values.ingress.enabled }}{{ range .Values.ingress.hosts }}{{ $hosts = append $hosts .host }}{{ end }}{{ end -}}
{{- if not $hosts }}{{ fail "allowedHosts (or ingress.hosts with ingress.enabled) must name at least one host" }}{{ end -}}
DJANGO_SETTINGS_MODULE: config.settings.production
ALLOWED_HOSTS: {{ $hosts | uniq | join "," | quote }}
{{- range $name, $value := .Values.config }}
{{ $name }}: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/*
Secret settings that only some components may hold, whatever secrets.env says (docs/operations.md,
"Encryption keys"): the regions' operator kubeconfigs are decrypted by the operator and the worker (its
on-commit reconcile) alone, the regions' logs kubeconfigs by web alone, the tenants' object storage presign
secrets by web (which signs URLs) and the worker. Beat and the migrations hook get none.
*/}}
{{- define "gpucloud.secretScopes" -}}
FIELD_ENCRYPTION_KEYS: [worker, operator]
LOGS_ENCRYPTION_KEYS: [web]
STORAGE_ENCRYPTION_KEYS: [web, worker]
{{- end -}}

{{/* Secret settings of one component, each read from an existing Secret by reference (a YAML list; empty:
nothing). Argument: dict root, component. */}}
{{- define "gpucloud.secretEnv" -}}
{{- $component := .component -}}
{{- $default := .root.Values.secrets.existingSecret -}}
{{- $scopes := include "gpucloud.secretScopes" . | fromYaml -}}
{{- $env := list -}}
{{- range $name, $ref := .root.Values.secrets.env -}}
{{- if and $ref (or (not (hasKey $scopes $name)) (has $component (index $scopes $name))) -}}
{{- $selector := dict "name" (default $default $ref.secretName) "key" $ref.key -}}
{{- if $ref.optional }}{{ $_ := set $selector "optional" true }}{{ end -}}
{{- $env = append $env (dict "name" $name "valueFrom" (dict "secretKeyRef" $selector)) -}}
{{- end -}}
{{- end -}}
{{- if $env }}{{ toYaml $env }}{{ end -}}
{{- end -}}

{{/* A cluster-scoped object's name: <release namespace>-<fullname>-<suffix>. Argument: dict root, suffix. */}}
{{- define "gpucloud.clusterName" -}}
{{- printf "%s-%s-%s" .root.Release.Namespace (include "gpucloud.fullname" .root) .suffix | trunc 253 -}}
{{- end -}}

{{/* The identities that act as the operator: its ServiceAccount, plus rbac.operatorUsers (YAML list). */}}
{{- define "gpucloud.operatorUsernames" -}}
{{- $sa := include "gpucloud.serviceAccountName" (dict "root" . "component" "operator") -}}
{{- toYaml (concat (list (printf "system:serviceaccount:%s:%s" .Release.Namespace $sa)) .Values.rbac.operatorUsers) -}}
{{- end -}}

{{/* The logs reader's subjects, in the operator's LOGS_READER_SUBJECTS form (YAML list): the chart's logs
ServiceAccount, plus rbac.logsUsers. */}}
{{- define "gpucloud.logsSubjects" -}}
{{- $sa := include "gpucloud.componentName" (dict "root" . "component" "logs") -}}
{{- $subjects := list (printf "ServiceAccount:%s:%s" .Release.Namespace $sa) -}}
{{- range .Values.rbac.logsUsers }}{{ $subjects = append $subjects (printf "User:%s" .) }}{{ end -}}
{{- toYaml $subjects -}}
{{- end -}}

{{/* Plain name/value env entries from a map (a YAML list; empty: nothing). */}}
{{- define "gpucloud.plainEnv" -}}
{{- $env := list -}}
{{- range $name, $value := . -}}
{{- $env = append $env (dict "name" $name "value" (toString $value)) -}}
{{- end -}}
{{- if $env }}{{ toYaml $env }}{{ end -}}
{{- end -}}

{{/* The restricted Pod Security Standard, at pod and container level. */}}
{{- define "gpucloud.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurity.runAsUser }}
runAsGroup: {{ .Values.podSecurity.runAsGroup }}
fsGroup: {{ .Values.podSecurity.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "gpucloud.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The only writable place: an emptyDir at /tmp (gunicorn's heartbeat files, beat's schedule). */}}
{{- define "gpucloud.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end -}}

{{- define "gpucloud.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* Scheduling knobs shared by the components (values.<component>.*). */}}
{{- define "gpucloud.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "gpucloud.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* Pod annotations: a checksum of the settings, so a changed ConfigMap rolls the pods. */}}
{{- define "gpucloud.podAnnotations" -}}
checksum/config: {{ include "gpucloud.configData" .root | sha256sum }}
{{- with .values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Worker and operator serve their process metrics themselves (apps/core/metrics.serve_process_metrics), on
the pod's address so Prometheus can reach them; the exporters carry no secrets and no state metrics.
*/}}
{{- define "gpucloud.metricsEnv" -}}
- name: METRICS_BIND_ADDRESS
  value: 0.0.0.0
- name: {{ .name }}
  value: {{ .port | toString | quote }}
{{- end -}}

{{- define "gpucloud.metricsPort" -}}
ports:
  - name: metrics
    containerPort: {{ . }}
    protocol: TCP
{{- end -}}

{{/*
Worker, beat and operator have no HTTP of their own to probe for liveness: each touches HEARTBEAT_FILE
whenever its main loop goes round (at least every 10 s; apps/core/heartbeat.py), and the exec probes fail
when it is older than heartbeat.maxAgeSeconds. The startup probe gives a process up to 5 minutes to touch
it first (the worker touches it once it consumes). Argument: the chart's context.
*/}}
{{- define "gpucloud.heartbeatFile" -}}/tmp/heartbeat{{- end -}}

{{- define "gpucloud.heartbeatEnv" -}}
- name: HEARTBEAT_FILE
  value: {{ include "gpucloud.heartbeatFile" . }}
{{- end -}}

{{- define "gpucloud.heartbeatProbes" -}}
{{- $check := list "python" "-m" "apps.core.heartbeat" (include "gpucloud.heartbeatFile" .)
      (.Values.heartbeat.maxAgeSeconds | int | toString) -}}
startupProbe:
  exec:
    command: {{ toJson $check }}
  periodSeconds: 5
  timeoutSeconds: 10
  failureThreshold: 60
livenessProbe:
  exec:
    command: {{ toJson $check }}
  periodSeconds: 30
  timeoutSeconds: 10
  failureThreshold: 3
{{- end -}}

{{/* Readiness of the worker and the operator: their exporter answers (the worker starts it once its pool
and consumer are up). Argument: unused. */}}
{{- define "gpucloud.metricsReadiness" -}}
readinessProbe:
  httpGet: {path: /metrics, port: metrics}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
{{- end -}}

{{- define "gpucloud.metricsService" -}}
{{- $ctx := dict "root" .root "component" .component -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "gpucloud.componentName" (dict "root" .root "component" (printf "%s-metrics" .component)) }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "gpucloud.labels" $ctx | nindent 4 }}
    gpucloud.io/metrics: "true"
spec:
  type: ClusterIP
  selector:
    {{- include "gpucloud.selectorLabels" $ctx | nindent 4 }}
  ports:
    - name: metrics
      port: {{ .port }}
      targetPort: metrics
      protocol: TCP
{{- end -}}
