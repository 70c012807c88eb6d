{{- /* The chart's name, or nameOverride. */ -}}
{{- define "oauth2-token-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /* Objects' names: fullnameOverride, else the release name with the chart's name. */ -}}
{{- define "oauth2-token-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "oauth2-token-operator.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "oauth2-token-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "oauth2-token-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- /* The operator's image: by digest when one is given (the tag is then ignored). */ -}}
{{- define "oauth2-token-operator.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{- define "oauth2-token-operator.labels" -}}
{{ include "oauth2-token-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "oauth2-token-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "oauth2-token-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- /* Leader election: asked for, or needed because more than one replica runs. */ -}}
{{- define "oauth2-token-operator.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) -}}
true
{{- end -}}
{{- end -}}

{{- /* What the operator does in each namespace it serves (deploy/10-rbac.yaml says why
each rule): a ClusterRole's rules when it serves all, a Role's in each one it serves. */ -}}
{{- define "oauth2-token-operator.namespacedRules" -}}
- apiGroups: [oauth2.token-operator.io]
  resources: [accesstokenrequests, oauth2clients]
  verbs: [get, list, watch, patch]
- apiGroups: [oauth2.token-operator.io]
  resources: [accesstokenrequests/status, oauth2clients/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, update, delete]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get]
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [get]
- apiGroups: [""]
  resources: [serviceaccounts/token]
  verbs: [create]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- if .Values.rolloutRestart.enabled }}
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets]
  verbs: [get, patch]
{{- end }}
{{- end -}}

{{- /* What it reads cluster-wide, whichever namespaces it serves: namespaces' labels
(for allowedNamespaces selectors) and CRDs (kopf). */ -}}
{{- define "oauth2-token-operator.clusterRules" -}}
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- end -}}

{{/* A duration such as 5m, 90s or 1h as seconds (for PromQL arithmetic). */}}
{{- define "oauth2-token-operator.seconds" -}}
{{- $d := toString . -}}
{{- if hasSuffix "h" $d -}}{{ mul (trimSuffix "h" $d | atoi) 3600 }}
{{- else if hasSuffix "m" $d -}}{{ mul (trimSuffix "m" $d | atoi) 60 }}
{{- else -}}{{ trimSuffix "s" $d | atoi }}
{{- end -}}
{{- end -}}
