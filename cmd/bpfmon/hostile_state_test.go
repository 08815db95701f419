package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/bpfmon/bpfmon/internal/testutil"
)

// TestUntrustedState: a state file truncated, emptied, replaced by junk,
// failing its checksum, or writable by another user is not a first
// start. The start says so with a monitor_gap alert (monitor-gap, high)
// naming the cause; a stranger that got an fd to a protected map while
// bpfmon was down is reported as holder_while_down and its write alerts
// (foreign-write): it was not adopted as an owner, and neither was this
// process, which holds the map too.
func TestUntrustedState(t *testing.T) {
	testutil.RequireRoot(t)
	_, protID := newSpecMap(t, &ebpf.MapSpec{Name: "untrusted_prot", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 8})
	foreign := testutil.ForeignExecutable(t, "stranger.test")
	dir := t.TempDir()
	state := filepath.Join(dir, "state.json")
	args := []string{"--format", "json", "--policy", unlimitedAlerts(t), "--scan-interval", "300ms", "--state", state, "--protect", "id:" + itoa(protID)}

	// A good state, saved by a first start: this process owns the map.
	w := startWatch(t, args...)
	w.waitScanPasses(t, 2)
	w.stop(t, syscall.SIGTERM)
	good, err := os.ReadFile(state)
	if err != nil || !bytes.Contains(good, []byte(`"owners":[{`)) {
		t.Fatalf("no owners saved: %v %s", err, good)
	}

	for _, c := range []struct {
		name  string
		spoil func(t *testing.T) // damages the state file
		why   string             // in the monitor_gap's reason
	}{
		{"truncated", func(t *testing.T) { os.WriteFile(state, good[:len(good)/2], 0o600) }, "is corrupt"},
		{"emptied", func(t *testing.T) { os.WriteFile(state, nil, 0o600) }, "is empty"},
		{"junk", func(t *testing.T) { os.WriteFile(state, []byte("#!/bin/sh\nrm -rf /\n"), 0o600) }, "not a bpfmon state file"},
		{"edited", func(t *testing.T) {
			os.WriteFile(state, bytes.Replace(good, []byte(`"owners":[{`), []byte(`"owners":[{"exe_ino":1,"cgroup_id":1,"how":"x"},{`), 1), 0o600)
		}, "fails its checksum"},
		{"world-writable, another user's", func(t *testing.T) {
			os.WriteFile(state, good, 0o600)
			if err := os.Chown(state, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			os.Chmod(state, 0o666)
		}, "owned by uid 65534"},
		{"directory writable by others", func(t *testing.T) {
			os.WriteFile(state, good, 0o600)
			os.Chmod(dir, 0o777)
			t.Cleanup(func() { os.Chmod(dir, 0o700) })
		}, "lets group or others replace it"},
	} {
		c.spoil(t)
		pid, write := holdingStranger(t, foreign, protID)
		w := startWatch(t, args...)
		var gap, holder, self *stateEvent
		for _, ev := range parseStateEvents(t, w.lines(t)) {
			switch {
			case ev.Event == "monitor_gap":
				gap = &ev
			case ev.Event == "holder_while_down" && ev.by(pid):
				holder = &ev
			case ev.Event == "holder_while_down" && ev.by(os.Getpid()):
				self = &ev
			}
		}
		switch {
		case gap == nil:
			t.Errorf("%s: no monitor_gap at start:\n%s", c.name, strings.Join(w.lines(t), "\n"))
		case gap.Alert == nil || gap.Alert.Rule != "monitor-gap" || gap.Alert.Severity != "high" || !strings.Contains(gap.Reason, c.why) ||
			!strings.Contains(gap.Alert.Reason, "cannot be trusted"):
			t.Errorf("%s: monitor_gap %+v alert %+v; want a high monitor-gap alert naming %q", c.name, gap, gap.Alert, c.why)
		}
		if holder == nil || holder.Alert == nil || holder.Alert.Rule != "holder-while-down" || !strings.Contains(holder.Reason, "cannot be trusted") {
			t.Errorf("%s: the stranger holding the map was not reported as holder_while_down: %+v", c.name, holder)
		}
		if self == nil {
			t.Errorf("%s: this process, holding the map, was adopted as its owner", c.name)
		}
		if strings.Contains(w.stderr.String(), "first start (no state file)") {
			t.Errorf("%s: the start log calls it a first start:\n%s", c.name, w.stderr.String())
		}
		write()
		w.waitOutput(t, "the stranger's write", func(lines []string) bool {
			for _, ev := range parseStateEvents(t, lines) {
				if ev.Event == "map_update" && ev.on(protID) && ev.by(pid) {
					if ev.Alert == nil || ev.Alert.Rule != "foreign-write" {
						t.Errorf("%s: the stranger's write: alert %+v, want foreign-write", c.name, ev.Alert)
					}
					return true
				}
			}
			return false
		})
		w.stop(t, syscall.SIGTERM)
		if fi, err := os.Stat(state); c.name != "junk" && (err != nil || fi.Mode().Perm() != 0o600 || fi.Sys().(*syscall.Stat_t).Uid != uint32(os.Geteuid())) {
			t.Errorf("%s: the state file was not replaced by one of bpfmon's own: %v %v", c.name, fi.Mode(), err)
		}
	}
}
