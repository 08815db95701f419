package main

// Scale: what bpfmon costs on a host with very many maps, one very large
// map, and a burst far longer than its ring buffer. Targets are bounds,
// not speeds: start-up finishes, memory stays within what the flags set,
// nothing is lost without being counted.

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/scanner"
)

type scaleRow struct {
	what    string
	setup   string // what the host held
	ready   time.Duration
	cpu     time.Duration // bpfmon's CPU over window
	window  time.Duration
	hwmKiB  int64 // bpfmon's peak RSS (VmHWM)
	extra   string
	err     error
	maxRSSK int64 // of a child command (bpfmon maps), from rusage
}

func measureScale(cfg config, e *env) []scaleRow {
	return append(scaleManyMaps(cfg, e), scaleHugeHash(cfg, e), scaleBurst(cfg, e))
}

// holdMaps creates n small hash maps and keeps them alive by pinning
// them in a bpffs directory (no fd each: the fd limit may not be raised).
func holdMaps(n int) (func(), error) {
	// A bpffs of its own: unmounting it releases every map at once.
	dir, err := os.MkdirTemp("", "bpfmon-bench-bpffs-")
	if err != nil {
		return nil, err
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, ""); err != nil {
		os.Remove(dir)
		return nil, fmt.Errorf("mounting a bpffs for %d pinned maps: %v", n, err)
	}
	release := func() { unix.Unmount(dir, unix.MNT_DETACH); os.Remove(dir) }
	for i := range n {
		m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "bench_scale", Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 1})
		if err == nil {
			err = m.Pin(filepath.Join(dir, strconv.Itoa(i)))
			m.Close()
		}
		if err != nil {
			release()
			return nil, fmt.Errorf("creating map %d of %d: %v", i+1, n, err)
		}
	}
	return release, nil
}

// watchWindow starts bpfmon, times ready, runs during (the workload, or
// a wait), and records bpfmon's CPU over it and its peak RSS, then stops
// bpfmon and returns its stderr.
func watchWindow(e *env, row *scaleRow, out string, during func() error) (stderr string) {
	t0 := time.Now()
	mon, err := startBpfmon(e, e.bpfmon, out)
	if err != nil {
		row.err = err
		return ""
	}
	defer mon.kill()
	row.ready = time.Since(t0)
	pid := mon.cmd.Process.Pid
	c0, err0 := processCPU(pid)
	w0 := time.Now()
	if err := during(); err != nil {
		row.err = err
		return mon.stderrText()
	}
	c1, err1 := processCPU(pid)
	row.window = time.Since(w0)
	row.hwmKiB = statusKiB(pid, "VmHWM:")
	if _, err := mon.stop(syscall.SIGINT, 5*time.Minute); err != nil {
		row.err = err
		return mon.stderrText()
	}
	if err0 == nil && err1 == nil {
		row.cpu = c1 - c0
	}
	return mon.stderrText()
}

func sleep(d time.Duration) func() error {
	return func() error { time.Sleep(d); return nil }
}

// scaleManyMaps: bpfmon watch, then bpfmon maps, on one set of maps.
func scaleManyMaps(cfg config, e *env) []scaleRow {
	n := 100_000 / cfg.scale
	setup := fmt.Sprintf("%s maps held", commas(int64(n)))
	watch := scaleRow{what: "bpfmon watch", setup: setup}
	list := scaleRow{what: "bpfmon maps --format json", setup: setup}
	progress("scale: %d maps, bpfmon watch for 4 scan intervals", n)
	release, err := holdMaps(n)
	if err != nil {
		watch.err, list.err = err, err
		return []scaleRow{watch, list}
	}
	defer release()
	out := filepath.Join(e.tmp, "scale.json")
	defer os.Remove(out)
	watchWindow(e, &watch, out, sleep(4*scanner.DefaultInterval))
	watch.extra = "CPU over the window includes the scanner's first full pass"
	progress("scale: ready in %v, %.1f%% CPU, peak RSS %d MiB", watch.ready.Round(time.Millisecond), pct(watch.cpu, watch.window), watch.hwmKiB>>10)

	cmd := exec.Command(e.bpfmon, "maps", "--format", "json")
	var lines countWriter
	cmd.Stdout = &lines
	t0 := time.Now()
	err = cmd.Run()
	list.ready = time.Since(t0)
	if err != nil {
		list.err = fmt.Errorf("bpfmon maps: %v", err)
		return []scaleRow{watch, list}
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		list.maxRSSK = ru.Maxrss
		list.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	list.extra = fmt.Sprintf("%s maps listed; time: the whole command", commas(lines.n))
	progress("scale: bpfmon maps listed %d maps in %v, peak RSS %d MiB", lines.n, list.ready.Round(time.Millisecond), list.maxRSSK>>10)
	return []scaleRow{watch, list}
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) {
	w.n += int64(strings.Count(string(p), "\n"))
	return len(p), nil
}

func scaleHugeHash(cfg config, e *env) scaleRow {
	n := 16 << 20 / cfg.scale
	row := scaleRow{what: "bpfmon watch, default --scan-memory 256M", setup: fmt.Sprintf("one hash of %s entries (4-byte keys, 8-byte values)", commas(int64(n)))}
	progress("scale: filling a %d-entry hash", n)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "bench_huge", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: uint32(n), Flags: unix.BPF_F_NO_PREALLOC})
	if err != nil {
		row.err = err
		return row
	}
	defer m.Close()
	const chunk = 1 << 16
	keys, vals := make([]uint32, chunk), make([]uint64, chunk)
	for base := 0; base < n; base += chunk {
		k := min(chunk, n-base)
		for i := range k {
			keys[i], vals[i] = uint32(base+i), uint64(base+i)
		}
		if _, err := m.BatchUpdate(keys[:k], vals[:k], nil); err != nil {
			row.err = fmt.Errorf("filling the hash: %v", err)
			return row
		}
	}
	out := filepath.Join(e.tmp, "scale.json")
	defer os.Remove(out)
	window := 6 * scanner.DefaultInterval
	progress("scale: bpfmon watch for %v over it", window)
	watchWindow(e, &row, out, sleep(window))
	row.extra = "larger than --scan-memory: compared by hashes"
	progress("scale: ready in %v, %.1f%% CPU, peak RSS %d MiB", row.ready.Round(time.Millisecond), pct(row.cpu, row.window), row.hwmKiB>>10)
	return row
}

func scaleBurst(cfg config, e *env) scaleRow {
	n := 10_000_000 / cfg.scale
	row := scaleRow{what: "bpfmon watch, output to /dev/null", setup: fmt.Sprintf("a burst of %s 8-byte hash updates from one process", commas(int64(n)))}
	progress("scale: a %d-update burst", n)
	stderr := watchWindow(e, &row, os.DevNull, func() error {
		cmd := exec.Command(e.writer, "hash", "8", strconv.Itoa(n))
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("writer: %v", err)
		}
		time.Sleep(time.Second) // the consumer drains
		return nil
	})
	if m := reSummary.FindStringSubmatch(stderr); m != nil {
		row.extra = fmt.Sprintf("%s events, %s lost (counted)", m[1], m[2])
	}
	progress("scale: burst: peak RSS %d MiB, %s", row.hwmKiB>>10, row.extra)
	return row
}

func pct(cpu, window time.Duration) float64 {
	if window <= 0 {
		return 0
	}
	return float64(cpu) / float64(window) * 100
}

// statusKiB reads a kB field of /proc/PID/status.
func statusKiB(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				v, _ := strconv.ParseInt(f[0], 10, 64)
				return v
			}
		}
	}
	return 0
}

func reportScale(w io.Writer, rows []scaleRow) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("| host | what | start to ready | CPU | peak RSS | notes |")
	p("| --- | --- | --- | --- | --- | --- |")
	for _, r := range rows {
		if r.err != nil {
			p("| %s | %s | n/a: %v | | | |", r.setup, r.what, r.err)
			continue
		}
		rss := r.hwmKiB
		if rss == 0 {
			rss = r.maxRSSK
		}
		cpu := fmt.Sprintf("%.2f s", r.cpu.Seconds())
		if r.window > 0 {
			cpu = fmt.Sprintf("%.2f s in %.0f s (%.1f%% of a core)", r.cpu.Seconds(), r.window.Seconds(), pct(r.cpu, r.window))
		}
		p("| %s | %s | %s | %s | %.0f MiB | %s |", r.setup, r.what, r.ready.Round(time.Millisecond), cpu, float64(rss)/1024, r.extra)
	}
}
