module github.com/bpfmon/bpfmon

go 1.26.8

require (
	github.com/cilium/ebpf v0.22.0
	go.yaml.in/yaml/v3 v3.0.6
	golang.org/x/sys v0.49.0
)

require gopkg.in/natefinch/lumberjack.v2 v2.2.1

tool github.com/cilium/ebpf/cmd/bpf2go
