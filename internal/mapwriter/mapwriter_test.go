package mapwriter

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/bpfmon/bpfmon/internal/testutil"
)

// needRoot skips without root, and fails instead in CI (testutil).
func needRoot(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t)
}

var (
	userRE = regexp.MustCompile(`^mapwriter: map (\d+) "bpfmon_demo": user space wrote key=0 value=(\d+) \(bpf MAP_UPDATE_ELEM\)$`)
	progRE = regexp.MustCompile(`^mapwriter: map (\d+) "bpfmon_demo": program (\d+) "bpfmon_demo_wr" wrote key=1 value=(\d+) \(bpf_map_update_elem helper; invisible to syscall hooks\)$`)
)

// checkingWriter collects Run's output and, while Run still holds the map and
// program open, checks each printed claim against the kernel: the ids must
// name the demo objects and the printed values must be what the map holds.
type checkingWriter struct {
	t      *testing.T
	buf    bytes.Buffer
	lines  []string
	onLine func(n int) // called after each complete line, n = lines so far
}

func (w *checkingWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line) // incomplete; keep for the next Write
			break
		}
		line = strings.TrimSuffix(line, "\n")
		w.lines = append(w.lines, line)
		w.check(line)
		if w.onLine != nil {
			w.onLine(len(w.lines))
		}
	}
	return len(p), nil
}

func (w *checkingWriter) check(line string) {
	t := w.t
	lookup := func(mapID string, key uint32) uint64 {
		id, _ := strconv.ParseUint(mapID, 10, 32)
		m, err := ebpf.NewMapFromID(ebpf.MapID(id))
		if err != nil {
			t.Errorf("map id %s printed in %q is not a live map: %v", mapID, line, err)
			return 0
		}
		defer m.Close()
		if info, err := m.Info(); err != nil || info.Name != "bpfmon_demo" || info.Type != ebpf.Array || info.MaxEntries != 4 {
			t.Errorf("map %s: info %+v, %v; want array \"bpfmon_demo\" with 4 entries", mapID, info, err)
		}
		var v uint64
		if err := m.Lookup(key, &v); err != nil {
			t.Errorf("map %s key %d: %v", mapID, key, err)
		}
		return v
	}
	if sm := userRE.FindStringSubmatch(line); sm != nil {
		if got := strconv.FormatUint(lookup(sm[1], 0), 10); got != sm[2] {
			t.Errorf("printed %q but key 0 holds %s", line, got)
		}
	} else if sm := progRE.FindStringSubmatch(line); sm != nil {
		if got := strconv.FormatUint(lookup(sm[1], 1), 10); got != sm[3] {
			t.Errorf("printed %q but key 1 holds %s", line, got)
		}
		id, _ := strconv.ParseUint(sm[2], 10, 32)
		p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
		if err != nil {
			t.Errorf("program id %s printed in %q is not a live program: %v", sm[2], line, err)
			return
		}
		defer p.Close()
		if info, err := p.Info(); err != nil || info.Name != "bpfmon_demo_wr" || info.Type != ebpf.SocketFilter {
			t.Errorf("program %s: info %+v, %v; want socket filter \"bpfmon_demo_wr\"", sm[2], info, err)
		}
	}
}

func TestRunCount(t *testing.T) {
	needRoot(t)
	w := &checkingWriter{t: t}
	start := time.Now()
	if err := Run(context.Background(), Config{Interval: 10 * time.Millisecond, Count: 2, Out: w}); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if d := time.Since(start); d < 10*time.Millisecond {
		t.Errorf("2 rounds took %v, want at least one 10ms interval", d)
	}
	t.Logf("output:\n%s", strings.Join(w.lines, "\n"))
	if w.buf.Len() != 0 {
		t.Errorf("unterminated output %q", w.buf.String())
	}
	if len(w.lines) != 5 {
		t.Fatalf("got %d lines, want a header and 2 per round", len(w.lines))
	}

	header := regexp.MustCompile(`^mapwriter: created map (\d+) "bpfmon_demo" \(array, 4 entries\) and loaded program (\d+) "bpfmon_demo_wr" \(socket filter\); a round every 10ms$`)
	hm := header.FindStringSubmatch(w.lines[0])
	if hm == nil {
		t.Fatalf("header %q does not match %v", w.lines[0], header)
	}
	mapID, progID := hm[1], hm[2]
	for round := 1; round <= 2; round++ {
		u, p := w.lines[2*round-1], w.lines[2*round]
		if sm := userRE.FindStringSubmatch(u); sm == nil || sm[1] != mapID || sm[2] != fmt.Sprint(round) {
			t.Errorf("round %d user line %q: want map %s, value=%d", round, u, mapID, round)
		}
		if sm := progRE.FindStringSubmatch(p); sm == nil || sm[1] != mapID || sm[2] != progID || sm[3] != fmt.Sprint(round) {
			t.Errorf("round %d program line %q: want map %s, program %s, value=%d", round, p, mapID, progID, round)
		}
	}

	// Run closes its map and program; the kernel frees them after an RCU
	// grace period, so wait for the ids to disappear.
	id, _ := strconv.ParseUint(mapID, 10, 32)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		m, err := ebpf.NewMapFromID(ebpf.MapID(id))
		if err != nil {
			break
		}
		m.Close()
		if time.Now().After(deadline) {
			t.Errorf("map %s still exists 10s after Run returned", mapID)
			break
		}
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &checkingWriter{t: t}
	w.onLine = func(n int) {
		if n == 5 { // header + 2 rounds
			cancel()
		}
	}
	done := make(chan error, 1)
	go func() { done <- Run(ctx, Config{Interval: 5 * time.Millisecond, Out: w}) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel: %v, want nil", err)
		}
	case <-time.After(testutil.Timeout(10 * time.Second)):
		t.Fatal("Run did not return after its context was cancelled")
	}
	if len(w.lines) != 5 {
		t.Errorf("got %d lines after cancelling at 5:\n%s", len(w.lines), strings.Join(w.lines, "\n"))
	}
}

func TestRunCancelledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out bytes.Buffer
	if err := Run(ctx, Config{Out: &out}); err != nil || out.Len() != 0 {
		t.Errorf("Run with a done context: %v, output %q; want nil and nothing", err, out.String())
	}
}

func TestRunNegativeCount(t *testing.T) {
	if err := Run(context.Background(), Config{Count: -1}); err == nil {
		t.Error("Run with Count -1 succeeded")
	}
}
