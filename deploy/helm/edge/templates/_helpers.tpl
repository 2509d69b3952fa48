{{/* Names and labels. */}}
{{- define "edge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "edge.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "edge.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "edge.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "edge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "edge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "edge.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "edge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.region }}
edge.example.com/region: {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "edge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "edge.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "edge.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "edge.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "edge.fullname" .)) .Values.tls.existingSecret -}}
{{- end -}}

{{- define "edge.secretsName" -}}
{{- default (printf "%s-secrets" (include "edge.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/*
The node config, read the way the node reads it: edge.toml (config.edgeToml or
files/edge.toml) with the region's overlay (config.regionOverlays or
files/regions/<region>.toml). Called with (dict "ctx" $ "out" $dict); fills $dict with
  baseToml, overlays (name -> text), listen, plainListen, http3, drainMs, adminListen,
  httpsPort, plainPort (0: none), adminPort, graceSeconds.
A key set in the overlay wins over the base (what `edge serve --region` does); unset keys
take the node's defaults (edge-runtime/src/config/raw.rs).
*/}}
{{- define "edge.config" -}}
{{- $ctx := .ctx -}}
{{- $out := .out -}}
{{- $base := $ctx.Values.config.edgeToml | default ($ctx.Files.Get "files/edge.toml") -}}
{{- if not $base -}}
{{- fail "edge: no node config: files/edge.toml is missing and config.edgeToml is empty" -}}
{{- end -}}
{{- $overlays := dict -}}
{{- range $path, $bytes := $ctx.Files.Glob "files/regions/*.toml" -}}
{{- $_ := set $overlays (base $path | trimSuffix ".toml") (toString $bytes) -}}
{{- end -}}
{{- range $name, $text := $ctx.Values.config.regionOverlays -}}
{{- $_ := set $overlays $name $text -}}
{{- end -}}
{{- $cfg := fromToml $base -}}
{{- if hasKey $cfg "Error" -}}
{{- fail (printf "edge: edge.toml is not valid TOML: %s" $cfg.Error) -}}
{{- end -}}
{{- $ov := dict -}}
{{- with $ctx.Values.region -}}
{{- if not (hasKey $overlays .) -}}
{{- fail (printf "edge: region %q has no overlay: add files/regions/%s.toml or config.regionOverlays.%s (shipped: %s)" . . . (keys $overlays | sortAlpha | join ", ")) -}}
{{- end -}}
{{- if not (regexMatch "^[A-Za-z0-9._-]{1,64}$" .) -}}
{{- fail (printf "edge: region %q: 1-64 letters, digits, '-', '_' or '.'" .) -}}
{{- end -}}
{{- $ov = fromToml (get $overlays .) -}}
{{- if hasKey $ov "Error" -}}
{{- fail (printf "edge: regions/%s.toml is not valid TOML: %s" . $ov.Error) -}}
{{- end -}}
{{- end -}}
{{- $sb := get $cfg "server" | default dict -}}
{{- $so := get $ov "server" | default dict -}}
{{- $listen := ternary (get $so "listen") (get $sb "listen" | default "0.0.0.0:8443") (hasKey $so "listen") -}}
{{- $plain := ternary (get $so "plain_listen") (get $sb "plain_listen") (hasKey $so "plain_listen") -}}
{{- $http3 := true -}}
{{- if hasKey $so "http3" -}}{{- $http3 = get $so "http3" -}}{{- else if hasKey $sb "http3" -}}{{- $http3 = get $sb "http3" -}}{{- end -}}
{{- $drainMs := 30000 -}}
{{- if hasKey $so "drain_timeout_ms" -}}{{- $drainMs = get $so "drain_timeout_ms" -}}{{- else if hasKey $sb "drain_timeout_ms" -}}{{- $drainMs = get $sb "drain_timeout_ms" -}}{{- end -}}
{{- if not (or (hasKey $cfg "admin") (hasKey $ov "admin")) -}}
{{- fail "edge: the config has no [admin] table: the probes need /health and /ready on the admin listener" -}}
{{- end -}}
{{- $ab := get $cfg "admin" | default dict -}}
{{- $ao := get $ov "admin" | default dict -}}
{{- $admin := ternary (get $ao "listen") (get $ab "listen" | default "127.0.0.1:9901") (hasKey $ao "listen") -}}
{{- $adminHost := regexReplaceAll ":[0-9]+$" $admin "" -}}
{{- if or (hasPrefix "127." $adminHost) (eq $adminHost "[::1]") (eq $adminHost "localhost") -}}
{{- fail (printf "edge: [admin] listen = %q is loopback: kubelet probes cannot reach it; use \"0.0.0.0:<port>\"" $admin) -}}
{{- end -}}
{{- $_ := set $out "baseToml" $base -}}
{{- $_ := set $out "overlays" $overlays -}}
{{- $_ := set $out "listen" $listen -}}
{{- $_ := set $out "plainListen" $plain -}}
{{- $_ := set $out "http3" $http3 -}}
{{- $_ := set $out "drainMs" $drainMs -}}
{{- $_ := set $out "adminListen" $admin -}}
{{- $_ := set $out "httpsPort" (regexFind "[0-9]+$" $listen | atoi) -}}
{{- $_ := set $out "plainPort" (ternary (regexFind "[0-9]+$" (toString $plain) | atoi) 0 (not (empty $plain))) -}}
{{- $_ := set $out "adminPort" (regexFind "[0-9]+$" $admin | atoi) -}}
{{- $drainS := div (add $drainMs 999) 1000 -}}
{{- $_ := set $out "graceSeconds" (add $ctx.Values.drain.preStopSleepSeconds $drainS $ctx.Values.drain.extraGraceSeconds) -}}
{{- end -}}
