package main

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// stateEvent is what the trust tests read of an event.
type stateEvent struct {
	alertEvent
	FD        *int       `json:"fd"`
	Reason    string     `json:"reason"`
	LastAlive *time.Time `json:"last_alive"`
	CleanStop *bool      `json:"clean_stop"`
	Time      time.Time  `json:"time"`
	raw       string     // the line, where a test sets it
}

func parseStateEvents(t *testing.T, lines []string) []stateEvent {
	t.Helper()
	var evs []stateEvent
	for _, l := range lines {
		if l == "" {
			continue
		}
		var ev stateEvent
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// holdingStranger starts exe (a foreign copy of the test binary) holding a
// writable fd to map id until told to go on, then writing key 3 in it.
// It returns once the process holds the fd, and a function that lets it
// write and waits for it.
func holdingStranger(t *testing.T, exe string, id uint32) (int, func()) {
	t.Helper()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), actEnv+"=getfd:"+itoa(id)+",wait,update:"+itoa(id)+":3")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pid := uint32(cmd.Process.Pid)
	deadline := time.Now().Add(testutil.Timeout(10 * time.Second))
	for {
		maps, _, err := inventory.Collect(inventory.Options{PIDs: []uint32{pid}, SkipPins: true})
		if err == nil && slices.ContainsFunc(maps, func(m inventory.Map) bool { return m.ID == id }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stranger does not hold map %d after 10s: %v %s", id, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return int(pid), func() {
		t.Helper()
		io.WriteString(in, "\n")
		if err := cmd.Wait(); err != nil {
			t.Fatalf("stranger: %v: %s", err, out.String())
		}
	}
}

// kill ends the watch with SIGKILL, as an attacker would.
func (w *watcher) kill() {
	w.cmd.Process.Kill()
	w.cmd.Wait()
}

// TestTrustAcrossRestart: a stranger that gets an fd to a protected map
// while bpfmon is stopped, cleanly or by SIGKILL, is reported at the
// restart (holder-while-down) and its writes alert; the owner that held its
// fd across the restarts stays the owner; a first start with no state
// trusts the holders; the stop is told as a monitor_gap, an alert only when
// it was not clean, with the time bpfmon was last alive.
func TestTrustAcrossRestart(t *testing.T) {
	testutil.RequireRoot(t)
	// This process creates the map and holds it throughout: the owner.
	prot, protID := newSpecMap(t, &ebpf.MapSpec{Name: "trust_prot", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 8})
	foreign := testutil.ForeignExecutable(t, "stranger.test")
	state := filepath.Join(t.TempDir(), "state.json")
	args := []string{"--format", "json", "--policy", unlimitedAlerts(t), "--scan-interval", "300ms", "--state", state, "--protect", "id:" + itoa(protID)}

	ownerWrites := func(t *testing.T, w *watcher, key uint32) {
		t.Helper()
		if err := prot.Update(key, uint64(key), 0); err != nil {
			t.Fatal(err)
		}
		w.waitOutput(t, "the owner's update", func(lines []string) bool {
			for _, ev := range parseStateEvents(t, lines) {
				if ev.Event == "map_update" && ev.on(protID) && ev.by(os.Getpid()) {
					if ev.Alert != nil {
						t.Errorf("the owner's write alerted: %+v", ev.Alert)
					}
					return true
				}
			}
			return false
		})
	}
	// restart starts bpfmon again after a stranger got hold of the map
	// and checks what the start reports and what the stranger's write is.
	// The stopped bpfmon was last alive within [alive, stopped].
	restart := func(t *testing.T, alive, stopped time.Time, clean bool) *watcher {
		t.Helper()
		pid, write := holdingStranger(t, foreign, protID)
		w := startWatch(t, args...)
		if !strings.Contains(w.stderr.String(), "keep the owners saved") {
			t.Errorf("the start log does not say the saved owners are kept:\n%s", w.stderr.String())
		}
		var holder, gap *stateEvent
		for _, ev := range parseStateEvents(t, w.lines(t)) {
			switch {
			case ev.Event == "holder_while_down" && ev.by(pid):
				holder = &ev
			case ev.Event == "holder_while_down":
				t.Errorf("holder_while_down for another process than the stranger: %+v", ev)
			case ev.Event == "monitor_gap":
				gap = &ev
			}
		}
		switch {
		case holder == nil:
			t.Fatalf("no holder_while_down for the stranger (pid %d) written before ready:\n%s", pid, strings.Join(w.lines(t), "\n"))
		case holder.Alert == nil || holder.Alert.Rule != "holder-while-down" || holder.Alert.Severity != readmeSeverity(t, "holder-while-down"):
			t.Errorf("holder_while_down alert: %+v", holder.Alert)
		case !holder.on(protID) || holder.FD == nil || holder.Source != "state":
			t.Errorf("holder_while_down names neither the map nor the fd: %+v", holder)
		}
		switch {
		case gap == nil:
			t.Errorf("no monitor_gap at the restart")
		case gap.CleanStop == nil || *gap.CleanStop != clean || gap.LastAlive == nil:
			t.Errorf("monitor_gap: clean_stop %v, last_alive %v; want clean_stop %v", gap.CleanStop, gap.LastAlive, clean)
		case clean && gap.Alert != nil:
			t.Errorf("a clean stop alerted: %+v", gap.Alert)
		case !clean && (gap.Alert == nil || gap.Alert.Rule != "monitor-gap" || gap.Alert.Severity != readmeSeverity(t, "monitor-gap")):
			t.Errorf("an unclean stop's monitor_gap alert: %+v", gap.Alert)
		case gap.LastAlive.Before(alive) || gap.LastAlive.After(stopped) || gap.Time.Before(stopped):
			// Alive at the stop, or at the last pass's save.
			t.Errorf("monitor_gap: last alive %v, restarted %v; want last alive within [%v, %v] and a restart after it", gap.LastAlive, gap.Time, alive, stopped)
		}
		write()
		w.waitOutput(t, "the stranger's write", func(lines []string) bool {
			for _, ev := range parseStateEvents(t, lines) {
				if ev.Event == "map_update" && ev.on(protID) && ev.by(pid) {
					if ev.Alert == nil || ev.Alert.Rule != "foreign-write" {
						t.Errorf("the stranger's write after the restart: alert %+v, want foreign-write", ev.Alert)
					}
					return true
				}
			}
			return false
		})
		ownerWrites(t, w, 2)
		return w
	}

	// A first start with no state: this process, holding the map, owns it.
	w := startWatch(t, args...)
	if !strings.Contains(w.stderr.String(), "first start (no state file)") {
		t.Errorf("the start log does not say it is a first start:\n%s", w.stderr.String())
	}
	ownerWrites(t, w, 1)
	w.waitScanPasses(t, 1) // the owners saved
	stopping := time.Now()
	lines := w.stop(t, syscall.SIGTERM)
	stopped := time.Now()
	for _, ev := range parseStateEvents(t, lines) {
		if ev.Event == "holder_while_down" || ev.Event == "monitor_gap" {
			t.Errorf("a first start reported %s: %+v", ev.Event, ev)
		}
	}

	// Stopped cleanly; then killed. (No subtests: a watcher's files
	// live as long as the test that started it.)
	w = restart(t, stopping, stopped, true)
	// A pass saves the state before it says it is done; the second pass
	// counted from here surely saved after this point, whatever the
	// machine's speed (the VMs' passes take seconds).
	passing := time.Now()
	w.waitScanPasses(t, 2)
	w.kill()
	w = restart(t, passing, time.Now(), false)
	w.stop(t, syscall.SIGTERM)
}

// TestPolicyOwnersNoBootstrap: when the policy names the owners, a
// process holding a protected map at a first start owns nothing: it is
// reported, and its write alerts.
func TestPolicyOwnersNoBootstrap(t *testing.T) {
	testutil.RequireRoot(t)
	prot, protID := newSpecMap(t, &ebpf.MapSpec{Name: "trust_pol", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 8})
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(pol, []byte("version: 1\nowners:\n  - exe: /bin/true\nalerts: {rate: 100000, burst: 100000}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, "--format", "json", "--policy", pol, "--protect", "id:"+itoa(protID))
	if !strings.Contains(w.stderr.String(), "holders at start own nothing: the policy names the owners") {
		t.Errorf("the start log does not say the holders own nothing:\n%s", w.stderr.String())
	}
	if err := prot.Update(uint32(1), uint64(1), 0); err != nil {
		t.Fatal(err)
	}
	var holder, write *stateEvent
	w.waitOutput(t, "this process's update", func(lines []string) bool {
		for _, ev := range parseStateEvents(t, lines) {
			switch {
			case ev.Event == "holder_while_down" && ev.by(os.Getpid()) && ev.on(protID):
				holder = &ev
			case ev.Event == "map_update" && ev.by(os.Getpid()) && ev.on(protID):
				write = &ev
			}
		}
		return write != nil
	})
	if holder == nil || holder.Alert == nil || holder.Alert.Rule != "holder-while-down" || !strings.Contains(holder.Reason, "the policy names") {
		t.Errorf("the holder at start was not reported against the policy's owners: %+v", holder)
	}
	if write.Alert == nil || write.Alert.Rule != "foreign-write" {
		t.Errorf("the holder's write: alert %+v, want foreign-write", write.Alert)
	}
	w.stop(t, syscall.SIGTERM)
}
