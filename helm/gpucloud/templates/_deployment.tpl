{{/*
One Deployment of the gpucloud image. Arguments (a dict):
  root        the chart's context
  component   web | worker | beat | operator
  values      .Values.<component>
  replicas    a number, or nil when a HorizontalPodAutoscaler owns the count
  strategy    a Deployment strategy (dict)
  automount   mount the ServiceAccount token (the operator only)
  command     the container's command (list)
  env         extra container env entries (YAML string), placed before the component's own env
  container   more container fields (YAML string: ports, probes)
  multiproc   sum the metrics of several processes through files in an emptyDir (gunicorn, Celery's pool)
*/}}
{{- define "gpucloud.multiprocDir" -}}/tmp/prometheus{{- end -}}
{{- define "gpucloud.deployment" -}}
{{- $root := .root -}}
{{- $ctx := dict "root" $root "component" .component -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "gpucloud.componentName" $ctx }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "gpucloud.labels" $ctx | nindent 4 }}
spec:
  {{- if not (kindIs "invalid" .replicas) }}
  replicas: {{ .replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    {{- toYaml .strategy | nindent 4 }}
  selector:
    matchLabels:
      {{- include "gpucloud.selectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "gpucloud.selectorLabels" $ctx | nindent 8 }}
        {{- with .values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        {{- include "gpucloud.podAnnotations" (dict "root" $root "values" .values) | nindent 8 }}
    spec:
      serviceAccountName: {{ include "gpucloud.serviceAccountName" $ctx }}
      automountServiceAccountToken: {{ .automount }}
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ .values.terminationGracePeriodSeconds }}
      securityContext:
        {{- include "gpucloud.podSecurityContext" $root | nindent 8 }}
      {{- with include "gpucloud.imagePullSecrets" $root }}{{ . | nindent 6 }}{{ end }}
      {{- with include "gpucloud.scheduling" .values }}{{ . | nindent 6 }}{{ end }}
      containers:
        - name: {{ .component }}
          image: {{ include "gpucloud.image" $root | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command:
            {{- toYaml .command | nindent 12 }}
          envFrom:
            - configMapRef:
                name: {{ include "gpucloud.componentName" (dict "root" $root "component" "config") }}
          env:
            {{- with .env }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- if .multiproc }}
            - name: PROMETHEUS_MULTIPROC_DIR
              value: {{ include "gpucloud.multiprocDir" $root }}
            {{- end }}
            {{- with include "gpucloud.secretEnv" $ctx }}{{ . | nindent 12 }}{{ end }}
            {{- with include "gpucloud.plainEnv" .values.env }}{{ . | nindent 12 }}{{ end }}
          {{- with .container }}
          {{- . | nindent 10 }}
          {{- end }}
          resources:
            {{- toYaml .values.resources | nindent 12 }}
          securityContext:
            {{- include "gpucloud.containerSecurityContext" $root | nindent 12 }}
          volumeMounts:
            {{- include "gpucloud.tmpMount" $root | nindent 12 }}
            {{- if .multiproc }}
            - name: prometheus
              mountPath: {{ include "gpucloud.multiprocDir" $root }}
            {{- end }}
      volumes:
        {{- include "gpucloud.tmpVolume" $root | nindent 8 }}
        {{- if .multiproc }}
        - name: prometheus
          emptyDir:
            sizeLimit: 64Mi
        {{- end }}
{{- end -}}
