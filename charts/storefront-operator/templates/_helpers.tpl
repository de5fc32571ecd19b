{{- define "storefront-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "storefront-operator.labels" -}}
app.kubernetes.io/name: storefront-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "storefront-operator.selector" -}}
app.kubernetes.io/name: storefront-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "storefront-operator.serviceAccount" -}}
{{- default (include "storefront-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}
