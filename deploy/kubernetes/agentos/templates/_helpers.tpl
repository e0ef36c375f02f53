{{/*
The release's name prefix: the release name, or release-agentos when the
release name does not say agentos.
*/}}
{{- define "agentos.fullname" -}}
{{- if contains "agentos" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-agentos" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
The services, as "component name: values key". Every per-service template
ranges over it, so a service is added in one place.
*/}}
{{- define "agentos.components" -}}
{{- dict "orchestrator" "orchestrator" "model-policy" "modelPolicy" "federation" "federation" "gateway" "gateway" | toJson -}}
{{- end -}}

{{/* The port each service listens on (docs/operations.md, Settings). */}}
{{- define "agentos.port" -}}
{{- get (dict "gateway" "50080" "orchestrator" "50081" "model-policy" "50082" "federation" "50083") . -}}
{{- end -}}

{{- define "agentos.peerPort" -}}50084{{- end -}}

{{/* Labels every object carries; call with (dict "root" $ "component" name). */}}
{{- define "agentos.labels" -}}
{{ include "agentos.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "agentos.selectorLabels" -}}
app.kubernetes.io/name: agentos
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end -}}

{{/* The Secret holding tokens, keys and the store URL. */}}
{{- define "agentos.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "agentos.fullname" .)) -}}
{{- end -}}

{{/* Federation's client API is TLS in prod (docs/operations.md, Modes). */}}
{{- define "agentos.federationScheme" -}}
{{- if eq .Values.mode "prod" }}https{{ else }}http{{ end -}}
{{- end -}}

{{/* Whether a bootstrap admin token file is mounted. */}}
{{- define "agentos.hasBootstrapToken" -}}
{{- if and .Values.secrets.keys.bootstrapAdminToken (or .Values.secrets.existingSecret .Values.secrets.create.bootstrapAdminToken) }}true{{ end -}}
{{- end -}}
