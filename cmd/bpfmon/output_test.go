package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/testutil"
)

// TestWatchReaderGone: bpfmon watch | head -2. Once the pipe's reader is
// gone bpfmon stops within a second, whether or not it has anything more
// to write, says on stderr how many events it wrote and how many it could
// not, and exits 4.
func TestWatchReaderGone(t *testing.T) {
	for _, more := range []bool{false, true} {
		name := "idle"
		if more {
			name = "writing"
		}
		t.Run(name, func(t *testing.T) {
			testutil.RequireRoot(t)
			m, _ := newMap(t)
			dir := t.TempDir()
			ready := filepath.Join(dir, "ready")
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "watch", "--format", "json", "--ready-file", ready, "--scan-interval", "0", "--pid", strconv.Itoa(os.Getpid()))
			cmd.Stdout = w
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			w.Close()
			t.Cleanup(func() { cmd.Process.Kill() })
			waitReady(t, ready, cmd, &stderr)

			// Read two lines, like head -2, then go away.
			for i := 0; i < 5; i++ {
				m.Update(uint32(1), uint64(i), 0)
			}
			br := bufio.NewReader(r)
			for i := 0; i < 2; i++ {
				if _, err := br.ReadString('\n'); err != nil {
					t.Fatalf("reading line %d: %v", i+1, err)
				}
			}
			r.Close()
			gone := time.Now()
			if more {
				for i := 0; i < 100; i++ {
					m.Update(uint32(1), uint64(i), 0)
				}
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			var werr error
			select {
			case werr = <-done:
			case <-time.After(testutil.Timeout(5 * time.Second)):
				t.Fatalf("bpfmon still running 5 s after its reader went away; stderr: %s", stderr.String())
			}
			if took := time.Since(gone); took > testutil.Timeout(1500*time.Millisecond) {
				t.Errorf("stopped %v after the reader went away, want within a second", took)
			}
			var ee *exec.ExitError
			if !errors.As(werr, &ee) || ee.ExitCode() != 4 {
				t.Fatalf("exit: %v, want status 4; stderr: %s", werr, stderr.String())
			}
			m2 := regexp.MustCompile(`stopped: (\d+) events, \d+ lost, \d+ alerts(, (\d+) events not written)?`).FindStringSubmatch(stderr.String())
			if m2 == nil || !strings.Contains(stderr.String(), "closed by its reader") {
				t.Fatalf("no summary naming the closed output on stderr: %s", stderr.String())
			}
			written, _ := strconv.Atoi(m2[1])
			if written > 5 { // the five updates
				t.Errorf("summary says %d events written to a reader that took 2 lines and a pipe buffer", written)
			}
			if more && m2[3] == "" {
				t.Errorf("events made after the reader went away not counted as not written: %s", stderr.String())
			}
		})
	}
}

func waitReady(t *testing.T, ready string, cmd *exec.Cmd, stderr *strings.Builder) {
	t.Helper()
	deadline := time.Now().Add(testutil.Timeout(10 * time.Second))
	for {
		if b, err := os.ReadFile(ready); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(cmd.Process.Pid) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("bpfmon watch not ready after 10s: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWatchOutputFull: --output on a filesystem that fills up. Monitoring
// goes on; what could not be written is counted, logged at most once a
// second, and reported as a lost event with source output once there is
// room again; the file holds whole JSON lines only, as many as the summary
// says were written.
func TestWatchOutputFull(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=256k"); err != nil {
		t.Fatalf("mounting a small tmpfs to fill (root can): %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	m, _ := newMap(t)
	out := filepath.Join(dir, "events")
	w := startWatch(t, "--format", "json", "--output", out, "--scan-interval", "0", "--pid", strconv.Itoa(os.Getpid()))
	w.out = out // the later --output wins

	// Fill the filesystem.
	filler, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := filler.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	// Far more than fits: about 400 bytes of JSON each.
	for i := 0; i < 3000; i++ {
		m.Update(uint32(i%8), uint64(i), 0)
	}
	time.Sleep(testutil.Timeout(1500 * time.Millisecond))
	filler.Close()
	if err := os.Remove(filler.Name()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		m.Update(uint32(1), uint64(i), 0)
	}
	time.Sleep(testutil.Timeout(500 * time.Millisecond))
	lines := w.stop(t, syscall.SIGINT)

	var lost uint64
	for i, l := range lines {
		var ev struct {
			Event  string
			Source string
			Count  uint64
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("line %d is not a whole JSON object: %v: %q", i+1, err, l)
		}
		if ev.Event == "lost" && ev.Source == "output" {
			lost += ev.Count
		}
	}
	s := w.stderr.String()
	m2 := regexp.MustCompile(`stopped: (\d+) events, \d+ lost, \d+ alerts, (\d+) events not written`).FindStringSubmatch(s)
	if m2 == nil {
		t.Fatalf("no summary with events not written: %s", s)
	}
	written, _ := strconv.Atoi(m2[1])
	notWritten, _ := strconv.ParseUint(m2[2], 10, 64)
	if written != len(lines) {
		t.Errorf("summary: %d events written, the file holds %d lines", written, len(lines))
	}
	// Writing works again before the stop, so every event not written
	// is reported, by count: the lost events add up to the summary's.
	if lost != notWritten || notWritten < 1000 {
		t.Errorf("lost events (source output) report %d, summary %d not written, of ~3,000 made on a full disk: want equal", lost, notWritten)
	}
	if n := strings.Count(s, "writing events failed"); n == 0 || n > 4 {
		t.Errorf("the failure logged %d times in ~2 s, want at least once and at most once a second:\n%s", n, s)
	}
	if !strings.Contains(s, "writing events works again") {
		t.Errorf("no log line when writing resumed:\n%s", s)
	}
}

// updatesIn counts the map_update events on map id in every file of dir
// whose name starts with prefix; every line must be one JSON object.
func updatesIn(t *testing.T, dir, prefix string, id uint32) (total int, perFile map[string]int) {
	t.Helper()
	perFile = map[string]int{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			t.Errorf("%s ends inside a line", e.Name())
		}
		for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			if l == "" {
				continue
			}
			var ev alertEvent
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				t.Fatalf("%s: a line that is not one JSON object (%v): %.80q", e.Name(), err, l)
			}
			if ev.Event == "map_update" && ev.on(id) {
				total++
				perFile[e.Name()]++
			}
		}
	}
	return total, perFile
}

// TestWatchOutputRotation: about 4 MiB of events through --output
// rotated at 1 MiB: every event is in exactly one of the files, each line
// whole, no file past the limit.
func TestWatchOutputRotation(t *testing.T) {
	m, id := newSpecMap(t, &ebpf.MapSpec{Name: "rotate_map", Type: ebpf.Hash, KeySize: 4, ValueSize: 1024, MaxEntries: 64})
	w := startWatch(t, "--format", "json", "--map-id", itoa(id), "--scan-interval", "0", "--output-max-size", "1M", "--output-max-files", "0")
	const n = 1500
	value := make([]byte, 1024)
	for i := range n {
		value[0] = byte(i)
		if err := m.Update(uint32(i%64), value, 0); err != nil {
			t.Fatal(err)
		}
	}
	w.stop(t, syscall.SIGINT)
	dir := filepath.Dir(w.out)
	total, perFile := updatesIn(t, dir, "events", id)
	if total != n || len(perFile) < 3 {
		t.Errorf("%d updates in %d files %v, want %d in 3 or more", total, len(perFile), perFile, n)
	}
	for name := range perFile {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Size() > 1<<20 || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v; want at most 1 MiB, mode 0600", name, fi.Size(), err)
		}
	}
}

// TestWatchOutputReopen: logrotate's way. The output file is moved away
// and bpfmon gets SIGHUP: the events before are in the moved file, those
// after in a new file at the path, each once.
func TestWatchOutputReopen(t *testing.T) {
	m, id := newSpecMap(t, &ebpf.MapSpec{Name: "reopen_map", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 64})
	w := startWatch(t, "--format", "json", "--map-id", itoa(id), "--scan-interval", "0")
	for i := range 10 {
		m.Update(uint32(i), uint64(i), 0)
	}
	w.waitOutput(t, "the first 10 updates", func(lines []string) bool { return len(lines) >= 10 })
	if err := os.Rename(w.out, w.out+".1"); err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(testutil.Timeout(10 * time.Second))
	for !strings.Contains(w.stderr.String(), "output reopened") {
		if time.Now().After(deadline) {
			t.Fatalf("no reopen after SIGHUP: %s", w.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := 10; i < 20; i++ {
		m.Update(uint32(i), uint64(i), 0)
	}
	w.stop(t, syscall.SIGINT)
	total, perFile := updatesIn(t, filepath.Dir(w.out), "events", id)
	if total != 20 || perFile["events.1"] != 10 || perFile["events"] != 10 {
		t.Errorf("updates per file %v, want 10 in the moved file and 10 in the new one", perFile)
	}
}
