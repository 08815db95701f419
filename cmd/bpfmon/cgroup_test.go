package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/testutil"
	"github.com/bpfmon/bpfmon/internal/watch"
)

// memoryCgroup makes a cgroup with the memory controller whose limit is
// limit, removed at the end of the test: cgroup v2's memory.max, or where
// the host has the memory controller on v1 (a hybrid host), v1's
// memory.limit_in_bytes. It returns the cgroup.procs file to join it and
// a function reading its OOM kills and peak use.
func memoryCgroup(t *testing.T, limit int64) (procs string, stats func() (ooms int64, peak int64)) {
	t.Helper()
	name := fmt.Sprintf("bpfmon-memtest-%d", os.Getpid())
	counter := func(file, key string) int64 {
		b, _ := os.ReadFile(file)
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == key {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				return n
			}
		}
		return -1
	}
	value := func(file string) int64 {
		b, _ := os.ReadFile(file)
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return -1
		}
		return n
	}
	var dir, limitFile string
	if b, err := os.ReadFile("/sys/fs/cgroup/cgroup.subtree_control"); err == nil && strings.Contains(string(b), "memory") {
		dir, limitFile = filepath.Join("/sys/fs/cgroup", name), "memory.max"
		stats = func() (int64, int64) {
			return counter(filepath.Join(dir, "memory.events"), "oom_kill"), value(filepath.Join(dir, "memory.peak"))
		}
	} else if _, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes"); err == nil {
		dir, limitFile = filepath.Join("/sys/fs/cgroup/memory", name), "memory.limit_in_bytes"
		stats = func() (int64, int64) {
			return counter(filepath.Join(dir, "memory.oom_control"), "oom_kill"), value(filepath.Join(dir, "memory.max_usage_in_bytes"))
		}
	} else {
		t.Skip("no cgroup with the memory controller here (neither v2's memory.max nor v1's memory hierarchy)")
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 { // until its last process is gone
			if os.Remove(dir) == nil || os.IsNotExist(os.Remove(dir)) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("cgroup %s not removed", dir)
	})
	if err := os.WriteFile(filepath.Join(dir, limitFile), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "cgroup.procs"), stats
}

// TestWatchMemoryCgroup runs bpfmon in a cgroup whose memory limit is the
// formula's peak for its flags (docs/memory.md), beside a 4M-entry hash
// rewritten through bpf(2) and once by a BPF program no hook here
// reports: bpfmon is alive at the end, the cgroup never killed, and the
// huge map's unreported change is found by a coarse comparison. Before
// the bound, the scanner's two snapshots of per-element hashes of this
// map (~300 MiB) alone went past the limit.
func TestWatchMemoryCgroup(t *testing.T) {
	testutil.RequireRoot(t)
	if testing.Short() {
		// The test matrix's VMs do not run it (vmtest's hostOnly): they
		// have 2 GiB and emulated CPUs, where the 4M-entry map takes
		// ~400 MiB of kernel memory and minutes to scan.
		t.Skip("a 4M-entry map: -short")
	}
	const scanMemory, ring = 8 << 20, 4 << 20
	limit := watch.MemoryPeak(scanMemory, ring)
	procs, stats := memoryCgroup(t, limit)

	const n = 4 << 20
	huge, err := ebpf.NewMap(&ebpf.MapSpec{Name: "e2e_memhuge", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: n, Flags: unix.BPF_F_NO_PREALLOC})
	if err != nil {
		t.Fatal(err)
	}
	defer huge.Close()
	keys, vals := make([]uint32, 1<<16), make([]uint64, 1<<16)
	for base := 0; base < n; base += len(keys) {
		for i := range keys {
			keys[i], vals[i] = uint32(base+i), uint64(base+i)
		}
		if _, err := huge.BatchUpdate(keys, vals, nil); err != nil {
			t.Fatal(err)
		}
	}
	hugeInfo, _ := huge.Info()
	hugeID, _ := hugeInfo.ID()

	dir := t.TempDir()
	w := &watcher{out: filepath.Join(dir, "events")}
	ready := filepath.Join(dir, "ready")
	// The shell joins the cgroup, then becomes bpfmon (same pid).
	w.cmd = exec.Command("/bin/sh", "-c", `echo $$ > "$0" && exec "$@"`, procs, bin, "watch", "--output", w.out, "--ready-file", ready,
		"--log-level", "debug", "--scan-interval", "2s", "--scan-memory", "8M", "--ring-buffer", "4M",
		// Unlimited reads: other tests' huge maps on a shared host would
		// otherwise make each pass take minutes.
		"--scan-budget", "0")
	w.cmd.Stderr = &w.stderr
	w.withStatus(t, dir)
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.cmd.Process.Kill(); w.cmd.Wait() })
	exited := make(chan struct{})
	go func() { w.cmd.Process.Wait(); close(exited) }()
	deadline := time.Now().Add(testutil.Timeout(3 * time.Minute))
	for {
		if b, err := os.ReadFile(ready); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(w.cmd.Process.Pid) {
			break
		}
		select {
		case <-exited:
			t.Fatalf("bpfmon exited before it was ready (OOM kills: %d): %s", first(stats()), w.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("bpfmon watch not ready: %s", w.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for w.scanPasses() < 2 {
		select {
		case <-exited:
			t.Fatalf("bpfmon died in its first passes (OOM kills: %d): %s", first(stats()), w.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the scanner did not complete 2 passes: %s", w.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Rewrites through bpf(2), reported, 1,000 a second while the test
	// runs, and one write by a program.
	stopRewrite, rewriteDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(rewriteDone)
		for i := uint32(0); ; i++ {
			select {
			case <-stopRewrite:
				return
			case <-time.After(time.Millisecond):
			}
			huge.Update(i%60000, uint64(i)+1e9, 0)
		}
	}()
	defer func() { close(stopRewrite); <-rewriteDone }()
	time.Sleep(3 * time.Second)
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SocketFilter, License: "GPL", Instructions: asm.Instructions{
		asm.StoreImm(asm.R10, -4, int64(n-3), asm.Word),
		asm.Mov.Imm(asm.R5, 777),
		asm.StoreMem(asm.R10, -16, asm.R5, asm.DWord),
		asm.LoadMapPtr(asm.R1, huge.FD()),
		asm.Mov.Reg(asm.R2, asm.R10), asm.Add.Imm(asm.R2, -4),
		asm.Mov.Reg(asm.R3, asm.R10), asm.Add.Imm(asm.R3, -16),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnMapUpdateElem.Call(),
		asm.Mov.Imm(asm.R0, 0), asm.Return(),
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Run(&ebpf.RunOptions{Data: make([]byte, 64)}); err != nil {
		t.Fatal(err)
	}
	var coarse map[string]any
	for coarse == nil {
		for _, line := range w.lines(t) {
			var ev map[string]any
			if json.Unmarshal([]byte(line), &ev) != nil || ev["event"] != "map_changed" {
				continue
			}
			if m, _ := ev["map"].(map[string]any); m != nil && m["id"] == float64(hugeID) && ev["granularity"] != nil {
				coarse = ev
			}
		}
		select {
		case <-exited:
			t.Fatalf("bpfmon died (OOM kills: %d): %s", first(stats()), w.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no coarse map_changed for the huge map %d: %s", hugeID, w.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%v", coarse)
	w.waitScanPasses(t, 2)
	ooms, peak := stats()
	select {
	case <-exited:
		t.Fatalf("bpfmon is not alive at the end (OOM kills: %d)", ooms)
	default:
	}
	if ooms != 0 {
		t.Errorf("%d OOM kills in bpfmon's cgroup", ooms)
	}
	t.Logf("cgroup limit %d MiB (the formula's peak for --scan-memory 8M --ring-buffer 4M), peak use %d MiB", limit>>20, peak>>20)
	w.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-exited:
	case <-time.After(testutil.Timeout(30 * time.Second)):
		t.Fatal("bpfmon did not stop")
	}
	if !strings.Contains(w.stderr.String(), "compared coarsely") {
		t.Errorf("the summary does not say a map was compared coarsely: %s", w.stderr.String())
	}
}

func first(a, _ int64) int64 { return a }
