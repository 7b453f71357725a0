{{/*
PostgreSQL connections (docs/operations.md "Database connections"). Every process keeps its connections in
a pool of at most DATABASE_POOL_MAX_SIZE (config/settings/database.py), which the chart sets per component
(gpucloud.databaseEnv), so the most a release can open is known here:

  web         pods x gunicorn workers x (threads + longPollWaiters)
                  (a worker's pool is as big as its threads; each long-poll waiter LISTENs on a connection
                  of its own, apps/instances/waiting.py)
  worker      pods x concurrency       (each prefork process runs one task at a time: a pool of 1)
  beat        pods x 1                 (it sends tasks and runs none)
  operator    pods x (pool + 2 x regions)
                  pool = 1 + regions x (podWorkers + changeWorkers + resyncWorkers + 2): the discovery loop,
                  and per region it leads its workers, the resync loop and the event watch, each of which
                  may hold a connection at once (any replica may lead every region); outside the pool, per
                  region a lock connection (leader.py) and, while it leads, the change listener's LISTEN
                  connection (changes.py)
  migrations  1                        (the pre-upgrade hook runs while the old release serves)

pods: the most replicas (maxReplicas while autoscaling) plus what a rolling update adds meanwhile: web and
worker surge by 25% of that, rounded up; beat (Recreate) and the operator (maxSurge 0) never surge.
*/}}

{{/* Replicas plus a 25% rolling-update surge, rounded up. Argument: a component's values. */}}
{{- define "gpucloud.surgedPods" -}}
{{- $replicas := int (ternary .autoscaling.maxReplicas .replicas .autoscaling.enabled) -}}
{{- add $replicas (div (add $replicas 3) 4) -}}
{{- end -}}

{{/* Regions counted for the operator's lock connections. */}}
{{- define "gpucloud.operatorRegions" -}}
{{- if .Values.operator.regions }}{{ len .Values.operator.regions }}{{ else }}{{ int .Values.database.regions }}{{ end -}}
{{- end -}}

{{/* The operator's pool: every thread that may hold a connection at once (see above). */}}
{{- define "gpucloud.operatorPool" -}}
{{- $op := .Values.operator -}}
{{- $perRegion := add (int $op.podWorkers) (int $op.changeWorkers) (int $op.resyncWorkers) 2 -}}
{{- add 1 (mul (include "gpucloud.operatorRegions" . | int) $perRegion) -}}
{{- end -}}

{{/* The peak per component as a YAML map: component -> {pods, perPod, connections}. */}}
{{- define "gpucloud.databaseConnections" -}}
{{- $v := .Values -}}
{{- $webPods := include "gpucloud.surgedPods" $v.web | int -}}
{{- $webPer := mul (int $v.web.gunicorn.workers) (add (int $v.web.gunicorn.threads) (int $v.web.longPollWaiters)) -}}
{{- $workerPods := include "gpucloud.surgedPods" $v.worker | int -}}
{{- $opPer := add (include "gpucloud.operatorPool" . | int) (mul 2 (include "gpucloud.operatorRegions" . | int)) -}}
web: {pods: {{ $webPods }}, perPod: {{ $webPer }}, connections: {{ mul $webPods $webPer }}}
worker: {pods: {{ $workerPods }}, perPod: {{ int $v.worker.concurrency }}, connections: {{ mul $workerPods (int $v.worker.concurrency) }}}
beat: {pods: {{ int $v.beat.replicas }}, perPod: 1, connections: {{ int $v.beat.replicas }}}
operator: {pods: {{ int $v.operator.replicas }}, perPod: {{ $opPer }}, connections: {{ mul (int $v.operator.replicas) $opPer }}}
migrations: {pods: 1, perPod: 1, connections: {{ ternary 1 0 $v.migrations.enabled }}}
{{- end -}}

{{/* The sum of the above. */}}
{{- define "gpucloud.databaseConnectionsTotal" -}}
{{- $total := 0 -}}
{{- range $name, $c := include "gpucloud.databaseConnections" . | fromYaml }}{{ $total = add $total (int $c.connections) }}{{ end -}}
{{- $total -}}
{{- end -}}

{{/* Refuses to render a release that could open more connections than the server leaves it. */}}
{{- define "gpucloud.checkDatabaseBudget" -}}
{{- $db := .Values.database -}}
{{- $budget := sub (int $db.maxConnections) (int $db.reservedConnections) -}}
{{- $total := include "gpucloud.databaseConnectionsTotal" . | int -}}
{{- if gt $total $budget -}}
{{- $terms := list -}}
{{- range $name, $c := include "gpucloud.databaseConnections" . | fromYaml -}}
{{- $terms = append $terms (printf "%s %d (%d x %d)" $name (int $c.connections) (int $c.pods) (int $c.perPod)) -}}
{{- end -}}
{{- fail (printf "PostgreSQL connections at peak: %s = %d, above database.maxConnections (%d) - database.reservedConnections (%d) = %d; lower replicas, workers, threads, longPollWaiters, concurrency or the operator's workers, or raise the server's max_connections and database.maxConnections (docs/operations.md \"Database connections\")"
      (join " + " $terms) $total (int $db.maxConnections) (int $db.reservedConnections) $budget) -}}
{{- end -}}
{{- end -}}

{{/* A component's pool settings, as container env entries. Argument: dict root, maxSize. */}}
{{- define "gpucloud.databaseEnv" -}}
- name: DATABASE_POOL_MAX_SIZE
  value: {{ .maxSize | int | toString | quote }}
- name: DATABASE_POOL_TIMEOUT
  value: {{ .root.Values.database.poolTimeoutSeconds | int | toString | quote }}
{{- end -}}
