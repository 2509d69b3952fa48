{{/*
The pod, shared by the Deployment and the DaemonSet. Called with (dict "ctx" $ "c" $config)
where $config is what "edge.config" fills.
*/}}
{{- define "edge.pod" -}}
{{- $ := .ctx -}}
{{- $c := .c -}}
{{- $hostNetwork := and $.Values.daemonset.enabled $.Values.daemonset.hostNetwork -}}
metadata:
  labels:
    {{- include "edge.selectorLabels" $ | nindent 4 }}
    {{- with $.Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # Roll the pods when the node config changes.
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") $ | sha256sum }}
    {{- with $.Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "edge.serviceAccountName" $ }}
  automountServiceAccountToken: false
  {{- with $.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $.Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- if $hostNetwork }}
  hostNetwork: true
  dnsPolicy: ClusterFirstWithHostNet
  {{- end }}
  # preStop sleep + server.drain_timeout_ms ({{ $c.drainMs }} ms, region {{ $.Values.region | default "none" | quote }}) + margin.
  terminationGracePeriodSeconds: {{ $c.graceSeconds }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    runAsGroup: 65532
    fsGroup: 65532
    seccompProfile:
      type: RuntimeDefault
    {{- if and (lt (int $c.httpsPort) 1024) (not $hostNetwork) }}
    # A port below 1024 without root or capabilities.
    sysctls:
      - name: net.ipv4.ip_unprivileged_port_start
        value: "0"
    {{- end }}
  containers:
    - name: edge
      image: {{ include "edge.image" $ }}
      imagePullPolicy: {{ $.Values.image.pullPolicy }}
      args:
        - serve
        - --config
        - /etc/edge/edge.toml
        {{- with $.Values.region }}
        - --region
        - {{ . | quote }}
        {{- end }}
      env:
        # The node's identity in Via, logs and metrics.
        - name: EDGE_NODE_ID
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: TMPDIR
          value: /tmp
        {{- with $.Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      # On the host's network the API server sets hostPort = containerPort.
      ports:
        - name: https
          containerPort: {{ $c.httpsPort }}
          protocol: TCP
        {{- if $c.http3 }}
        - name: h3
          containerPort: {{ $c.httpsPort }}
          protocol: UDP
        {{- end }}
        {{- if $c.plainPort }}
        - name: http
          containerPort: {{ $c.plainPort }}
          protocol: TCP
        {{- end }}
        - name: admin
          containerPort: {{ $c.adminPort }}
          protocol: TCP
      # Compiling the Wasm modules at start (no compiled copy in /tmp yet) takes seconds.
      startupProbe:
        httpGet:
          path: /health
          port: admin
        periodSeconds: 2
        failureThreshold: 60
      livenessProbe:
        httpGet:
          path: /health
          port: admin
        periodSeconds: 10
        timeoutSeconds: 3
        failureThreshold: 3
      # 503 while draining: the pod leaves the endpoints before its connections close.
      readinessProbe:
        httpGet:
          path: /ready
          port: admin
        periodSeconds: 5
        timeoutSeconds: 2
        failureThreshold: 2
      lifecycle:
        preStop:
          sleep:
            seconds: {{ $.Values.drain.preStopSleepSeconds }}
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        privileged: false
        capabilities:
          drop: ["ALL"]
      resources:
        {{- toYaml $.Values.resources | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/edge
          readOnly: true
        - name: tmp
          mountPath: /tmp
  volumes:
    # edge.toml, regions/, tls/ and secrets/ in one folder: paths in the config are
    # relative to it.
    - name: config
      projected:
        defaultMode: 0440
        sources:
          - configMap:
              name: {{ include "edge.fullname" $ }}-config
              items:
                - key: edge.toml
                  path: edge.toml
                {{- range $name, $_ := $c.overlays }}
                - key: region-{{ $name }}.toml
                  path: regions/{{ $name }}.toml
                {{- end }}
          - secret:
              name: {{ include "edge.tlsSecretName" $ }}
              items:
                - key: tls.crt
                  path: tls/tls.crt
                - key: tls.key
                  path: tls/tls.key
          - secret:
              name: {{ include "edge.secretsName" $ }}
              items:
                {{- range $.Values.secrets.keys }}
                - key: {{ . }}
                  path: secrets/{{ . }}
                {{- end }}
    - name: tmp
      emptyDir:
        sizeLimit: {{ $.Values.tmpSizeLimit }}
  {{- with $.Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $.Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $.Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if not $.Values.daemonset.enabled }}
  topologySpreadConstraints:
    {{- if $.Values.topologySpreadConstraints }}
    {{- toYaml $.Values.topologySpreadConstraints | nindent 4 }}
    {{- else }}
    - maxSkew: 1
      topologyKey: topology.kubernetes.io/zone
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "edge.selectorLabels" $ | nindent 10 }}
    - maxSkew: 1
      topologyKey: kubernetes.io/hostname
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "edge.selectorLabels" $ | nindent 10 }}
    {{- end }}
  {{- end }}
{{- end -}}
