{{/* Chart name. */}}
{{- define "mom.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every resource name (release-scoped). */}}
{{- define "mom.fullname" -}}
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

{{/* Labels common to every object. */}}
{{- define "mom.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "mom.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mom
{{- end }}

{{/* Selector labels of the operator pods. */}}
{{- define "mom.operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mom.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Selector labels of the scheduler pods. */}}
{{- define "mom.scheduler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mom.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: scheduler
{{- end }}

{{- define "mom.operator.name" -}}{{ include "mom.fullname" . | trunc 54 | trimSuffix "-" }}-operator{{- end }}
{{- define "mom.scheduler.name" -}}{{ include "mom.fullname" . | trunc 53 | trimSuffix "-" }}-scheduler{{- end }}
{{- define "mom.metricsService" -}}{{ include "mom.fullname" . | trunc 55 | trimSuffix "-" }}-metrics{{- end }}
{{- define "mom.extenderService" -}}{{ include "mom.fullname" . | trunc 54 | trimSuffix "-" }}-extender{{- end }}

{{/* The operator's ServiceAccount username, as the apiserver sees it. */}}
{{- define "mom.operator.username" -}}
system:serviceaccount:{{ .Release.Namespace }}:{{ include "mom.operator.name" . }}
{{- end }}

{{/* Container securityContext shared by every MOM container: non-root, read-only, no capabilities. */}}
{{- define "mom.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Pod securityContext shared by every MOM pod. */}}
{{- define "mom.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The Secret holding the extender's serving certificate (tls.crt, tls.key, ca.crt). */}}
{{- define "mom.extenderClientSecret" -}}
{{- .Values.extenderTLS.clientAuth.secretName | default (printf "%s-extender-client-tls" (include "mom.fullname" . | trunc 42 | trimSuffix "-")) -}}
{{- end }}

{{/* Whether the extender requires the scheduler's client certificate. */}}
{{- define "mom.extenderClientAuth" -}}
{{- if and .Values.extenderTLS.enabled .Values.extenderTLS.clientAuth.enabled }}true{{ end -}}
{{- end }}

{{- define "mom.extenderTLSSecret" -}}
{{- .Values.extenderTLS.secretName | default (printf "%s-extender-tls" (include "mom.fullname" . | trunc 49 | trimSuffix "-")) -}}
{{- end }}
