{{/* Names, labels and shared pieces of the hangar chart. */}}

{{- define "hangar.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "hangar.labels" -}}
app.kubernetes.io/name: hangar
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "hangar.selector" -}}
app.kubernetes.io/name: hangar
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "hangar.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "hangar.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "hangar.fullname" .)) -}}
{{- end -}}

{{/* The control plane's Service, as the agent reaches it in the cluster. */}}
{{- define "hangar.url" -}}
http://{{ include "hangar.fullname" . }}.{{ .Release.Namespace }}.svc:{{ .Values.controlPlane.service.port }}
{{- end -}}

{{/* A variable from the chart's Secret. */}}
{{- define "hangar.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "hangar.secretName" .root }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end -}}

{{/* Restricted pod security: the same for every container of the chart. */}}
{{- define "hangar.podSecurity" -}}
runAsNonRoot: true
runAsUser: 50000
runAsGroup: 50000
fsGroup: 50000
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "hangar.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{- define "hangar.otlp" -}}
{{- if .Values.otlp.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .Values.otlp.endpoint | quote }}
{{- end }}
{{- end -}}

{{/* A secret value: the one given, else the one this release's Secret already holds under
     `key`, else `generated` (so an upgrade keeps it). `helm template` and tools that render
     without a cluster cannot look up the Secret: give such values explicitly there. */}}
{{- define "hangar.kept" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace (include "hangar.secretName" .root) | default dict -}}
{{- $kept := index ($existing.data | default dict) .key | default "" | b64dec -}}
{{- .given | default $kept | default .generated -}}
{{- end -}}

{{/* The cell's token; the control plane creates the cell with it at start-up. */}}
{{- define "hangar.cellToken" -}}
{{- include "hangar.kept" (dict "root" . "key" "cell-token" "given" .Values.secrets.cellToken "generated" (printf "hgc_%s" (randAlphaNum 40))) -}}
{{- end -}}

{{/* The bundled Postgres' and Redis' in-cluster host names. */}}
{{- define "hangar.bundledPostgresHost" -}}
{{ include "hangar.fullname" . }}-postgres.{{ .Release.Namespace }}.svc
{{- end -}}
{{- define "hangar.bundledRedisHost" -}}
{{ include "hangar.fullname" . }}-redis.{{ .Release.Namespace }}.svc
{{- end -}}
