package main

// The builds of the syscall sensor, measured side by side (issue 14): for
// each build this kernel loads, a burst of 8-byte array updates without and
// with bpfmon, what bpfmon's programs cost per call as the kernel times
// them (bpf_stats), what bpfmon's own process spends per event, and a
// getpid loop, beside the floor that the hook alone costs.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// sensorBuilds are bpfmon's --hook values, fastest first.
var sensorBuilds = []string{"fentry", "tp_btf", "raw_tracepoint"}

// buildCell is one build's figures in one round.
type buildCell struct {
	ns       float64 // writer ns/update under bpfmon, bpf_stats off
	statsNS  float64 // writer ns/update with bpf_stats on
	progNS   float64 // bpfmon's programs, run time per update (bpf_stats)
	progRuns float64 // their runs per update
	// perProg is each program's run time and runs per update, by name.
	perProg  map[string][2]float64
	cpuNS    float64 // bpfmon's CPU per event, burst to exit
	lost     int64
	reported int64
	getpid   float64 // ns per getpid under bpfmon
}

type buildResults struct {
	updates int
	loads   map[string]error // nil: this kernel loads the build
	none    []float64        // writer ns/update, no monitor, per round
	getpid  []float64        // getpid ns/call, no monitor, per round
	floor   []float64        // getpid ns/call under empty programs on the same hooks
	floorOf string           // which hooks the floor's empty programs use
	floorNA string
	cells   map[string][]buildCell
}

// measureBuilds runs the rounds: no monitor, then each build that loads.
func measureBuilds(cfg config, e *env) buildResults {
	res := buildResults{updates: 1_000_000 / cfg.scale, loads: map[string]error{}, cells: map[string][]buildCell{}}
	if cfg.inside {
		res.updates = 100_000 / cfg.scale // software emulation: 10x slower
	}
	for _, h := range sensorBuilds {
		mon, err := startBpfmon(e, e.bpfmon, os.DevNull, "--hook", h)
		if err == nil {
			_, err = mon.stop(syscall.SIGINT, stopTimeout)
		}
		res.loads[h] = err
		if err != nil {
			progress("builds: %s: n/a: %v", h, err)
		}
	}
	w := workload{"array", 8, res.updates}
	gp := 2_000_000 / cfg.scale
	if cfg.inside {
		gp /= 10
	}
	for r := 1; r <= cfg.rounds; r++ {
		o, err := runWriter(e, w)
		if err != nil {
			progress("builds round %d: writer: %v", r, err)
			continue
		}
		res.none = append(res.none, o.ns)
		if ns, err := getpidOnce(e, gp); err == nil {
			res.getpid = append(res.getpid, ns)
		}
		if ns, of, err := getpidFloor(e, gp); err == nil {
			res.floor, res.floorOf = append(res.floor, ns), of
		} else {
			res.floorNA = err.Error()
		}
		for _, h := range sensorBuilds {
			if res.loads[h] != nil {
				continue
			}
			c, err := buildRound(e, h, w, gp)
			if err != nil {
				progress("builds round %d: %s: %v", r, h, err)
				continue
			}
			res.cells[h] = append(res.cells[h], c)
			progress("builds round %d/%d  %-14s writer %.0f ns/update (none %.0f), programs %.0f ns/call (%.2f runs), bpfmon CPU %.0f ns/event, getpid %.1f ns (none %.1f)",
				r, cfg.rounds, h, c.ns, o.ns, c.progNS, c.progRuns, c.cpuNS, c.getpid, res.getpid[len(res.getpid)-1])
		}
	}
	return res
}

// buildRound measures build h: a burst without bpf_stats, a burst with
// them, and a getpid loop.
func buildRound(e *env, h string, w workload, gp int) (buildCell, error) {
	var c buildCell
	// Burst, stats off: the writer's slowdown and bpfmon's CPU per event.
	out := filepath.Join(e.tmp, "builds.json")
	defer os.Remove(out)
	mon, err := startBpfmon(e, e.bpfmon, out, "--hook", h)
	if err != nil {
		return c, err
	}
	pid := mon.cmd.Process.Pid
	cpu0, err := processCPU(pid)
	if err != nil {
		mon.kill()
		return c, err
	}
	o, err := runWriter(e, w)
	if err != nil {
		mon.kill()
		return c, err
	}
	if _, err := mon.stop(syscall.SIGINT, stopTimeout); err != nil {
		return c, err
	}
	c.ns = o.ns
	ru, ok := mon.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if ok {
		total := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		c.cpuNS = float64(total-cpu0) / float64(o.count)
	}
	if m := reSummary.FindStringSubmatch(mon.stderrText()); m != nil {
		c.lost, _ = strconv.ParseInt(m[2], 10, 64)
	}
	c.reported, _ = countBpfmon(out, o.mapID)

	// Burst, stats on: what the programs cost per call, as the kernel
	// times them.
	mon, err = startBpfmon(e, e.bpfmon, os.DevNull, "--hook", h)
	if err != nil {
		return c, err
	}
	progs, err := heldPrograms(mon.cmd.Process.Pid)
	if err != nil {
		mon.kill()
		return c, err
	}
	stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		mon.kill()
		return c, fmt.Errorf("enabling bpf_stats: %w", err)
	}
	before := programTotals(progs)
	o, err = runWriter(e, w)
	after := programTotals(progs)
	stats.Close()
	for _, p := range progs {
		p.Close()
	}
	if err != nil {
		mon.kill()
		return c, err
	}
	if _, err := mon.stop(syscall.SIGINT, stopTimeout); err != nil {
		return c, err
	}
	c.statsNS = o.ns
	c.progNS = float64(after.runtime-before.runtime) / float64(o.count)
	c.progRuns = float64(after.runs-before.runs) / float64(o.count)
	c.perProg = map[string][2]float64{}
	for name, a := range after.byName {
		b := before.byName[name]
		if a.runs > b.runs {
			c.perProg[name] = [2]float64{float64(a.runtime-b.runtime) / float64(o.count), float64(a.runs-b.runs) / float64(o.count)}
		}
	}

	// Other syscalls.
	mon, err = startBpfmon(e, e.bpfmon, os.DevNull, "--hook", h)
	if err != nil {
		return c, err
	}
	c.getpid, err = getpidOnce(e, gp)
	if _, serr := mon.stop(syscall.SIGINT, stopTimeout); err == nil {
		err = serr
	}
	return c, err
}

type progTotals struct {
	runtime time.Duration
	runs    uint64
	byName  map[string]progTotals
}

func programTotals(progs []*ebpf.Program) progTotals {
	t := progTotals{byName: map[string]progTotals{}}
	for _, p := range progs {
		st, err := p.Stats()
		if err != nil {
			continue
		}
		t.runtime += st.Runtime
		t.runs += st.RunCount
		name := "?"
		if info, err := p.Info(); err == nil {
			name = info.Name
		}
		n := t.byName[name]
		n.runtime += st.Runtime
		n.runs += st.RunCount
		t.byName[name] = n
	}
	return t
}

// heldPrograms opens the BPF programs process pid holds fds to: bpfmon's.
func heldPrograms(pid int) ([]*ebpf.Program, error) {
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	seen := map[uint64]bool{}
	var progs []*ebpf.Program
	for _, ent := range ents {
		b, err := os.ReadFile(filepath.Join(dir, ent.Name()))
		if err != nil {
			continue
		}
		for _, line := range bytes.Split(b, []byte("\n")) {
			v, ok := bytes.CutPrefix(line, []byte("prog_id:"))
			if !ok {
				continue
			}
			id, err := strconv.ParseUint(strings.TrimSpace(string(v)), 10, 32)
			if err != nil || seen[id] {
				continue
			}
			seen[id] = true
			if p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id)); err == nil {
				progs = append(progs, p)
			}
		}
	}
	if len(progs) == 0 {
		return nil, fmt.Errorf("bpfmon (pid %d) holds no program", pid)
	}
	return progs, nil
}

// getpidOnce runs the getpid loop once.
func getpidOnce(e *env, n int) (float64, error) {
	cmd := exec.Command(e.getpid, strconv.Itoa(n))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := runCmd(cmd, runTimeout); err != nil {
		return 0, fmt.Errorf("getpid: %v: %s", err, lastLine(errb.String()))
	}
	s, ok := strings.CutPrefix(strings.TrimSpace(out.String()), "ns_per_op=")
	if !ok {
		return 0, fmt.Errorf("getpid: unexpected output %q", out.String())
	}
	return strconv.ParseFloat(s, 64)
}

// getpidFloor runs the getpid loop under two empty programs on
// raw_syscalls sys_enter and sys_exit (tp_btf where the kernel allows it):
// what any monitor on those hooks costs other syscalls before it does
// anything.
func getpidFloor(e *env, n int) (float64, string, error) {
	empty := asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}
	var links []link.Link
	defer func() {
		for _, l := range links {
			l.Close()
		}
	}()
	of := "tp_btf"
	for _, tp := range []string{"sys_enter", "sys_exit"} {
		p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp, AttachTo: tp,
			License: "GPL", Instructions: empty})
		var l link.Link
		if err == nil {
			l, err = link.AttachTracing(link.TracingOptions{Program: p})
		}
		if err != nil {
			of = "raw_tracepoint"
			p, err = ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.RawTracepoint, License: "GPL", Instructions: empty})
			if err != nil {
				return 0, "", fmt.Errorf("empty program: %w", err)
			}
			l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp, Program: p})
		}
		p.Close() // the link keeps it
		if err != nil {
			return 0, "", fmt.Errorf("attaching an empty program to %s: %w", tp, err)
		}
		links = append(links, l)
	}
	ns, err := getpidOnce(e, n)
	return ns, of, err
}

// uname is the running kernel's release.
func uname() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}
