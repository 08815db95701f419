{{- define "bpfmon.labels" -}}
app.kubernetes.io/name: bpfmon
{{- end -}}
