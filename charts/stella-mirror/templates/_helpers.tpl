{{/*
Names and labels.
*/}}
{{- define "stella-mirror.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "stella-mirror.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "stella-mirror.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels; call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "stella-mirror.labels" -}}
helm.sh/chart: {{ include "stella-mirror.chart" .ctx }}
{{ include "stella-mirror.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: stella-mirror
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels; call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "stella-mirror.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stella-mirror.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{- define "stella-mirror.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "stella-mirror.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "stella-mirror.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Object names of the rendered and the expected (existing) objects. */}}
{{- define "stella-mirror.originService" -}}{{ include "stella-mirror.fullname" . }}-origin{{- end }}
{{- define "stella-mirror.originURL" -}}
{{- printf "http://%s.%s.svc.%s:%d" (include "stella-mirror.originService" .) .Release.Namespace .Values.clusterDomain (int .Values.origin.ports.http) }}
{{- end }}
{{- define "stella-mirror.originAdminURL" -}}
{{- printf "http://%s.%s.svc.%s:%d" (include "stella-mirror.originService" .) .Release.Namespace .Values.clusterDomain (int .Values.origin.ports.admin) }}
{{- end }}
{{- define "stella-mirror.exportsClaim" -}}
{{- default (printf "%s-exports" (include "stella-mirror.fullname" .)) .Values.exports.persistence.existingClaim }}
{{- end }}
{{- define "stella-mirror.backupClaim" -}}
{{- default (printf "%s-backup" (include "stella-mirror.fullname" .)) .Values.backup.persistence.existingClaim }}
{{- end }}
{{- define "stella-mirror.htpasswdSecret" -}}
{{- default (printf "%s-htpasswd" (include "stella-mirror.fullname" .)) .Values.gateway.htpasswd.existingSecret }}
{{- end }}
{{- define "stella-mirror.adminTokenSecret" -}}
{{- default (printf "%s-gateway-admin" (include "stella-mirror.fullname" .)) .Values.gateway.adminToken.existingSecret }}
{{- end }}
{{- define "stella-mirror.peerTokenSecret" -}}
{{- default (printf "%s-peer-token" (include "stella-mirror.fullname" .)) .Values.peerToken.existingSecret }}
{{- end }}
{{/* The peer token file as the gateway and origin pods see it. */}}
{{- define "stella-mirror.peerTokenFile" -}}
{{- printf "/run/secrets/peer-token/%s" .Values.peerToken.key }}
{{- end }}
{{/* The peer token Secret volume and its mount (gateway, origin, backup). */}}
{{- define "stella-mirror.peerTokenVolume" -}}
{{- if .Values.peerToken.enabled }}
- name: peer-token
  secret:
    secretName: {{ include "stella-mirror.peerTokenSecret" . }}
    defaultMode: 0440
{{- end }}
{{- end }}
{{- define "stella-mirror.peerTokenMount" -}}
{{- if .Values.peerToken.enabled }}
- name: peer-token
  mountPath: /run/secrets/peer-token
  readOnly: true
{{- end }}
{{- end }}
{{- define "stella-mirror.gatewayAuthoritySecret" -}}
{{- default (printf "%s-gateway-authority" (include "stella-mirror.fullname" .)) .Values.gateway.upstreamAuthority.existingSecret }}
{{- end }}
{{- define "stella-mirror.syncSecret" -}}
{{- default (printf "%s-sync" (include "stella-mirror.fullname" .)) .Values.sync.existingSecret }}
{{- end }}
{{- define "stella-mirror.backupSecret" -}}
{{- default (printf "%s-backup" (include "stella-mirror.fullname" .)) .Values.backup.existingSecret }}
{{- end }}
{{/* TLS Secret of a site; call with (dict "ctx" $ "site" $site). */}}
{{- define "stella-mirror.siteTLSSecret" -}}
{{- default (printf "%s-tls-%s" (include "stella-mirror.fullname" .ctx) .site.name) .site.tlsSecretName }}
{{- end }}

{{/* Paths inside the containers. */}}
{{- define "stella-mirror.exportRoot" -}}/srv/stella-mirror/exports{{- end }}
{{- define "stella-mirror.syncTextfile" -}}/srv/stella-mirror/exports/.stella-mirror-sync.prom{{- end }}

{{/*
Pod and container security contexts (every pod: non-root 65532, read-only
root, no privilege escalation, no capabilities, RuntimeDefault seccomp).
*/}}
{{- define "stella-mirror.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
# Re-own a volume only when its root is not the pod's group already: a
# large exports PVC is not walked and chowned on every pod start.
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "stella-mirror.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Environment of each component, as a YAML mapping KEY: "value" (rendered into
its ConfigMap, and as KEY=value lines into the backup's profile files).
Every key is a documented configuration key of the binary
(docs/configuration.md); values never hold secrets, only paths to them.
*/}}
{{- define "stella-mirror.originEnv" -}}
{{- $v := .Values -}}
ORIGIN__LISTEN: {{ printf "0.0.0.0:%d" (int $v.origin.ports.http) | quote }}
ORIGIN__ADMINLISTEN: {{ printf "0.0.0.0:%d" (int $v.origin.ports.admin) | quote }}
ORIGIN__LOGFORMAT: {{ $v.origin.logFormat | quote }}
ORIGIN__LOGLEVEL: {{ $v.origin.logLevel | quote }}
ORIGIN__SHUTDOWNDELAY: {{ $v.origin.shutdownDelay | quote }}
{{- if and $v.sync.enabled $v.sync.metricsTextfile }}
ORIGIN__SYNCMETRICSTEXTFILE: {{ include "stella-mirror.syncTextfile" . | quote }}
{{- /* No node_exporter reads the volume: the origin's /metrics serves the file. */}}
ORIGIN__SYNCMETRICSEXPORT: "true"
{{- end }}
{{- range $p := list "CONCELIER" "EXCITITOR" }}
{{- $prod := ternary $v.origin.concelier $v.origin.excititor (eq $p "CONCELIER") }}
{{ $p }}__MIRROR__ENABLED: {{ $prod.enabled | toString | quote }}
{{- if eq $p "CONCELIER" }}
CONCELIER__MIRROR__EXPORTROOT: {{ include "stella-mirror.exportRoot" $ | quote }}
{{- else }}
EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT: {{ include "stella-mirror.exportRoot" $ | quote }}
{{- end }}
{{- with $prod.activeExportId }}
{{ $p }}__MIRROR__ACTIVEEXPORTID: {{ . | quote }}
{{- end }}
{{ $p }}__MIRROR__REQUIREAUTHENTICATION: {{ $v.origin.requireAuthentication | toString | quote }}
{{ $p }}__MIRROR__MAXINDEXREQUESTSPERHOUR: {{ int $v.origin.maxIndexRequestsPerHour | toString | quote }}
{{- range $i, $d := $v.domains }}
{{ $p }}__MIRROR__DOMAINS__{{ $i }}__ID: {{ $d.id | quote }}
{{- with $d.displayName }}
{{ $p }}__MIRROR__DOMAINS__{{ $i }}__DISPLAYNAME: {{ . | quote }}
{{- end }}
{{- if not (kindIs "invalid" $d.requireAuthentication) }}
{{ $p }}__MIRROR__DOMAINS__{{ $i }}__REQUIREAUTHENTICATION: {{ $d.requireAuthentication | toString | quote }}
{{- end }}
{{- if $d.maxDownloadRequestsPerHour }}
{{ $p }}__MIRROR__DOMAINS__{{ $i }}__MAXDOWNLOADREQUESTSPERHOUR: {{ int $d.maxDownloadRequestsPerHour | toString | quote }}
{{- end }}
{{- end }}
{{ $p }}__AUTHORITY__ENABLED: {{ $v.origin.authority.enabled | toString | quote }}
{{ $p }}__AUTHORITY__ALLOWANONYMOUSFALLBACK: {{ $v.origin.authority.allowAnonymousFallback | toString | quote }}
{{- if $v.origin.authority.enabled }}
{{- with $v.origin.authority.issuer }}
{{ $p }}__AUTHORITY__ISSUER: {{ . | quote }}
{{- end }}
{{- with $v.origin.authority.jwksUrl }}
{{ $p }}__AUTHORITY__JWKSURL: {{ . | quote }}
{{- end }}
{{ $p }}__AUTHORITY__REQUIREHTTPSMETADATA: {{ $v.origin.authority.requireHttpsMetadata | toString | quote }}
{{- range $i, $a := (ternary $v.origin.authority.concelierAudiences $v.origin.authority.excititorAudiences (eq $p "CONCELIER")) }}
{{ $p }}__AUTHORITY__AUDIENCES__{{ $i }}: {{ $a | quote }}
{{- end }}
{{- end }}
{{- range $i, $n := $v.origin.bypassNetworks }}
{{ $p }}__AUTHORITY__BYPASSNETWORKS__{{ $i }}: {{ $n | quote }}
{{- end }}
{{- end }}
{{- if $v.peerToken.enabled }}
ORIGIN__PEERTOKENFILE: {{ include "stella-mirror.peerTokenFile" $ | quote }}
{{- end }}
{{- range $k, $val := $v.origin.extraEnv }}
{{ $k }}: {{ $val | toString | quote }}
{{- end }}
{{- end }}

{{- define "stella-mirror.gatewayEnv" -}}
{{- $v := .Values -}}
GATEWAY__LISTEN: {{ printf ":%d" (int $v.gateway.ports.https) | quote }}
GATEWAY__HTTPLISTEN: {{ ternary (printf ":%d" (int $v.gateway.ports.http)) "" (gt (int $v.gateway.ports.http) 0) | quote }}
GATEWAY__ADMINLISTEN: {{ printf "0.0.0.0:%d" (int $v.gateway.ports.admin) | quote }}
GATEWAY__ORIGIN: {{ include "stella-mirror.originURL" . | quote }}
GATEWAY__ORIGINSTATUSURL: {{ printf "%s/status.json" (include "stella-mirror.originAdminURL" .) | quote }}
GATEWAY__LOGFORMAT: {{ $v.gateway.logFormat | quote }}
GATEWAY__LOGLEVEL: {{ $v.gateway.logLevel | quote }}
GATEWAY__SHUTDOWNTIMEOUT: {{ $v.gateway.shutdownTimeout | quote }}
GATEWAY__SHUTDOWNDELAY: {{ $v.gateway.shutdownDelay | quote }}
{{- with $v.gateway.hstsMaxAge }}
GATEWAY__HSTSMAXAGE: {{ . | quote }}
{{- end }}
{{- with $v.gateway.credentialCacheTTL }}
GATEWAY__CREDENTIALCACHETTL: {{ . | quote }}
{{- end }}
{{- with $v.gateway.cdnMaxAge }}
GATEWAY__CDNMAXAGE: {{ . | quote }}
{{- end }}
{{- range $i, $c := $v.gateway.trustedProxies }}
GATEWAY__TRUSTEDPROXIES__{{ $i }}: {{ $c | quote }}
{{- end }}
{{- if $v.gateway.cache.enabled }}
GATEWAY__CACHE__DIR: "/var/cache/stella-mirror"
GATEWAY__CACHE__MAXSIZE: {{ printf "%dMiB" (int $v.gateway.cache.maxSizeMiB) | quote }}
{{- with $v.gateway.cache.staleIfErrorGrace }}
GATEWAY__CACHE__STALEIFERRORGRACE: {{ . | quote }}
{{- end }}
{{- end }}
{{- if $v.gateway.adminToken.enabled }}
GATEWAY__ADMINTOKENFILE: {{ printf "/run/secrets/gateway-admin/%s" $v.gateway.adminToken.key | quote }}
{{- end }}
{{- if $v.peerToken.enabled }}
GATEWAY__ORIGINPEERTOKENFILE: {{ include "stella-mirror.peerTokenFile" . | quote }}
{{- end }}
{{- if $v.gateway.upstreamAuthority.enabled }}
GATEWAY__AUTHORITY__ENABLED: "true"
GATEWAY__AUTHORITY__TOKENURL: {{ $v.gateway.upstreamAuthority.tokenURL | quote }}
GATEWAY__AUTHORITY__CLIENTID: {{ $v.gateway.upstreamAuthority.clientID | quote }}
GATEWAY__AUTHORITY__CLIENTSECRETFILE: {{ printf "/run/secrets/gateway-authority/%s" $v.gateway.upstreamAuthority.key | quote }}
{{- range $i, $s := $v.gateway.upstreamAuthority.scopes }}
GATEWAY__AUTHORITY__SCOPES__{{ $i }}: {{ $s | quote }}
{{- end }}
{{- with $v.gateway.upstreamAuthority.audience }}
GATEWAY__AUTHORITY__AUDIENCE: {{ . | quote }}
{{- end }}
{{- else }}
GATEWAY__AUTHORITY__ENABLED: "false"
{{- end }}
{{- range $i, $s := $v.gateway.sites }}
GATEWAY__SITES__{{ $i }}__NAME: {{ $s.name | quote }}
{{- range $j, $h := $s.hosts }}
GATEWAY__SITES__{{ $i }}__HOSTS__{{ $j }}: {{ $h | quote }}
{{- end }}
{{- range $j, $d := $s.domains }}
GATEWAY__SITES__{{ $i }}__DOMAINS__{{ $j }}: {{ $d | quote }}
{{- end }}
GATEWAY__SITES__{{ $i }}__CERTFILE: {{ printf "/etc/stella-mirror/tls/%s/tls.crt" $s.name | quote }}
GATEWAY__SITES__{{ $i }}__KEYFILE: {{ printf "/etc/stella-mirror/tls/%s/tls.key" $s.name | quote }}
{{- if $s.anonymous }}
GATEWAY__SITES__{{ $i }}__ANONYMOUS: "true"
{{- else }}
GATEWAY__SITES__{{ $i }}__HTPASSWDFILE: {{ printf "/run/secrets/htpasswd/%s.htpasswd" $s.name | quote }}
{{- end }}
{{- with $s.realm }}
GATEWAY__SITES__{{ $i }}__REALM: {{ . | quote }}
{{- end }}
{{- if $s.maxIndexRequestsPerHour }}
GATEWAY__SITES__{{ $i }}__MAXINDEXREQUESTSPERHOUR: {{ int $s.maxIndexRequestsPerHour | toString | quote }}
{{- end }}
{{- if $s.maxDownloadRequestsPerHour }}
GATEWAY__SITES__{{ $i }}__MAXDOWNLOADREQUESTSPERHOUR: {{ int $s.maxDownloadRequestsPerHour | toString | quote }}
{{- end }}
{{- end }}
{{- range $k, $val := $v.gateway.extraEnv }}
{{ $k }}: {{ $val | toString | quote }}
{{- end }}
{{- end }}

{{- define "stella-mirror.syncEnv" -}}
{{- $v := .Values -}}
SYNC__SOURCE: {{ $v.sync.source | quote }}
SYNC__DEST: {{ include "stella-mirror.exportRoot" . | quote }}
SYNC__KEEP: {{ int $v.sync.keep | toString | quote }}
{{- range $i, $k := $v.sync.publicKeys }}
SYNC__PUBLICKEYS__{{ $i }}: {{ printf "/run/secrets/sync/%s" $k | quote }}
{{- end }}
{{- range $i, $d := $v.sync.domains }}
SYNC__DOMAINS__{{ $i }}: {{ $d | quote }}
{{- end }}
{{- if $v.sync.metricsTextfile }}
SYNC__METRICSTEXTFILE: {{ include "stella-mirror.syncTextfile" . | quote }}
{{- end }}
{{- with $v.sync.httpTimeout }}
SYNC__HTTPTIMEOUT: {{ . | quote }}
{{- end }}
{{- with $v.sync.jwksUrl }}
SYNC__JWKSURL: {{ . | quote }}
{{- end }}
{{- with $v.sync.basicAuthKey }}
SYNC__BASICAUTHFILE: {{ printf "/run/secrets/sync/%s" . | quote }}
{{- end }}
{{- with $v.sync.bearerTokenKey }}
SYNC__BEARERTOKENFILE: {{ printf "/run/secrets/sync/%s" . | quote }}
{{- end }}
{{- with $v.sync.s3CredentialsKey }}
SYNC__S3__CREDENTIALSFILE: {{ printf "/run/secrets/sync/%s" . | quote }}
{{- end }}
{{- with $v.sync.caKey }}
SYNC__CAFILE: {{ printf "/run/secrets/sync/%s" . | quote }}
{{- end }}
{{- with $v.sync.s3.endpoint }}
SYNC__S3__ENDPOINT: {{ . | quote }}
{{- end }}
{{- with $v.sync.s3.region }}
SYNC__S3__REGION: {{ . | quote }}
{{- end }}
{{- if not (kindIs "invalid" $v.sync.s3.pathStyle) }}
SYNC__S3__PATHSTYLE: {{ $v.sync.s3.pathStyle | toString | quote }}
{{- end }}
{{- range $k, $val := $v.sync.extraEnv }}
{{ $k }}: {{ $val | toString | quote }}
{{- end }}
{{- end }}

{{/* A mapping rendered as an env file (KEY=value lines, sorted). */}}
{{- define "stella-mirror.envFile" -}}
{{- $m := . -}}
{{- range $k := keys $m | sortAlpha }}
{{ $k }}={{ index $m $k }}
{{- end }}
{{- end }}

{{/* Volumes and mounts shared by several pods. */}}
{{- define "stella-mirror.gatewaySecretVolumes" -}}
{{- $ctx := . -}}
{{- range $s := .Values.gateway.sites }}
- name: tls-{{ $s.name }}
  secret:
    secretName: {{ include "stella-mirror.siteTLSSecret" (dict "ctx" $ctx "site" $s) }}
    defaultMode: 0440
{{- end }}
{{- if include "stella-mirror.needsHtpasswd" . }}
- name: htpasswd
  secret:
    secretName: {{ include "stella-mirror.htpasswdSecret" . }}
    defaultMode: 0440
{{- end }}
{{- if .Values.gateway.adminToken.enabled }}
- name: gateway-admin
  secret:
    secretName: {{ include "stella-mirror.adminTokenSecret" . }}
    defaultMode: 0440
{{- end }}
{{- include "stella-mirror.peerTokenVolume" . }}
{{- if .Values.gateway.upstreamAuthority.enabled }}
- name: gateway-authority
  secret:
    secretName: {{ include "stella-mirror.gatewayAuthoritySecret" . }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{- define "stella-mirror.gatewaySecretMounts" -}}
{{- range $s := .Values.gateway.sites }}
- name: tls-{{ $s.name }}
  mountPath: /etc/stella-mirror/tls/{{ $s.name }}
  readOnly: true
{{- end }}
{{- if include "stella-mirror.needsHtpasswd" . }}
- name: htpasswd
  mountPath: /run/secrets/htpasswd
  readOnly: true
{{- end }}
{{- if .Values.gateway.adminToken.enabled }}
- name: gateway-admin
  mountPath: /run/secrets/gateway-admin
  readOnly: true
{{- end }}
{{- include "stella-mirror.peerTokenMount" . }}
{{- if .Values.gateway.upstreamAuthority.enabled }}
- name: gateway-authority
  mountPath: /run/secrets/gateway-authority
  readOnly: true
{{- end }}
{{- end }}

{{/* "true" when some site needs an htpasswd file. */}}
{{- define "stella-mirror.needsHtpasswd" -}}
{{- range .Values.gateway.sites }}{{ if not .anonymous }}true{{ end }}{{ end }}
{{- end }}

{{- define "stella-mirror.syncSecretVolume" -}}
- name: sync-secrets
  secret:
    secretName: {{ include "stella-mirror.syncSecret" . }}
    defaultMode: 0440
{{- end }}

{{/* The sync container; call with (dict "ctx" $ "args" (list ...)). */}}
{{- define "stella-mirror.syncContainer" -}}
{{- $ := .ctx -}}
- name: sync
  image: {{ include "stella-mirror.image" $ }}
  imagePullPolicy: {{ $.Values.image.pullPolicy }}
  args:
    {{- toYaml .args | nindent 4 }}
  envFrom:
    - configMapRef:
        name: {{ include "stella-mirror.fullname" $ }}-sync-env
  securityContext:
    {{- include "stella-mirror.containerSecurityContext" $ | nindent 4 }}
  resources:
    {{- toYaml $.Values.sync.resources | nindent 4 }}
  volumeMounts:
    - name: exports
      mountPath: {{ include "stella-mirror.exportRoot" $ }}
    - name: sync-secrets
      mountPath: /run/secrets/sync
      readOnly: true
    - name: tmp
      mountPath: /tmp
{{- end }}
