package main

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/bpfmon/bpfmon/internal/watch"
)

const (
	manifestFile = "../../contrib/kubernetes/bpfmon.yaml"
)

// flagSize is the size a bpfmon command line gives flag (--flag V or
// --flag=V), or def.
func flagSize(t *testing.T, args []string, flag, def string) int64 {
	t.Helper()
	v := def
	for i, a := range args {
		if a == "--"+flag && i+1 < len(args) {
			v = args[i+1]
		} else if after, ok := strings.CutPrefix(a, "--"+flag+"="); ok {
			v = after
		}
	}
	n, err := parseSize(v)
	if err != nil {
		t.Fatalf("--%s %q: %v", flag, v, err)
	}
	return int64(n)
}

// checkLimit holds a deployment's memory limit to the formula: at least
// the peak its flags allow, at most 64 MiB above (a limit far above it
// says the formula and the deployment were made apart).
func checkLimit(t *testing.T, where string, limit int64, args []string) {
	t.Helper()
	scan := flagSize(t, args, "scan-memory", defaultScanMemory)
	ring := flagSize(t, args, "ring-buffer", defaultRing)
	peak := watch.MemoryPeak(scan, ring)
	if limit < peak || limit > peak+64<<20 {
		t.Errorf("%s: memory limit %d MiB; the formula (docs/memory.md) gives %d MiB for --scan-memory %d MiB and --ring-buffer %d MiB: want it up to 64 MiB above",
			where, limit>>20, peak>>20, scan>>20, ring>>20)
	}
}

// TestDeploymentMemoryLimits: the DaemonSet's and the systemd unit's
// memory limits follow the formula from their own command lines, and
// neither sets GOMEMLIMIT, which would override the limit bpfmon derives.
func TestDeploymentMemoryLimits(t *testing.T) {
	b, err := os.ReadFile(manifestFile)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, doc := range strings.Split(string(b), "\n---") {
		var d struct {
			Kind string
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct {
							Name      string
							Args      []string
							Env       []struct{ Name, Value string }
							Resources struct {
								Limits map[string]string
							}
						}
					}
				}
			}
		}
		if err := yaml.Unmarshal([]byte(doc), &d); err != nil {
			t.Fatalf("%s: %v", manifestFile, err)
		}
		if d.Kind != "DaemonSet" {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.Name != "bpfmon" {
				continue
			}
			found = true
			for _, e := range c.Env {
				if e.Name == "GOMEMLIMIT" {
					t.Errorf("%s: GOMEMLIMIT %s overrides the limit bpfmon derives from its flags", manifestFile, e.Value)
				}
			}
			checkLimit(t, manifestFile, quantity(t, c.Resources.Limits["memory"]), c.Args)
		}
	}
	if !found {
		t.Fatalf("%s: no DaemonSet with a bpfmon container", manifestFile)
	}

	b, err = os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	var limit int64 = -1
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			args = strings.Fields(v)
		}
		if v, ok := strings.CutPrefix(line, "MemoryMax="); ok {
			limit = quantity(t, v)
		}
		if strings.Contains(line, "GOMEMLIMIT") && !strings.HasPrefix(line, "#") {
			t.Errorf("%s: %s overrides the limit bpfmon derives from its flags", unitFile, line)
		}
	}
	if args == nil || limit < 0 {
		t.Fatalf("%s: want ExecStart= and MemoryMax=", unitFile)
	}
	checkLimit(t, unitFile, limit, args)
}

// quantity parses a Kubernetes (Mi, Gi) or systemd (M, G: powers of 1024)
// size.
func quantity(t *testing.T, v string) int64 {
	t.Helper()
	mult := int64(1)
	for suffix, m := range map[string]int64{"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30} {
		if n, ok := strings.CutSuffix(v, suffix); ok && len(suffix) > 0 {
			if _, err := strconv.ParseInt(n, 10, 64); err == nil {
				v, mult = n, m
				break
			}
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("memory limit %q: %v", v, err)
	}
	return n * mult
}
