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

	"github.com/bpfmon/bpfmon/internal/bpfiter"
	"github.com/bpfmon/bpfmon/internal/testprogs/hider"
	"github.com/bpfmon/bpfmon/internal/testprogs/iterwriter"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// TestHiddenProgramAndScan: the rootkit, loaded before bpfmon, hides its
// program too, so no listed program names its map (the prog_map_ids view
// is gone); the bpf_map and bpf_prog iterators still see both. bpfmon watch raises
// hidden-object for the map (seen by bpf_map_iter and its pin) and for
// the program (seen by bpf_prog_iter); bpfmon maps lists the map, dumps it
// through its pin, and warns of the program; and the content scanner
// reads the hidden map: a rewrite no bpf(2) write explains (an
// iterator's) is a map_changed.
func TestHiddenProgramAndScan(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTracefs(t)
	_, err := bpfiter.Shared()
	testutil.Need(t, testutil.Iterators, err, "this kernel refuses BPF iterators")
	dir, err := os.MkdirTemp(testutil.BPFFSPath(t), "hiddenprog")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	pin := filepath.Join(dir, "hidden")

	// Hidden before bpfmon starts: no sensor saw the map created, so only
	// the cross-view check brings it to the scanner.
	h, err := hider.Load()
	testutil.Need(t, testutil.ProbeWriteUser, err, "the hiding program calls bpf_probe_write_user")
	defer h.Close()
	if err := h.Map().Pin(pin); err != nil {
		t.Fatal(err)
	}
	// The program pinned too, and its fd held by this process: the two
	// views of programs besides the iterator and links.
	if err := h.Prog().Pin(filepath.Join(dir, "hide_prog")); err != nil {
		t.Fatal(err)
	}
	if err := h.HideProg(); err != nil {
		t.Fatal(err)
	}
	if err := h.Hide(); err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, "--format", "json", "--policy", unlimitedAlerts(t), "--scan-interval", "300ms")

	wait := func(what string, match func(hiddenEvent) bool) hiddenEvent {
		t.Helper()
		deadline := time.Now().Add(testutil.Timeout(30 * time.Second)) // a refresh every 10 s
		for {
			for _, l := range w.lines(t) {
				var ev hiddenEvent
				if json.Unmarshal([]byte(l), &ev) == nil && match(ev) {
					return ev
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s within 30 s:\n%s", what, strings.Join(w.lines(t), "\n"))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	hm := wait("hidden_object for the map", func(ev hiddenEvent) bool {
		return ev.Event == "hidden_object" && ev.Hidden != nil && ev.Hidden.Kind == "map" && ev.Hidden.ID == h.MapID
	})
	if !slices.Contains(hm.Hidden.SeenBy, "bpf_map_iter") || !slices.Contains(hm.Hidden.SeenBy, "bpffs") ||
		!slices.Contains(hm.Hidden.MissedBy, "prog_map_ids") {
		t.Errorf("hidden map: seen by %q, missed by %q; want bpf_map_iter and bpffs, not prog_map_ids (its program is hidden)", hm.Hidden.SeenBy, hm.Hidden.MissedBy)
	}
	hp := wait("hidden_object for the program", func(ev hiddenEvent) bool {
		return ev.Event == "hidden_object" && ev.Hidden != nil && ev.Hidden.Kind == "prog" && ev.Hidden.ID == h.ProgID
	})
	if hp.Prog == nil || hp.Prog.ID != h.ProgID || !slices.Contains(hp.Hidden.SeenBy, "bpf_prog_iter") ||
		!slices.Contains(hp.Hidden.SeenBy, "bpffs") || !slices.Contains(hp.Hidden.SeenBy, "fdinfo") ||
		!slices.Contains(hp.Hidden.MissedBy, "get_next_id") || hp.Alert == nil || hp.Alert.Rule != "hidden-object" ||
		hp.Alert.Severity != "critical" || !strings.Contains(hp.Alert.Reason, `"hide"`) {
		t.Errorf("hidden program: %+v (%+v, alert %+v)", hp, hp.Hidden, hp.Alert)
	}

	// bpfmon maps: the map, its contents read through its pin, and a
	// warning naming the program.
	cmd := exec.Command(bin, "maps", "--format", "json", "--dump")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bpfmon maps: %v: %s", err, stderr.String())
	}
	var dumped bool
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var m struct {
			ID       uint32
			Hidden   *struct{ Via string }
			Contents []struct{ Key string }
		}
		if json.Unmarshal([]byte(l), &m) == nil && m.ID == h.MapID {
			dumped = m.Hidden != nil && m.Hidden.Via == "pin "+pin && len(m.Contents) == 4
		}
	}
	if !dumped {
		t.Errorf("bpfmon maps --dump: map %d not listed hidden via its pin with its 4 elements:\n%s", h.MapID, out)
	}
	if !strings.Contains(stderr.String(), "HIDDEN program "+itoa(h.ProgID)+" hide (tracepoint)") {
		t.Errorf("bpfmon maps: no warning of hidden program %d:\n%s", h.ProgID, stderr.String())
	}

	// The scanner reads the hidden map: an iterator rewrites its values
	// (no bpf(2) write), and a pass finds the change.
	w.waitScanPasses(t, 2)
	if _, err := iterwriter.Rewrite(h.Map()); err != nil {
		t.Fatal(err)
	}
	changed := wait("map_changed of the hidden map", func(ev hiddenEvent) bool {
		return ev.Event == "map_changed" && ev.Map != nil && ev.Map.ID == h.MapID
	})
	t.Logf("the scanner's change: %+v", changed)
	for _, l := range w.lines(t) {
		if strings.Contains(l, `"map_changed"`) {
			t.Logf("%s", l)
		}
	}
}
