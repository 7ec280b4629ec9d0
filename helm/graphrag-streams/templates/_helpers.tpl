{{/* ---------------------------------------------------------------- names and labels */}}

{{- define "graphrag-streams.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Short enough that "<fullname>-<stage>" and "<fullname>-lag-exporter" stay valid names. */}}
{{- define "graphrag-streams.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "graphrag-streams.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "graphrag-streams.selectorLabels" -}}
app.kubernetes.io/name: {{ include "graphrag-streams.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "graphrag-streams.labels" -}}
helm.sh/chart: {{ include "graphrag-streams.chart" . }}
{{ include "graphrag-streams.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: graphrag-streams
graphrag.io/environment: {{ .Values.environment }}
{{- end -}}

{{- define "graphrag-streams.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "graphrag-streams.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "graphrag-streams.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* ---------------------------------------------------------------- stages and topics */}}

{{/* The pipeline, in order (streams/topics.py: PIPELINE): the lag-scaled stream stages. */}}
{{- define "graphrag-streams.stages" -}}
{{- list "fetch" "chunk" "extract" "route" "resolve" "assemble" "sink" | toJson -}}
{{- end -}}

{{/*
The topics a stage consumes, without the prefix, as JSON: Topics.inputs(stage) in
streams/topics.py, in the same order (tests/deploy/test_helm.py compares them).
*/}}
{{- define "graphrag-streams.inputs" -}}
{{- dict
      "fetch" (list "videos.requested")
      "chunk" (list "transcripts.fetched")
      "extract" (list "transcripts.chunks")
      "route" (list "graph.extractions")
      "resolve" (list "resolve.mentions")
      "assemble" (list "resolve.pending" "resolve.resolved")
      "sink" (list "graph.edges" "videos.status")
    | toJson -}}
{{- end -}}

{{/*
The topic a stage's lag is measured on: the first of Topics.inputs(stage) (what the lag
exporter's graphrag_desired_replicas uses, too).
Called with (dict "prefix" <topic prefix> "stage" <stage>).
*/}}
{{- define "graphrag-streams.inputTopic" -}}
{{- $inputs := include "graphrag-streams.inputs" . | fromJson -}}
{{- printf "%s%s" .prefix (get $inputs .stage | first) -}}
{{- end -}}

{{/*
The topics a stage's autoscaler watches, with the prefix, as a JSON list: one KEDA trigger
(or HPA metric) each, and the autoscaler takes the largest replica count they ask for.
The first input always; assemble also its second, resolve.resolved: it joins both, and the
resolved mentions are most of its work. The sink's videos.status carries one small event
per video and stage, so the sink scales on graph.edges alone.
Called with (dict "prefix" <topic prefix> "stage" <stage>).
*/}}
{{- define "graphrag-streams.scalingTopics" -}}
{{- $inputs := include "graphrag-streams.inputs" . | fromJson -}}
{{- $names := get $inputs .stage -}}
{{- if ne .stage "assemble" -}}
{{- $names = list (first $names) -}}
{{- end -}}
{{- $out := list -}}
{{- range $names -}}
{{- $out = append $out (printf "%s%s" $.prefix .) -}}
{{- end -}}
{{- $out | toJson -}}
{{- end -}}

{{/* Consumer group = Faust app id: streams.topics.group_id ("graphrag." -> "graphrag-<stage>"). */}}
{{- define "graphrag-streams.consumerGroup" -}}
{{- $stem := regexReplaceAll "[._-]+$" .prefix "" | default "graphrag" -}}
{{- printf "%s-%s" $stem .stage -}}
{{- end -}}

{{/* ---------------------------------------------------------------- TLS files */}}

{{/*
The TLS files the pods get from existing Secrets, as JSON: {"<volume>": {"secret": <name>,
"mountPath": <dir>, "items": [{"key": <key in the Secret>, "path": <file>}], "env": {<VAR>: <file's path>}}}.
One volume per Secret, mounted read-only under /etc/graphrag-tls (not under /etc/graphrag:
that is the config ConfigMap's mount). Empty when nothing is configured. Fails on values
the app would refuse anyway, with the values' names.
*/}}
{{- define "graphrag-streams.tlsFiles" -}}
{{- $out := dict -}}
{{- $t := .Values.kafka.tls -}}
{{- if $t.enabled -}}
{{- if not (has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL")) -}}
{{- fail (printf "kafka.tls.enabled needs kafka.securityProtocol SSL or SASL_SSL, not %s" .Values.kafka.securityProtocol) -}}
{{- end -}}
{{- if not (or $t.caSecret.name $t.clientCertSecret.name) -}}
{{- fail "kafka.tls.enabled needs kafka.tls.caSecret.name or kafka.tls.clientCertSecret.name (existing Secrets)" -}}
{{- end -}}
{{- with $t.caSecret.name -}}
{{- $_ := set $out "kafka-ca" (dict "secret" . "mountPath" "/etc/graphrag-tls/kafka-ca"
      "items" (list (dict "key" $t.caSecret.key "path" "ca.crt"))
      "env" (dict "KAFKA_SSL_CAFILE" "/etc/graphrag-tls/kafka-ca/ca.crt")) -}}
{{- end -}}
{{- with $t.clientCertSecret.name -}}
{{- $_ := set $out "kafka-client-cert" (dict "secret" . "mountPath" "/etc/graphrag-tls/kafka-client"
      "items" (list (dict "key" $t.clientCertSecret.certKey "path" "tls.crt") (dict "key" $t.clientCertSecret.keyKey "path" "tls.key"))
      "env" (dict "KAFKA_SSL_CERTFILE" "/etc/graphrag-tls/kafka-client/tls.crt" "KAFKA_SSL_KEYFILE" "/etc/graphrag-tls/kafka-client/tls.key")) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.secrets.keys.kafkaSslKeyPassword (not (and $t.enabled $t.clientCertSecret.name)) -}}
{{- fail "secrets.keys.kafkaSslKeyPassword needs kafka.tls.enabled and kafka.tls.clientCertSecret.name (the key it decrypts)" -}}
{{- end -}}
{{- with .Values.mongodb.tls.caSecret.name -}}
{{- $_ := set $out "mongodb-ca" (dict "secret" . "mountPath" "/etc/graphrag-tls/mongodb-ca"
      "items" (list (dict "key" $.Values.mongodb.tls.caSecret.key "path" "ca.crt"))
      "env" (dict "MONGODB_TLS_CA_FILE" "/etc/graphrag-tls/mongodb-ca/ca.crt")) -}}
{{- end -}}
{{- if and $out (not .Values.securityContext.fsGroup) -}}
{{- fail "the TLS Secrets are mounted readable by the group only (0440): set securityContext.fsGroup" -}}
{{- end -}}
{{- $out | toJson -}}
{{- end -}}

{{/* ---------------------------------------------------------------- configuration */}}

{{/* Deep merge that, unlike mergeOverwrite, also writes false, 0 and "" (dst is changed). */}}
{{- define "graphrag-streams.deepSet" -}}
{{- $dst := .dst -}}
{{- range $k, $v := .src -}}
{{- if and (kindIs "map" $v) (hasKey $dst $k) (kindIs "map" (get $dst $k)) -}}
{{- include "graphrag-streams.deepSet" (dict "dst" (get $dst $k) "src" $v) -}}
{{- else -}}
{{- $_ := set $dst $k $v -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The effective configuration as a dict: files/config/<environment>.yaml (identical to
config/<environment>.yaml, see tests/deploy/test_helm.py) with the chart's values written over it.
${VAR} references (secrets, optional settings) stay in place for the app to resolve from
the pod's environment.
*/}}
{{- define "graphrag-streams.configDict" -}}
{{- $path := printf "files/config/%s.yaml" .Values.environment -}}
{{- $raw := .Files.Get $path -}}
{{- if not $raw -}}
{{- fail (printf "%s is missing from the chart" $path) -}}
{{- end -}}
{{- $cfg := fromYaml $raw -}}
{{- if hasKey $cfg "Error" -}}
{{- fail (printf "%s is not valid YAML: %s" $path (get $cfg "Error")) -}}
{{- end -}}
{{- range $section := list "mongodb" "openai" "graphrag" "monitoring" "kafka" "api" -}}
{{- if not (kindIs "map" (get $cfg $section)) -}}
{{- $_ := set $cfg $section dict -}}
{{- end -}}
{{- end -}}
{{- $s := .Values.settings -}}
{{- $_ := set $cfg "log_level" $s.logLevel -}}
{{- $g := get $cfg "graphrag" -}}
{{- $_ := set $g "enable_caching" $s.enableCaching -}}
{{- $_ := set $g "max_concurrent_operations" (int $s.maxConcurrentOperations) -}}
{{- $_ := set $g "retry_attempts" (int $s.retryAttempts) -}}
{{- $_ := set $g "circuit_breaker_threshold" (int $s.circuitBreakerThreshold) -}}
{{- $_ := set $g "scaling" (dict
      "lag_threshold" (int $s.scaling.lagThreshold)
      "activation_lag_threshold" (int $s.scaling.activationLagThreshold)
      "min_replicas" (int $s.scaling.minReplicas)
      "max_replicas" (int $s.scaling.maxReplicas)) -}}
{{- $_ := set (get $cfg "openai") "model" $s.openaiModel -}}
{{- if .Values.openai.baseUrl -}}
{{- $_ := set (get $cfg "openai") "base_url" .Values.openai.baseUrl -}}
{{- end -}}
{{- if .Values.mongodb.database -}}
{{- $_ := set (get $cfg "mongodb") "database" .Values.mongodb.database -}}
{{- end -}}
{{- $k := get $cfg "kafka" -}}
{{- $_ := set $k "bootstrap_servers" .Values.kafka.bootstrapServers -}}
{{- $_ := set $k "topic_prefix" .Values.kafka.topicPrefix -}}
{{- $_ := set $k "partitions" (int .Values.kafka.partitions) -}}
{{- $_ := set $k "replication_factor" (int .Values.kafka.replicationFactor) -}}
{{- $_ := set $k "security_protocol" .Values.kafka.securityProtocol -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol -}}
{{- if not .Values.kafka.saslMechanism -}}
{{- fail (printf "kafka.securityProtocol=%s needs kafka.saslMechanism" .Values.kafka.securityProtocol) -}}
{{- end -}}
{{- $_ := set $k "sasl_mechanism" .Values.kafka.saslMechanism -}}
{{- $_ := set $k "sasl_username" "${KAFKA_SASL_USERNAME:-}" -}}
{{- $_ := set $k "sasl_password" "${KAFKA_SASL_PASSWORD:-}" -}}
{{- end -}}
{{- /* TLS: the same variables as config/staging.yaml and production.yaml, set by the pods' env. */ -}}
{{- $tls := include "graphrag-streams.tlsFiles" . | fromJson -}}
{{- $_ := set $k "ssl_verify" .Values.kafka.tls.verify -}}
{{- if hasKey $tls "kafka-ca" -}}
{{- $_ := set $k "ssl_cafile" "${KAFKA_SSL_CAFILE:-}" -}}
{{- end -}}
{{- if hasKey $tls "kafka-client-cert" -}}
{{- $_ := set $k "ssl_certfile" "${KAFKA_SSL_CERTFILE:-}" -}}
{{- $_ := set $k "ssl_keyfile" "${KAFKA_SSL_KEYFILE:-}" -}}
{{- end -}}
{{- if .Values.secrets.keys.kafkaSslKeyPassword -}}
{{- $_ := set $k "ssl_key_password" "${KAFKA_SSL_KEY_PASSWORD:-}" -}}
{{- end -}}
{{- if hasKey $tls "mongodb-ca" -}}
{{- $_ := set (get $cfg "mongodb") "tls_ca_file" "${MONGODB_TLS_CA_FILE:-}" -}}
{{- end -}}
{{- $m := get $cfg "monitoring" -}}
{{- $_ := set $m "metrics_host" "0.0.0.0" -}}
{{- $_ := set $m "metrics_port" (int .Values.monitoring.metricsPort) -}}
{{- $_ := set $m "lag_exporter_port" (int .Values.monitoring.lagExporterPort) -}}
{{- $a := get $cfg "api" -}}
{{- $_ := set $a "host" "0.0.0.0" -}}
{{- $_ := set $a "port" (int .Values.api.port) -}}
{{- include "graphrag-streams.deepSet" (dict "dst" $cfg "src" (deepCopy .Values.extraConfig)) -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
Autoscaling bounds of every stage, from the rendered configuration, as JSON:
{"minReplicas": n, "maxReplicas": n, "lagThreshold": n, "activationLagThreshold": n, "prefix": s}.
maxReplicas = max(1, min(scaling.max_replicas, kafka.partitions)) and minReplicas is at most
that: the same bounds streams/scaling.py's desired_replicas uses for the lag exporter.
*/}}
{{- define "graphrag-streams.scaling" -}}
{{- $cfg := include "graphrag-streams.configDict" . | fromYaml -}}
{{- $sc := $cfg.graphrag.scaling -}}
{{- $max := max 1 (min (int $sc.max_replicas) (int $cfg.kafka.partitions)) -}}
{{- $min := min (int $sc.min_replicas) $max -}}
{{- dict "minReplicas" $min "maxReplicas" $max "lagThreshold" (int $sc.lag_threshold) "activationLagThreshold" (int $sc.activation_lag_threshold) "prefix" $cfg.kafka.topic_prefix "bootstrapServers" $cfg.kafka.bootstrap_servers | toJson -}}
{{- end -}}

{{/* ---------------------------------------------------------------- pod parts */}}

{{/* Environment variable -> secrets.keys entry. */}}
{{- define "graphrag-streams.secretVars" -}}
{{- dict "MONGODB_URI" "mongodbUri" "OPENAI_API_KEY" "openaiApiKey" "KAFKA_SASL_USERNAME" "kafkaSaslUsername" "KAFKA_SASL_PASSWORD" "kafkaSaslPassword" "REDIS_URL" "redisUrl" "KAFKA_SSL_KEY_PASSWORD" "kafkaSslKeyPassword" | toJson -}}
{{- end -}}

{{/* Fail when the environment's config needs a variable (${VAR} without default) nobody sets. */}}
{{- define "graphrag-streams.checkRequiredVars" -}}
{{- $raw := .Files.Get (printf "files/config/%s.yaml" .Values.environment) -}}
{{- $vars := fromJson (include "graphrag-streams.secretVars" .) -}}
{{- range $var, $key := $vars -}}
{{- if and (contains (printf "${%s}" $var) $raw) (not (and $.Values.secrets.existingSecret (get $.Values.secrets.keys $key))) -}}
{{- fail (printf "the %s configuration needs %s: set secrets.existingSecret and secrets.keys.%s" $.Values.environment $var $key) -}}
{{- end -}}
{{- end -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol -}}
{{- if not (and .Values.secrets.existingSecret .Values.secrets.keys.kafkaSaslUsername .Values.secrets.keys.kafkaSaslPassword) -}}
{{- fail "kafka.securityProtocol SASL_* needs secrets.keys.kafkaSaslUsername and kafkaSaslPassword (the apps refuse SASL without them, and KEDA authenticates with them)" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "graphrag-streams.env" -}}
- name: GRAPHRAG_CONFIG
  value: /etc/graphrag/config.yaml
{{- if .Values.secrets.existingSecret }}
{{- $vars := fromJson (include "graphrag-streams.secretVars" .) }}
{{- range $var := keys $vars | sortAlpha }}
{{- $key := get $.Values.secrets.keys (get $vars $var) }}
{{- if $key }}
- name: {{ $var }}
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.secrets.existingSecret }}
      key: {{ $key }}
{{- end }}
{{- end }}
{{- end }}
{{- $tls := include "graphrag-streams.tlsFiles" . | fromJson }}
{{- range $volume := keys $tls | sortAlpha }}
{{- range $var, $path := get (get $tls $volume) "env" }}
- name: {{ $var }}
  value: {{ $path | quote }}
{{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "graphrag-streams.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ int .Values.securityContext.runAsUser }}
runAsGroup: {{ int .Values.securityContext.runAsGroup }}
{{- with .Values.securityContext.fsGroup }}
fsGroup: {{ int . }}
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "graphrag-streams.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ int .Values.securityContext.runAsUser }}
runAsGroup: {{ int .Values.securityContext.runAsGroup }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The config and /tmp volumes; called with (dict "root" $ "configMap" <config ConfigMap name>). */}}
{{- define "graphrag-streams.volumesFrom" -}}
- name: config
  configMap:
    name: {{ .configMap }}
- name: tmp
  emptyDir:
    sizeLimit: {{ .root.Values.tmpVolume.sizeLimit | default "256Mi" }}
{{- $tls := include "graphrag-streams.tlsFiles" .root | fromJson }}
{{- range $volume := keys $tls | sortAlpha }}
{{- $v := get $tls $volume }}
- name: {{ $volume }}
  secret:
    secretName: {{ $v.secret }}
    defaultMode: 288  # 0440: the owner (root) and the pod's fsGroup
    items:
      {{- toYaml $v.items | nindent 6 }}
{{- end }}
{{- with .root.Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "graphrag-streams.volumeMounts" -}}
- name: config
  mountPath: /etc/graphrag
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- $tls := include "graphrag-streams.tlsFiles" . | fromJson }}
{{- range $volume := keys $tls | sortAlpha }}
- name: {{ $volume }}
  mountPath: {{ (get $tls $volume).mountPath }}
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Pod-level fields shared by every workload. */}}
{{- define "graphrag-streams.podCommon" -}}
{{- include "graphrag-streams.podCommonFrom" (dict "root" .
      "serviceAccountName" (include "graphrag-streams.serviceAccountName" .)
      "configMap" (printf "%s-config" (include "graphrag-streams.fullname" .))) -}}
{{- end -}}

{{/*
The same with another ServiceAccount and config ConfigMap (the topics Job, a pre-install
hook, runs before the release's own exist). Called with
(dict "root" $ "serviceAccountName" <name> "configMap" <name>).
*/}}
{{- define "graphrag-streams.podCommonFrom" -}}
{{- $ := .root -}}
serviceAccountName: {{ .serviceAccountName }}
automountServiceAccountToken: false
securityContext:
  {{- include "graphrag-streams.podSecurityContext" $ | nindent 2 }}
{{- with $.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
volumes:
  {{- include "graphrag-streams.volumesFrom" (dict "root" $ "configMap" .configMap) | nindent 2 }}
{{- end -}}


{{/*
The pod template of a worker app (`graphrag-streams worker --stages <app>`): one for every
stage and for communities, so they share probes, securityContext, config and secrets.
Called with (dict "root" $ "app" <app> "resources" <resources> "configHash" <sha256>).
*/}}
{{- define "graphrag-streams.workerPodTemplate" -}}
{{- $ := .root -}}
metadata:
  labels:
    {{- include "graphrag-streams.selectorLabels" $ | nindent 4 }}
    app.kubernetes.io/component: worker
    graphrag.io/stage: {{ .app }}
    {{- with $.Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ .configHash }}
    {{- with $.Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  {{- include "graphrag-streams.podCommon" $ | nindent 2 }}
  terminationGracePeriodSeconds: {{ int $.Values.terminationGracePeriodSeconds }}
  containers:
    - name: {{ .app }}
      image: {{ include "graphrag-streams.image" $ }}
      imagePullPolicy: {{ $.Values.image.pullPolicy }}
      args: ["worker", "--stages", "{{ .app }}"]
      env:
        {{- include "graphrag-streams.env" $ | nindent 8 }}
      ports:
        - name: metrics
          containerPort: {{ int $.Values.monitoring.metricsPort }}
          protocol: TCP
      startupProbe:
        httpGet:
          path: /livez
          port: metrics
        {{- toYaml $.Values.probes.startup | nindent 8 }}
      livenessProbe:
        httpGet:
          path: /livez
          port: metrics
        {{- toYaml $.Values.probes.liveness | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: metrics
        {{- toYaml $.Values.probes.readiness | nindent 8 }}
      resources:
        {{- toYaml .resources | nindent 8 }}
      securityContext:
        {{- include "graphrag-streams.containerSecurityContext" $ | nindent 8 }}
      volumeMounts:
        {{- include "graphrag-streams.volumeMounts" $ | nindent 8 }}
{{- end -}}
