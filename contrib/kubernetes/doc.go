// Package kubernetes holds no code. It is a Go module of its own so that its
// tests can decode bpfmon.yaml with the Kubernetes API types, strictly, and
// check it against the bpfmon it deploys (its command line, its flags,
// docs/deployment.md, the systemd unit's capabilities) and run the
// container as a runtime would (pod_test.go) without making the main module
// depend on the Kubernetes libraries. The main module's `go test ./...` does not reach it:
// .ci/run runs `go test` here too.
package kubernetes
