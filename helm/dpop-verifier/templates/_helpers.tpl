{{/* vim: set filetype=mustache: */}}

{{/* Chart name, truncated to a DNS label. */}}
{{- define "dpop-verifier.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name. Truncated to 52 characters so that suffixed names ("-redis",
"-test-health", "-client") stay within 63.
*/}}
{{- define "dpop-verifier.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "dpop-verifier.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels shared by every component of the release. */}}
{{- define "dpop-verifier.baseSelectorLabels" -}}
app.kubernetes.io/name: {{ include "dpop-verifier.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector labels of the verifier pods. */}}
{{- define "dpop-verifier.selectorLabels" -}}
{{ include "dpop-verifier.baseSelectorLabels" . }}
app.kubernetes.io/component: verifier
{{- end }}

{{/* Selector labels of the development-only Redis. */}}
{{- define "dpop-verifier.redisSelectorLabels" -}}
{{ include "dpop-verifier.baseSelectorLabels" . }}
app.kubernetes.io/component: dev-redis
{{- end }}

{{/* Labels common to every resource (without the component). */}}
{{- define "dpop-verifier.commonLabels" -}}
helm.sh/chart: {{ include "dpop-verifier.chart" . }}
{{ include "dpop-verifier.baseSelectorLabels" . }}
app.kubernetes.io/version: {{ include "dpop-verifier.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dpop-verifier
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of the verifier's resources. */}}
{{- define "dpop-verifier.labels" -}}
{{ include "dpop-verifier.commonLabels" . }}
app.kubernetes.io/component: verifier
{{- end }}

{{/* Label that lets a pod in the release namespace through the NetworkPolicy. */}}
{{- define "dpop-verifier.clientLabelKey" -}}
{{ include "dpop-verifier.fullname" . }}-client
{{- end }}

{{- define "dpop-verifier.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dpop-verifier.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "dpop-verifier.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/* The verifier image reference: repository:tag, or repository@digest when pinned. */}}
{{- define "dpop-verifier.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "dpop-verifier.imageTag" .) }}
{{- end }}
{{- end }}

{{/* Fully qualified DNS name of the verifier Service. */}}
{{- define "dpop-verifier.serviceFQDN" -}}
{{- printf "%s.%s.svc.%s" (include "dpop-verifier.fullname" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{/* The port readiness and `helm test` ask: the main port, or the plaintext health port under
TLS. Startup and liveness always ask ports.health (the health-only listener). */}}
{{- define "dpop-verifier.healthPort" -}}
{{- if .Values.tls.enabled }}{{ .Values.ports.health }}{{ else }}{{ .Values.ports.grpc }}{{ end }}
{{- end }}

{{- define "dpop-verifier.redisName" -}}
{{- printf "%s-redis" (include "dpop-verifier.fullname" .) }}
{{- end }}

{{/* DPOP_REPLAY_URL: explicit URL, else the dev Redis, else memory://. */}}
{{- define "dpop-verifier.replayUrl" -}}
{{- if .Values.replay.url }}
{{- .Values.replay.url }}
{{- else if .Values.devRedis.enabled }}
{{- printf "redis://%s:6379/0" (include "dpop-verifier.redisName" .) }}
{{- else -}}
memory://
{{- end }}
{{- end }}

{{- define "dpop-verifier.replayIsMemory" -}}
{{- if hasPrefix "memory:" (include "dpop-verifier.replayUrl" .) }}true{{ end }}
{{- end }}

{{/* Name of the Secret the chart renders for inline secret values. */}}
{{- define "dpop-verifier.secretName" -}}
{{- include "dpop-verifier.fullname" . }}
{{- end }}

{{/*
The secret values the chart can mount as files, as a JSON list of
{env, file, existingSecret, key, value}: Redis and Sentinel passwords, nonce secrets.
*/}}
{{- define "dpop-verifier.secretValues" -}}
{{- $items := list -}}
{{- $p := .Values.replay.password -}}
{{- $items = append $items (dict "env" "DPOP_REDIS_PASSWORD_FILE" "file" "redis-password" "existingSecret" $p.existingSecret "key" $p.key "value" $p.value) }}
{{- $sp := .Values.replay.sentinel.password -}}
{{- $items = append $items (dict "env" "DPOP_REDIS_SENTINEL_PASSWORD_FILE" "file" "redis-sentinel-password" "existingSecret" $sp.existingSecret "key" $sp.key "value" $sp.value) }}
{{- $n := .Values.nonce.secret -}}
{{- $items = append $items (dict "env" "DPOP_NONCE_SECRET_FILE" "file" "nonce-secret" "existingSecret" $n.existingSecret "key" $n.key "value" $n.value) }}
{{- $previousKey := $n.previousKey }}
{{- if and (not $n.existingSecret) (not $previousKey) }}{{ $previousKey = "nonce-previous-secret" }}{{ end }}
{{- $items = append $items (dict "env" "DPOP_NONCE_PREVIOUS_SECRET_FILE" "file" "nonce-previous-secret" "existingSecret" $n.existingSecret "key" $previousKey "value" $n.previousValue) }}
{{- toJson $items }}
{{- end }}

{{/* Non-empty when the chart renders its own Secret (some secret is given inline). */}}
{{- define "dpop-verifier.renderSecret" -}}
{{- range include "dpop-verifier.secretValues" . | fromJsonArray }}
{{- if and .value (not .existingSecret) }}true{{ end }}
{{- end }}
{{- end }}

{{/*
Secret files mounted into the verifier, as a JSON list of {env, file, secret, key}: each
secret value given by existingSecret (with a key) or inline (in the chart's Secret).
*/}}
{{- define "dpop-verifier.secretFiles" -}}
{{- $own := include "dpop-verifier.secretName" . -}}
{{- $files := list -}}
{{- range include "dpop-verifier.secretValues" . | fromJsonArray }}
{{- if and .existingSecret .key }}
{{- $files = append $files (dict "env" .env "file" .file "secret" .existingSecret "key" .key) }}
{{- else if and .value (not .existingSecret) }}
{{- $files = append $files (dict "env" .env "file" .file "secret" $own "key" .key) }}
{{- end }}
{{- end }}
{{- toJson $files }}
{{- end }}

{{/* Where secret files are mounted. */}}
{{- define "dpop-verifier.secretsDir" -}}
/var/run/secrets/dpop-verifier
{{- end }}

{{/* The config.json the service reads (DPOP_CONFIG_FILE). */}}
{{- define "dpop-verifier.configJson" -}}
{{- $cfg := deepCopy .Values.config.settings }}
{{- $_ := set $cfg "issuers" .Values.config.issuers }}
{{- $_ := set $cfg "routes" .Values.config.routes }}
{{- $_ := set $cfg "public_base_urls" .Values.config.publicBaseUrls }}
{{- toPrettyJson $cfg }}
{{- end }}

{{/* Hardened pod security context. */}}
{{- define "dpop-verifier.podSecurityContext" -}}
runAsNonRoot: true
{{- with .Values.securityContext }}
{{- if not (kindIs "invalid" .runAsUser) }}
runAsUser: {{ int64 .runAsUser }}
{{- end }}
{{- if not (kindIs "invalid" .runAsGroup) }}
runAsGroup: {{ int64 .runAsGroup }}
{{- end }}
{{- if not (kindIs "invalid" .fsGroup) }}
fsGroup: {{ int64 .fsGroup }}
fsGroupChangePolicy: OnRootMismatch
{{- end }}
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Hardened container security context. */}}
{{- define "dpop-verifier.containerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
runAsNonRoot: true
{{- with .Values.securityContext }}
{{- if not (kindIs "invalid" .runAsUser) }}
runAsUser: {{ int64 .runAsUser }}
{{- end }}
{{- if not (kindIs "invalid" .runAsGroup) }}
runAsGroup: {{ int64 .runAsGroup }}
{{- end }}
{{- end }}
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Checks that values.schema.json cannot express. */}}
{{- define "dpop-verifier.validate" -}}
{{- $drain := add (int .Values.preStopSleepSeconds) (ceil .Values.config.shutdownGraceSeconds | int) }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int $drain) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds + config.shutdownGraceSeconds (%d), or the kubelet kills pods mid-drain" (int .Values.terminationGracePeriodSeconds) (int $drain)) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- if eq (int .Values.ports.grpc) (int .Values.ports.health) }}
{{- fail "ports.health must differ from ports.grpc" }}
{{- end }}
{{- if and .Values.metrics.enabled (or (eq (int .Values.ports.metrics) (int .Values.ports.grpc)) (eq (int .Values.ports.metrics) (int .Values.ports.health))) }}
{{- fail "ports.metrics must differ from ports.grpc and ports.health" }}
{{- end }}
{{- $scheme := include "dpop-verifier.replayUrl" . | splitList "://" | first | lower }}
{{- $redis := hasPrefix "redis" $scheme }}
{{- $r := .Values.replay }}
{{- if and (not $redis) (or $r.username $r.password.existingSecret $r.password.value) }}
{{- fail "replay.username / replay.password need a Redis replay.url (or devRedis.enabled)" }}
{{- end }}
{{- if and (not (hasSuffix "+sentinel" $scheme)) (or $r.sentinel.username $r.sentinel.password.existingSecret $r.sentinel.password.value) }}
{{- fail "replay.sentinel needs a redis+sentinel:// or rediss+sentinel:// replay.url" }}
{{- end }}
{{- if and $r.tls.existingSecret (not (hasPrefix "rediss" $scheme)) }}
{{- fail "replay.tls needs a TLS replay.url (rediss://, rediss+sentinel://, rediss+cluster://)" }}
{{- end }}
{{- if and .Values.replay.url .Values.devRedis.enabled }}
{{- fail "set either replay.url or devRedis.enabled, not both" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled" }}
{{- end }}
{{- $ap := .Values.istio.authorizationPolicy }}
{{- if $ap.enabled }}
{{- if and (not $ap.selector) (not $ap.targetRefs) }}
{{- fail "istio.authorizationPolicy needs selector (matchLabels of the protected workloads) or targetRefs: a namespace- or mesh-wide CUSTOM policy would also apply to the verifier itself" }}
{{- end }}
{{- if and $ap.selector $ap.targetRefs }}
{{- fail "istio.authorizationPolicy: set selector or targetRefs, not both" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Startup/liveness check: a gRPC check of probes.liveness.grpcService (by default
dpop.verifier.v1.Liveness, which does not follow the replay store: a Redis outage must not
restart pods), or a TCP check of the port when it is null.
*/}}
{{- define "dpop-verifier.livenessCheck" -}}
{{- $svc := .root.Values.probes.liveness.grpcService }}
{{- if kindIs "invalid" $svc }}
tcpSocket:
  port: {{ .port }}
{{- else }}
grpc:
  port: {{ .port }}
  service: {{ $svc | quote }}
{{- end }}
{{- end }}

{{/*
Mode of mounted secret files: group-readable only when an fsGroup gives the pod's group
ownership of them, else readable by the (single, non-root) user the pod runs as.
*/}}
{{- define "dpop-verifier.secretFileMode" -}}
{{- if kindIs "invalid" .Values.securityContext.fsGroup }}0444{{ else }}0440{{ end }}
{{- end }}

{{/* The Istio meshConfig fragment declaring the verifier as an envoyExtAuthzGrpc provider. */}}
{{- define "dpop-verifier.istioMeshConfig" -}}
{{- $p := .Values.istio.extensionProvider -}}
extensionProviders:
  - name: {{ $p.name }}
    envoyExtAuthzGrpc:
      service: {{ include "dpop-verifier.serviceFQDN" . }}
      port: {{ int .Values.service.port }}
      timeout: {{ $p.timeout }}
      failOpen: {{ $p.failOpen }}
      statusOnError: {{ $p.statusOnError | quote }}
{{- end }}
