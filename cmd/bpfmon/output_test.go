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
		t.Skipf("cannot mount a small tmpfs to fill: %v", err)
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
	if lost == 0 || lost > notWritten || notWritten < 1000 {
		t.Errorf("lost events (source output) report %d, summary %d not written, of ~3,000 made on a full disk", lost, notWritten)
	}
	if n := strings.Count(s, "writing events failed"); n == 0 || n > 4 {
		t.Errorf("the failure logged %d times in ~2 s, want at least once and at most once a second:\n%s", n, s)
	}
	if !strings.Contains(s, "writing events works again") {
		t.Errorf("no log line when writing resumed:\n%s", s)
	}
}
