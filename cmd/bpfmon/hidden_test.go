package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bpfmon/bpfmon/internal/testprogs/hider"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// hiddenEvent is what TestHiddenMap reads of the events.
type hiddenEvent struct {
	Event   string
	Source  string
	Alert   *struct{ Rule, Severity, Reason string }
	Map     *struct{ ID uint32 }
	Process *struct{ PID int }
	Prog    *struct {
		ID    uint32
		Risky []string
	}
	Hidden *struct {
		Kind     string
		ID       uint32
		SeenBy   []string `json:"seen_by"`
		MissedBy []string `json:"missed_by"`
	}
}

// TestHiddenMap runs a rootkit's hiding program on the bpf syscall while
// bpfmon watches: its prog_load says it calls bpf_probe_write_user and
// raises rewriting-program; the map it hides from GET_NEXT_ID and
// GET_FD_BY_ID raises hidden-object naming the views; bpfmon maps lists
// it; a stranger's write to it is reported, and is foreign to its
// protection by pin.
func TestHiddenMap(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTracefs(t)
	dir, err := os.MkdirTemp(testutil.BPFFSPath(t), "hidden")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	pin := filepath.Join(dir, "hidden")
	w := startWatch(t, "--format", "json", "--policy", unlimitedAlerts(t), "--protect", "pin:"+pin, "--scan-interval", "0")

	h, err := hider.Load()
	testutil.Need(t, testutil.ProbeWriteUser, err, "the hiding program calls bpf_probe_write_user")
	defer h.Close()
	if err := h.Map().Pin(pin); err != nil {
		t.Fatal(err)
	}
	if err := h.Hide(); err != nil {
		t.Fatal(err)
	}

	find := func(match func(hiddenEvent) bool) (hiddenEvent, bool) {
		for _, l := range w.lines(t) {
			var ev hiddenEvent
			if json.Unmarshal([]byte(l), &ev) == nil && match(ev) {
				return ev, true
			}
		}
		return hiddenEvent{}, false
	}
	wait := func(what string, match func(hiddenEvent) bool) hiddenEvent {
		t.Helper()
		deadline := time.Now().Add(testutil.Timeout(30 * time.Second)) // a refresh every 10 s
		for {
			if ev, ok := find(match); ok {
				return ev
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s within 30 s:\n%s", what, strings.Join(w.lines(t), "\n"))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	load := wait("prog_load of the hiding program", func(ev hiddenEvent) bool {
		return ev.Event == "prog_load" && ev.Prog != nil && ev.Prog.ID == h.ProgID
	})
	if !slices.Contains(load.Prog.Risky, "bpf_probe_write_user") {
		t.Errorf("prog_load of program %d: risky %q, want bpf_probe_write_user", h.ProgID, load.Prog.Risky)
	}
	if load.Alert == nil || load.Alert.Rule != "rewriting-program" || load.Alert.Severity != "high" {
		t.Errorf("prog_load of program %d: alert %+v, want rewriting-program, high", h.ProgID, load.Alert)
	}

	hidden := wait("hidden_object for the hidden map", func(ev hiddenEvent) bool {
		return ev.Event == "hidden_object" && ev.Hidden != nil && ev.Hidden.ID == h.MapID
	})
	if hidden.Map == nil || hidden.Map.ID != h.MapID || hidden.Source != "inventory" || hidden.Hidden.Kind != "map" {
		t.Errorf("hidden_object: %+v", hidden)
	}
	for _, v := range []string{"bpffs", "prog_map_ids", "sensor"} {
		if !slices.Contains(hidden.Hidden.SeenBy, v) {
			t.Errorf("hidden_object seen_by %q, want %s", hidden.Hidden.SeenBy, v)
		}
	}
	if !slices.Contains(hidden.Hidden.MissedBy, "get_next_id") || !slices.Contains(hidden.Hidden.MissedBy, "get_fd_by_id") {
		t.Errorf("hidden_object missed_by %q, want get_next_id and get_fd_by_id", hidden.Hidden.MissedBy)
	}
	if a := hidden.Alert; a == nil || a.Rule != "hidden-object" || a.Severity != "critical" ||
		!strings.Contains(a.Reason, `"hider_ids"`) || !strings.Contains(a.Reason, "bpffs") {
		t.Errorf("hidden_object alert %+v, want hidden-object, critical, naming hider_ids and its views", a)
	}

	// bpfmon maps lists it.
	out, err := exec.Command(bin, "maps", "--format", "json").Output()
	if err != nil {
		t.Fatalf("bpfmon maps: %v", err)
	}
	listed := false
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var m struct {
			ID     uint32
			Name   string
			Hidden *struct {
				SeenBy []string `json:"seen_by"`
			}
		}
		if json.Unmarshal([]byte(l), &m) == nil && m.ID == h.MapID {
			listed = true
			if m.Hidden == nil || m.Name != "hider_ids" || !slices.Contains(m.Hidden.SeenBy, "bpffs") {
				t.Errorf("bpfmon maps: %s", l)
			}
		}
	}
	if !listed {
		t.Errorf("bpfmon maps does not list map %d:\n%s", h.MapID, out)
	}
	table, err := exec.Command(bin, "maps").Output()
	if err != nil || !strings.Contains(string(table), itoa(h.MapID)+"(hidden)") || !strings.Contains(string(table), "HIDDEN from bpf(2)'s listing") {
		t.Errorf("bpfmon maps (table): %v\n%s", err, table)
	}

	// A stranger (another executable) writes it through an fd it
	// inherited.
	cmd := exec.Command(testutil.ForeignExecutable(t, "stranger.test"), "-test.run=^$")
	cmd.Env = append(os.Environ(), actEnv+"=updatefd:3:1")
	cmd.ExtraFiles = []*os.File{testutil.DupFile(t, h.Map().FD(), "hidden")}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("stranger: %v: %s", err, out)
	}
	pid := cmd.Process.Pid
	write := wait("the stranger's write", func(ev hiddenEvent) bool {
		return ev.Event == "map_update" && ev.Map != nil && ev.Map.ID == h.MapID && ev.Process != nil && ev.Process.PID == pid
	})
	if write.Alert == nil || write.Alert.Rule != "foreign-write" {
		t.Errorf("the stranger's write to the hidden, protected map: alert %+v, want foreign-write", write.Alert)
	}
}
