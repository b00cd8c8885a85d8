{{/* Resource-name prefix: the release name, plus "-irsa" unless it already says irsa. */}}
{{- define "irsa.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "irsa.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "irsa.webhook.name" -}}{{ include "irsa.fullname" . }}-webhook{{- end -}}
{{- define "irsa.controller.name" -}}{{ include "irsa.fullname" . }}-controller{{- end -}}
{{- define "irsa.agent.name" -}}{{ include "irsa.fullname" . }}-agent{{- end -}}
{{- define "irsa.webhook.tlsSecretName" -}}
{{- if eq .Values.tls.mode "existingSecret" -}}
{{- required "tls.existingSecret.name is required when tls.mode=existingSecret" .Values.tls.existingSecret.name -}}
{{- else if eq .Values.tls.mode "self" -}}
{{- /* Not the generate mode's name: that Secret is kubernetes.io/tls, this one Opaque, and a
Secret's type cannot change when a release switches modes. */ -}}
{{- include "irsa.webhook.name" . }}-self-tls
{{- else -}}
{{- include "irsa.webhook.name" . }}-tls
{{- end -}}
{{- end -}}

{{- define "irsa.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "irsa.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: irsa
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: include with (dict "ctx" $ "component" "webhook"). */}}
{{- define "irsa.selectorLabels" -}}
app.kubernetes.io/name: {{ include "irsa.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "irsa.componentLabels" -}}
{{ include "irsa.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "irsa.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}
{{- end -}}

{{/* Pod and container security settings shared by both components (restricted PSS). */}}
{{- define "irsa.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "irsa.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* topologySpreadConstraints from values, each given the component's labelSelector
     unless it names its own. Include with (dict "ctx" $ "component" "webhook" "list" ...). */}}
{{- define "irsa.topologySpread" -}}
{{- $selector := fromYaml (include "irsa.selectorLabels" (dict "ctx" .ctx "component" .component)) -}}
{{- range .list }}
{{- $c := deepCopy . }}
{{- if not (hasKey $c "labelSelector") }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" $selector) }}
{{- end }}
- {{ toYaml $c | nindent 2 | trim }}
{{- end }}
{{- end -}}

{{- /* How much the counters of a selector grew over a window (list SELECTOR WINDOW), exactly:
each series now minus its value one window ago, where a series born within the window counts
from 0. A failure counter is created at its first failure, with 1: increase() would count that
first failure only once a second one follows, and it extrapolates, so that "more than 5" could
fire at 5. A series that was reset within the window (its process restarted) falls back to
increase(), which knows resets. */ -}}
{{- define "irsa.alerts.growth" -}}
{{- $series := index . 0 -}}
{{- $window := index . 1 -}}
((({{ $series }} - ({{ $series }} offset {{ $window }} or {{ $series }} * 0)) unless resets({{ $series }}[{{ $window }}]) > 0) or increase({{ $series }}[{{ $window }}]))
{{- end -}}

{{- define "irsa.agent.initImage" -}}
{{- with .Values.agent.initImage -}}
{{- if .digest -}}
{{ .repository }}@{{ .digest }}
{{- else -}}
{{ .repository }}:{{ .tag }}
{{- end -}}
{{- end -}}
{{- end -}}
