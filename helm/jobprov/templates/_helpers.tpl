{{/*
Names. The full name is cut at 50 characters so that "<fullname>-worker-metrics" stays a valid Service name.
*/}}
{{- define "jobprov.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 50 | trimSuffix "-" }}
{{- end }}

{{- define "jobprov.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "jobprov.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "jobprov.labels" -}}
helm.sh/chart: {{ include "jobprov.chart" . }}
app.kubernetes.io/name: {{ include "jobprov.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: jobprov
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "worker") */}}
{{- define "jobprov.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jobprov.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "jobprov.componentLabels" -}}
{{ include "jobprov.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "jobprov.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "jobprov.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "jobprov.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "jobprov.configName" -}}
{{- printf "%s-config" (include "jobprov.fullname" .) }}
{{- end }}

{{/* The Secret holding the ClickHouse credentials: the user's, or the one this chart creates. */}}
{{- define "jobprov.clickhouseSecretName" -}}
{{- if .Values.clickhouse.existingSecret }}
{{- .Values.clickhouse.existingSecret }}
{{- else }}
{{- printf "%s-clickhouse" (include "jobprov.fullname" .) }}
{{- end }}
{{- end }}

{{/* Whether the chart creates a Secret for the ClickHouse credentials. */}}
{{- define "jobprov.createClickhouseSecret" -}}
{{- if and (not .Values.clickhouse.existingSecret) (or .Values.clickhouse.username .Values.clickhouse.password) }}true{{ end }}
{{- end }}

{{/* The Secret holding the Kafka SASL credentials: the user's, or the one this chart creates. */}}
{{- define "jobprov.kafkaSaslSecretName" -}}
{{- if .Values.kafka.security.sasl.existingSecret }}
{{- .Values.kafka.security.sasl.existingSecret }}
{{- else }}
{{- printf "%s-kafka" (include "jobprov.fullname" .) }}
{{- end }}
{{- end }}

{{/* Whether the chart creates a Secret for the Kafka SASL credentials. */}}
{{- define "jobprov.createKafkaSecret" -}}
{{- $sasl := .Values.kafka.security.sasl }}
{{- if and (hasPrefix "SASL_" .Values.kafka.security.protocol) (not $sasl.existingSecret) }}true{{ end }}
{{- end }}

{{/* Where the workers find the files of kafka.security.tls.existingSecret. */}}
{{- define "jobprov.kafkaTlsDir" -}}
/etc/jobprov/kafka-tls
{{- end }}

{{/*
The workers' Kafka security settings (the API and the migration Job never talk to Kafka, so this is not in the
shared ConfigMap): protocol and mechanism inline, SASL credentials and the key password by secretKeyRef, TLS
files as paths into the read-only mount of kafka.security.tls.existingSecret.
*/}}
{{- define "jobprov.kafkaSecurityEnv" -}}
{{- $sec := .Values.kafka.security }}
{{- if $sec.protocol }}
- name: JOBPROV_PROCESSOR_KAFKA_SECURITY_PROTOCOL
  value: {{ $sec.protocol | quote }}
{{- end }}
{{- if hasPrefix "SASL_" $sec.protocol }}
{{- $secret := include "jobprov.kafkaSaslSecretName" . }}
- name: JOBPROV_PROCESSOR_KAFKA_SASL_MECHANISM
  value: {{ $sec.sasl.mechanism | quote }}
- name: JOBPROV_PROCESSOR_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ ternary $sec.sasl.existingSecretKeys.username "username" (not (empty $sec.sasl.existingSecret)) }}
- name: JOBPROV_PROCESSOR_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ ternary $sec.sasl.existingSecretKeys.password "password" (not (empty $sec.sasl.existingSecret)) }}
{{- end }}
{{- with $sec.tls }}
{{- if .existingSecret }}
{{- if .caKey }}
- name: JOBPROV_PROCESSOR_KAFKA_SSL_CA_LOCATION
  value: {{ printf "%s/%s" (include "jobprov.kafkaTlsDir" $) .caKey | quote }}
{{- end }}
{{- if .certificateKey }}
- name: JOBPROV_PROCESSOR_KAFKA_SSL_CERTIFICATE_LOCATION
  value: {{ printf "%s/%s" (include "jobprov.kafkaTlsDir" $) .certificateKey | quote }}
{{- end }}
{{- if .privateKeyKey }}
- name: JOBPROV_PROCESSOR_KAFKA_SSL_KEY_LOCATION
  value: {{ printf "%s/%s" (include "jobprov.kafkaTlsDir" $) .privateKeyKey | quote }}
{{- end }}
{{- if .privateKeyPasswordKey }}
- name: JOBPROV_PROCESSOR_KAFKA_SSL_KEY_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .privateKeyPasswordKey }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "jobprov.kafkaSourceUrl" -}}
{{- printf "kafka://%s/%s" .Values.kafka.bootstrapServers .Values.kafka.topic }}
{{- end }}

{{/*
Checks that JSON Schema cannot express (they compare values with each other). Included by every template
that renders a workload, so `helm template` and `helm install` stop with the reason.
*/}}
{{- define "jobprov.validate" -}}
{{- $partitions := int .Values.kafka.partitions }}
{{- if gt (int .Values.workers.replicas) $partitions }}
{{- fail (printf "workers.replicas (%d) must not exceed kafka.partitions (%d): a worker beyond the partition count gets no partition and sits idle" (int .Values.workers.replicas) $partitions) }}
{{- end }}
{{- if .Values.workers.autoscaling.enabled }}
{{- if gt (int .Values.workers.autoscaling.maxReplicas) $partitions }}
{{- fail (printf "workers.autoscaling.maxReplicas (%d) must not exceed kafka.partitions (%d): at most one worker per partition is busy" (int .Values.workers.autoscaling.maxReplicas) $partitions) }}
{{- end }}
{{- if gt (int .Values.workers.autoscaling.minReplicas) (int .Values.workers.autoscaling.maxReplicas) }}
{{- fail (printf "workers.autoscaling.minReplicas (%d) must not exceed workers.autoscaling.maxReplicas (%d)" (int .Values.workers.autoscaling.minReplicas) (int .Values.workers.autoscaling.maxReplicas)) }}
{{- end }}
{{- end }}
{{- if and (not .Values.clickhouse.url) (not (and .Values.clickhouse.existingSecret .Values.clickhouse.existingSecretKeys.url)) }}
{{- fail "clickhouse.url is required (http(s)://host:8123), or set clickhouse.existingSecret and clickhouse.existingSecretKeys.url" }}
{{- end }}
{{- if and (not .Values.kafka.existingSecret) (not .Values.kafka.bootstrapServers) }}
{{- fail "kafka.bootstrapServers is required (host:port[,host:port]), or set kafka.existingSecret" }}
{{- end }}
{{- include "jobprov.validateKafkaSecurity" . }}
{{- if and .Values.api.enabled (not .Values.api.auth.tokensSecret) (not (has .Values.api.bindAddress (list "127.0.0.1" "localhost" "::1"))) }}
{{- fail (printf "api.auth.tokensSecret is required: the API listens on %s, and jobprov serve refuses to serve beyond loopback without tokens (a Secret whose key api.auth.tokensKey holds lines of SHA256HEX read|write)" .Values.api.bindAddress) }}
{{- end }}
{{- end }}

{{/*
The Host header names the API answers: the Service's names in the cluster, the Ingress hosts and api.allowedHosts.
*/}}
{{- define "jobprov.apiAllowedHosts" -}}
{{- $service := printf "%s-api" (include "jobprov.fullname" .) }}
{{- $hosts := list $service (printf "%s.%s" $service .Release.Namespace) (printf "%s.%s.svc" $service .Release.Namespace) (printf "%s.%s.svc.cluster.local" $service .Release.Namespace) }}
{{- if .Values.api.ingress.enabled }}
{{- range .Values.api.ingress.hosts }}{{ $hosts = append $hosts .host }}{{ end }}
{{- end }}
{{- concat $hosts .Values.api.allowedHosts | uniq | join "," }}
{{- end }}

{{- define "jobprov.apiTokensDir" -}}
/etc/jobprov/api-tokens
{{- end }}

{{/* kafka.security: what the workers' settings loader would reject, said at render time with the values' names. */}}
{{- define "jobprov.validateKafkaSecurity" -}}
{{- $sec := .Values.kafka.security }}
{{- $protocol := default "PLAINTEXT" $sec.protocol }}
{{- $sasl := $sec.sasl }}
{{- $tls := $sec.tls }}
{{- if hasPrefix "SASL_" $protocol }}
{{- if not $sasl.mechanism }}
{{- fail (printf "kafka.security.sasl.mechanism is required when kafka.security.protocol is %s (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)" $protocol) }}
{{- end }}
{{- if $sasl.existingSecret }}
{{- if not (and $sasl.existingSecretKeys.username $sasl.existingSecretKeys.password) }}
{{- fail "kafka.security.sasl.existingSecretKeys.username and .password are required with kafka.security.sasl.existingSecret" }}
{{- end }}
{{- else if not (and $sasl.username $sasl.password) }}
{{- fail (printf "kafka.security.sasl.username and kafka.security.sasl.password (or kafka.security.sasl.existingSecret) are required when kafka.security.protocol is %s" $protocol) }}
{{- end }}
{{- else if or $sasl.mechanism $sasl.username $sasl.password $sasl.existingSecret }}
{{- fail (printf "kafka.security.sasl is set but kafka.security.protocol is %s: use SASL_PLAINTEXT or SASL_SSL" $protocol) }}
{{- end }}
{{- if $tls.existingSecret }}
{{- if not (has $protocol (list "SSL" "SASL_SSL")) }}
{{- fail (printf "kafka.security.tls.existingSecret is set but kafka.security.protocol is %s: use SSL or SASL_SSL" $protocol) }}
{{- end }}
{{- if not (or $tls.caKey $tls.certificateKey) }}
{{- fail "kafka.security.tls.existingSecret needs kafka.security.tls.caKey and/or certificateKey and privateKeyKey" }}
{{- end }}
{{- if ne (empty $tls.certificateKey) (empty $tls.privateKeyKey) }}
{{- fail "kafka.security.tls.certificateKey and kafka.security.tls.privateKeyKey go together (mutual TLS needs both)" }}
{{- end }}
{{- if and $tls.privateKeyPasswordKey (not $tls.privateKeyKey) }}
{{- fail "kafka.security.tls.privateKeyPasswordKey needs kafka.security.tls.privateKeyKey" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
ClickHouse settings every command reads: the URL, database, cluster (non-secret, inline) and the credentials
(secretKeyRef). The Deployments take the non-secret ones from the ConfigMap instead, so this is used with
"inline" true only by the migration Job, which runs before the ConfigMap exists.
(dict "root" $ "secretName" NAME "inline" BOOL)
*/}}
{{- define "jobprov.clickhouseEnv" -}}
{{- $ch := .root.Values.clickhouse }}
{{- if and .inline (not (and $ch.existingSecret $ch.existingSecretKeys.url)) }}
- name: JOBPROV_PROCESSOR_SINK_URL
  value: {{ $ch.url | quote }}
{{- end }}
{{- if .inline }}
- name: JOBPROV_PROCESSOR_CLICKHOUSE_DATABASE
  value: {{ $ch.database | quote }}
{{- if $ch.cluster }}
- name: JOBPROV_PROCESSOR_CLICKHOUSE_CLUSTER
  value: {{ $ch.cluster | quote }}
{{- end }}
{{- end }}
{{- if $ch.existingSecret }}
{{- if $ch.existingSecretKeys.url }}
- name: JOBPROV_PROCESSOR_SINK_URL
  valueFrom:
    secretKeyRef:
      name: {{ $ch.existingSecret }}
      key: {{ $ch.existingSecretKeys.url }}
{{- end }}
{{- if $ch.existingSecretKeys.username }}
- name: JOBPROV_PROCESSOR_CLICKHOUSE_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $ch.existingSecret }}
      key: {{ $ch.existingSecretKeys.username }}
{{- end }}
{{- if $ch.existingSecretKeys.password }}
- name: JOBPROV_PROCESSOR_CLICKHOUSE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $ch.existingSecret }}
      key: {{ $ch.existingSecretKeys.password }}
{{- end }}
{{- else }}
{{- if $ch.username }}
- name: JOBPROV_PROCESSOR_CLICKHOUSE_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: username
{{- end }}
{{- if $ch.password }}
- name: JOBPROV_PROCESSOR_CLICKHOUSE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: password
{{- end }}
{{- end }}
{{- end }}

{{- define "jobprov.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ int .Values.securityContext.runAsUser }}
runAsGroup: {{ int .Values.securityContext.runAsGroup }}
fsGroup: {{ int .Values.securityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "jobprov.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ int .Values.securityContext.runAsUser }}
runAsGroup: {{ int .Values.securityContext.runAsGroup }}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Where the API (triage) and the alert scan send the events they record, as an emitter does: the events topic
(JOBPROV_URL), the emitter's Kafka security settings (JOBPROV_KAFKA_*: the workers' own, renamed), and a spool
in the pod's /tmp for what the broker cannot take at once (sent by the next event from that pod).
*/}}
{{- define "jobprov.eventsEnv" -}}
{{- if .Values.kafka.existingSecret }}
- name: JOBPROV_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.existingSecret }}
      key: {{ .Values.kafka.existingSecretKey }}
{{- else }}
- name: JOBPROV_URL
  value: {{ include "jobprov.kafkaSourceUrl" . | quote }}
{{- end }}
- name: JOBPROV_SPOOL_DIR
  value: /tmp/spool
- name: JOBPROV_CAPTURE_PACKAGES
  value: "false"
{{- include "jobprov.kafkaSecurityEnv" . | replace "JOBPROV_PROCESSOR_KAFKA_" "JOBPROV_KAFKA_" }}
{{- end }}

{{/* The read-only mount of kafka.security.tls.existingSecret, for a container's volumeMounts. */}}
{{- define "jobprov.kafkaTlsMount" -}}
{{- if .Values.kafka.security.tls.existingSecret }}
- name: kafka-tls
  mountPath: {{ include "jobprov.kafkaTlsDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{/* The volume of kafka.security.tls.existingSecret, for a pod's volumes. */}}
{{- define "jobprov.kafkaTlsVolume" -}}
{{- with .Values.kafka.security.tls }}
{{- if .existingSecret }}
# Only the named files (not the key's password, which comes as a variable), readable by the pod's group.
- name: kafka-tls
  secret:
    secretName: {{ .existingSecret }}
    defaultMode: 0440
    items:
      {{- range $key := list .caKey .certificateKey .privateKeyKey | compact | uniq }}
      - key: {{ $key }}
        path: {{ $key }}
      {{- end }}
{{- end }}
{{- end }}
{{- end }}
