{{/* Common names and labels. */}}
{{- define "bulwark.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "bulwark.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: include "bulwark.selector" (list $ "scheduler") */}}
{{- define "bulwark.selector" -}}
app.kubernetes.io/name: {{ (index . 0).Chart.Name }}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* An image reference: include "bulwark.image" (list $ "scheduler" "scheduler") (values key, image name) */}}
{{- define "bulwark.image" -}}
{{- $root := index . 0 -}}
{{- $override := index $root.Values.images (index . 1) -}}
{{- if $override -}}{{ $override }}{{- else -}}{{ printf "%s/%s:%s" $root.Values.image.registry (index . 2) $root.Values.image.tag }}{{- end -}}
{{- end -}}

{{- define "bulwark.natsUrl" -}}
nats://{{ include "bulwark.fullname" . }}-nats.{{ .Release.Namespace }}.svc:4222
{{- end -}}

{{- define "bulwark.sandboxNamespace" -}}
{{- default .Release.Namespace .Values.driverK8s.sandboxNamespace -}}
{{- end -}}

{{/* The common container settings of a Bulwark service. */}}
{{- define "bulwark.serviceEnv" -}}
- name: BULWARK_NATS_URL
  value: {{ include "bulwark.natsUrl" . | quote }}
- name: BULWARK_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: BULWARK_LOG_FORMAT
  value: json
{{- end -}}

{{- define "bulwark.securityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* NATS operator mode (values nats.auth.secretName): a service's identity.
     env:          include "bulwark.natsAuthEnv" (list $ "scheduler")
     volumeMounts: include "bulwark.natsAuthMount" $
     volumes:      include "bulwark.natsAuthVolume" (list $ "scheduler.creds" "ca.crt")
     Each pod mounts only its own keys of the Secret. */}}
{{- define "bulwark.natsAuthEnv" -}}
{{- if (index . 0).Values.nats.auth.secretName }}
- name: BULWARK_NATS_CREDS
  value: /etc/bulwark/nats/{{ index . 1 }}.creds
- name: BULWARK_NATS_CA
  value: /etc/bulwark/nats/ca.crt
{{- end }}
{{- end -}}

{{- define "bulwark.natsAuthMount" -}}
{{- if .Values.nats.auth.secretName }}
- {name: nats-auth, mountPath: /etc/bulwark/nats, readOnly: true}
{{- end }}
{{- end -}}

{{- define "bulwark.natsAuthVolume" -}}
{{- $root := index . 0 -}}
{{- with $root.Values.nats.auth.secretName }}
- name: nats-auth
  secret:
    secretName: {{ . | quote }}
    defaultMode: 0440
    items:
      {{- range (rest $) }}
      - {key: {{ . | quote }}, path: {{ . | quote }}}
      {{- end }}
{{- end }}
{{- end -}}
