package main

// Memory bound (issue 29): bpfmon watch, default flags, beside maps a
// stranger with CAP_BPF can make: one 10M-entry hash rewritten at 1,000
// values a second, one 16M-entry hash, a 10M-update burst into a growing
// map, 100,000 maps, and all of them at once. In each, a stranger tampers
// with a protected small map (a bpf(2) update, then a write through mmap
// that only the content scanner can find), and a BPF program rewrites one
// value of the huge map, which no hook here reports: its detection delay,
// by the coarse comparison, is the cost of the bound.

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

type boundRow struct {
	what                string
	ready               time.Duration
	cpu, window         time.Duration
	hwmKiB              int64
	foreignWrite        bool
	scanAlert           time.Duration // tamper through mmap to its alert; -1: none
	hugeDelay           time.Duration // program write to the huge map to its map_changed; -1: none, 0: no huge map
	granularity, reason string
	passes              string
	err                 error
}

// fillHash makes a u32 -> u64 hash (max entries max, no preallocation)
// and writes keys 0..n-1 with BPF_MAP_UPDATE_BATCH.
func fillHash(name string, max, n int) (*ebpf.Map, error) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: name, Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: uint32(max), Flags: unix.BPF_F_NO_PREALLOC})
	if err != nil {
		return nil, err
	}
	if err := batchFill(m, 0, n, 1<<16); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

func batchFill(m *ebpf.Map, from, n, chunk int) error {
	keys, vals := make([]uint32, chunk), make([]uint64, chunk)
	for base := from; base < from+n; base += chunk {
		k := min(chunk, from+n-base)
		for i := range k {
			keys[i], vals[i] = uint32(base+i), uint64(base+i)
		}
		if _, err := m.BatchUpdate(keys[:k], vals[:k], nil); err != nil {
			return fmt.Errorf("filling %d..%d: %v", base, base+k, err)
		}
	}
	return nil
}

// progWrite is a socket filter that writes value into m's key, run once.
func progWrite(m *ebpf.Map, key uint32, value int32) error {
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "bound_write", Type: ebpf.SocketFilter, License: "GPL", Instructions: asm.Instructions{
		asm.StoreImm(asm.R10, -4, int64(key), asm.Word),
		asm.Mov.Imm(asm.R5, value),
		asm.StoreMem(asm.R10, -16, asm.R5, asm.DWord),
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, -4),
		asm.Mov.Reg(asm.R3, asm.R10),
		asm.Add.Imm(asm.R3, -16),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnMapUpdateElem.Call(),
		asm.Mov.Imm(asm.R0, 0),
		asm.Return(),
	}})
	if err != nil {
		return err
	}
	defer p.Close()
	_, err = p.Run(&ebpf.RunOptions{Data: make([]byte, 64)})
	return err
}

type boundCase struct {
	what    string
	huge    int  // entries of a hash held (0: none)
	rewrite bool // rewrite 1,000 of its values a second
	second  int  // entries of a second hash, the one rewritten (0: the first)
	burst   int  // updates into a growing map
	maps    int  // small maps held
	window  time.Duration
}

func measureBound(cfg config, e *env) []boundRow {
	s := cfg.scale
	all := boundCase{what: "all at once: 100,000 maps, a 16M-entry hash, a 10M-entry hash rewritten at 1,000/s, a 10M-update burst", huge: 16 << 20 / s, rewrite: true, second: 10_000_000 / s, burst: 10_000_000 / s, maps: 100_000 / s, window: time.Minute}
	cases := []boundCase{
		{what: "one 10M-entry hash rewritten at 1,000 values/s for a minute", huge: 10_000_000 / s, rewrite: true, window: time.Minute},
		{what: "one 16M-entry hash", huge: 16 << 20 / s, window: 40 * time.Second},
		{what: "a 10M-update burst into a growing map", burst: 10_000_000 / s, window: 40 * time.Second},
		{what: "100,000 maps held", maps: 100_000 / s, window: 40 * time.Second},
		all,
	}
	if i, err := strconv.Atoi(os.Getenv("BPFMON_BOUND_CASE")); err == nil && i >= 0 && i < len(cases) {
		cases = cases[i : i+1] // one case, by its row
	}
	var rows []boundRow
	for _, c := range cases {
		rows = append(rows, boundOne(e, c))
	}
	return rows
}

func boundOne(e *env, c boundCase) (row boundRow) {
	row = boundRow{what: c.what, scanAlert: -1}
	progress("bound: %s", c.what)
	prot, err := ebpf.NewMap(&ebpf.MapSpec{Name: "bound_prot", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 4, Flags: unix.BPF_F_MMAPABLE})
	if err != nil {
		row.err = err
		return row
	}
	defer prot.Close()
	if c.maps > 0 {
		release, err := holdMaps(c.maps)
		if err != nil {
			row.err = err
			return row
		}
		defer release()
	}
	var huge, rewritten *ebpf.Map
	if c.huge > 0 {
		if huge, err = fillHash("bound_huge", c.huge, c.huge); err != nil {
			row.err = err
			return row
		}
		defer huge.Close()
		rewritten = huge
	}
	if c.second > 0 {
		if rewritten, err = fillHash("bound_rewrite", c.second, c.second); err != nil {
			row.err = err
			return row
		}
		defer rewritten.Close()
	}
	var growing *ebpf.Map
	if c.burst > 0 {
		if growing, err = ebpf.NewMap(&ebpf.MapSpec{Name: "bound_grow", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: uint32(c.burst), Flags: unix.BPF_F_NO_PREALLOC}); err != nil {
			row.err = err
			return row
		}
		defer growing.Close()
	}
	out := filepath.Join(e.tmp, "bound.json")
	defer os.Remove(out)
	t0 := time.Now()
	mon, err := startBpfmon(e, e.bpfmon, out, "--protect", "name:bound_prot", "--log-level", "debug")
	if err != nil {
		os.WriteFile("/tmp/bpfmon-bound-stderr.txt", []byte(readFile(filepath.Join(e.tmp, "bpfmon.stderr"))), 0o644)
		row.err = err
		return row
	}
	defer mon.kill()
	row.ready = time.Since(t0)
	pid := mon.cmd.Process.Pid
	c0, _ := processCPU(pid)
	w0 := time.Now()
	work := &boundWork{stop: make(chan struct{})}
	work.start(c, rewritten, growing)
	fail := work.fail
	// The stranger is a copy of this binary: another executable than
	// the protected map's creator, so not one of its owners.
	self := filepath.Join(e.tmp, "stranger")
	if err := copyFile(self); err != nil {
		row.err = err
		return row
	}
	stranger := func(op string, id ebpf.MapID) error { return runStranger(self, op, id) }
	protInfo, _ := prot.Info()
	protID, _ := protInfo.ID()
	var hugeID ebpf.MapID
	time.Sleep(c.window / 3)
	if err := stranger("update", protID); err != nil {
		fail(err)
	}
	tamperAt := time.Now()
	if err := stranger("mmapwrite", protID); err != nil {
		fail(err)
	}
	var hugeAt time.Time
	if huge != nil {
		hi, _ := huge.Info()
		hugeID, _ = hi.ID()
		hugeAt = time.Now()
		if err := progWrite(huge, uint32(c.huge-7), 12345); err != nil {
			fail(fmt.Errorf("program write: %v", err))
		}
	}
	// Follow the output until the window ends: a change is detected
	// when its line is written (an event's time is when its read began).
	f := boundFollow{out: out, row: &row, protID: protID, hugeID: hugeID, huge: huge != nil, tamperAt: tamperAt, hugeAt: hugeAt,
		pid: pid, c0: c0, w0: w0, window: c.window}
	f.follow()
	close(work.stop)
	work.wg.Wait()
	row.hwmKiB = statusKiB(pid, "VmHWM:")
	if _, err := mon.stop(syscall.SIGINT, 5*time.Minute); err != nil {
		// Kept for a look: a crash's trace is longer than the table's cell.
		os.WriteFile(filepath.Join(os.TempDir(), "bpfmon-bound-stderr.txt"), []byte(mon.stderrText()), 0o644)
		row.err = err
		return row
	}
	if work.err != nil {
		row.err = work.err
		return row
	}
	stderr := mon.stderrText()
	if i := strings.LastIndex(stderr, "content scanner's last pass"); i >= 0 {
		row.passes = lastLine(stderr[i:])
	}
	progress("bound: peak RSS %d MiB, %.1f%% CPU, foreign-write %v, scanner alert after %v, huge map change after %v (%s)",
		row.hwmKiB>>10, pct(row.cpu, row.window), row.foreignWrite, row.scanAlert, row.hugeDelay, row.granularity)
	return row
}

// boundWork is a bound case's background writes; err is the first of
// them, or of the tampering, that failed.
type boundWork struct {
	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	err  error
}

func (b *boundWork) fail(err error) {
	b.mu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.mu.Unlock()
}

// start starts the case's writes until stop: a rewrite of rewritten every
// millisecond, and a burst of c.burst elements into growing.
func (b *boundWork) start(c boundCase, rewritten, growing *ebpf.Map) {
	if c.rewrite {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for i := uint32(0); ; i++ {
				select {
				case <-b.stop:
					return
				case <-tick.C:
				}
				if err := rewritten.Update(i%60000, uint64(i)+1e9, 0); err != nil {
					b.fail(fmt.Errorf("rewrite: %v", err))
					return
				}
			}
		}()
	}
	if c.burst > 0 {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			if err := batchFill(growing, 0, c.burst, 4096); err != nil {
				b.fail(fmt.Errorf("burst: %v", err))
			}
		}()
	}
}

// runStranger runs self as a stranger (strangerEnv) doing op to map id.
func runStranger(self, op string, id ebpf.MapID) error {
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), strangerEnv+"="+op+":"+strconv.Itoa(int(id)))
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("stranger %s: %v: %s", op, err, b)
	}
	return nil
}

// boundFollow follows one bound case's output until its window ends and
// the detections it waits for are in (a minute more at most), noting them
// in row.
type boundFollow struct {
	out              string
	row              *boundRow
	protID, hugeID   ebpf.MapID
	huge             bool // a huge map is written by a program
	tamperAt, hugeAt time.Time
	pid              int
	c0               time.Duration // bpfmon's CPU at w0
	w0               time.Time
	window           time.Duration
}

func (f *boundFollow) follow() {
	f.row.hugeDelay = 0
	if f.huge {
		f.row.hugeDelay = -1
	}
	var off int64
	for {
		file, err := os.Open(f.out)
		if err == nil {
			file.Seek(off, io.SeekStart)
			b, _ := io.ReadAll(file)
			file.Close()
			if i := strings.LastIndexByte(string(b), '\n'); i >= 0 {
				off += int64(i + 1)
				now := time.Now()
				for _, line := range strings.Split(string(b[:i]), "\n") {
					var ev struct {
						Event       string
						Alert       *struct{ Rule string }
						Map         *struct{ ID ebpf.MapID }
						Granularity string
						Reason      string
					}
					if json.Unmarshal([]byte(line), &ev) != nil || ev.Map == nil {
						continue
					}
					switch {
					case ev.Map.ID == f.protID && ev.Alert != nil && ev.Alert.Rule == "foreign-write":
						f.row.foreignWrite = true
					case ev.Map.ID == f.protID && ev.Alert != nil && ev.Alert.Rule == "unexplained-change" && f.row.scanAlert < 0:
						f.row.scanAlert = now.Sub(f.tamperAt)
					case f.huge && ev.Map.ID == f.hugeID && ev.Event == "map_changed" && f.row.hugeDelay < 0:
						f.row.hugeDelay = now.Sub(f.hugeAt)
						f.row.granularity, f.row.reason = ev.Granularity, ev.Reason
					}
				}
			}
		}
		if f.row.window == 0 && time.Now().After(f.w0.Add(f.window)) {
			// The window's CPU; the workload goes on while detections
			// are awaited, up to a minute more.
			c1, _ := processCPU(f.pid)
			f.row.window = time.Since(f.w0)
			f.row.cpu = c1 - f.c0
		}
		waiting := f.row.scanAlert < 0 || f.row.hugeDelay < 0
		if f.row.window != 0 && (!waiting || time.Now().After(f.w0.Add(f.window+time.Minute))) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func reportBound(w io.Writer, rows []boundRow) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	dur := func(d time.Duration) string {
		switch {
		case d < 0:
			return "**none**"
		case d == 0:
			return "-"
		}
		return d.Round(10 * time.Millisecond).String()
	}
	p("| host | start to ready | CPU | peak RSS | foreign-write alert | mmap tamper to unexplained-change | program write to the huge map to its map_changed | granularity |")
	p("| --- | --- | --- | ---: | --- | --- | --- | --- |")
	for _, r := range rows {
		if r.err != nil {
			p("| %s | n/a: %v | | | | | | |", r.what, r.err)
			continue
		}
		p("| %s | %s | %.1f s in %.0f s (%.1f%% of a core) | %.0f MiB | %v | %s | %s | %s |", r.what, r.ready.Round(time.Millisecond),
			r.cpu.Seconds(), r.window.Seconds(), pct(r.cpu, r.window), float64(r.hwmKiB)/1024, r.foreignWrite, dur(r.scanAlert), dur(r.hugeDelay), r.granularity)
	}
	for _, r := range rows {
		if r.reason != "" {
			p("\n%s: %s", r.what, r.reason)
		}
		if r.passes != "" {
			p("\n%s: %s", r.what, r.passes)
		}
	}
}

// copyFile copies this executable to path.
func copyFile(path string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	b, err := os.ReadFile(self)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o755)
}
