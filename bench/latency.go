package main

// The latency tool's workload (issue 28): what bpfmon's kernel-side sensor
// costs a tool that writes maps from BPF programs on every system call,
// the shape of syscount -L or a syscall latency histogram. The tool is
// loaded here: on sys_enter it stores the thread's entry time in a hash
// (key: thread id), on sys_exit it deletes that element and updates a
// counter array: three map writes per system call, by two programs. A
// getpid loop runs alone, under the tool, under the tool and bpfmon (its
// default, --kernel-writes selective; and --kernel-writes all, one record
// per write), and under the tool and the floor: empty programs on the map
// functions the sensor hooks, fexit and (the kprobe build) kprobes.

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// latencyHooked are the functions the tool's writes pass through, which
// the floor's empty programs hook.
var latencyHooked = []string{"htab_map_update_elem", "htab_map_delete_elem", "array_map_update_elem"}

// latencyTool is the loaded tool.
type latencyTool struct {
	start, count *ebpf.Map
	links        []link.Link
}

// loadLatencyTool loads and attaches the tool on raw_syscalls sys_enter
// and sys_exit (raw tracepoints: every kernel here has them).
func loadLatencyTool() (*latencyTool, error) {
	t := &latencyTool{}
	var err error
	t.start, err = ebpf.NewMap(&ebpf.MapSpec{Name: "lat_start", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 10240})
	if err != nil {
		return nil, err
	}
	t.count, err = ebpf.NewMap(&ebpf.MapSpec{Name: "lat_count", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		t.close()
		return nil, err
	}
	enter := asm.Instructions{
		asm.FnGetCurrentPidTgid.Call(),
		asm.StoreMem(asm.RFP, -4, asm.R0, asm.Word), // tid
		asm.FnKtimeGetNs.Call(),
		asm.StoreMem(asm.RFP, -16, asm.R0, asm.DWord),
		asm.LoadMapPtr(asm.R1, t.start.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP), asm.Add.Imm(asm.R2, -4),
		asm.Mov.Reg(asm.R3, asm.RFP), asm.Add.Imm(asm.R3, -16),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnMapUpdateElem.Call(),
		asm.Mov.Imm(asm.R0, 0),
		asm.Return(),
	}
	exit := asm.Instructions{
		asm.FnGetCurrentPidTgid.Call(),
		asm.StoreMem(asm.RFP, -4, asm.R0, asm.Word),
		asm.LoadMapPtr(asm.R1, t.start.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP), asm.Add.Imm(asm.R2, -4),
		asm.FnMapDeleteElem.Call(),
		asm.StoreImm(asm.RFP, -8, 0, asm.Word),
		asm.FnKtimeGetNs.Call(),
		asm.StoreMem(asm.RFP, -16, asm.R0, asm.DWord),
		asm.LoadMapPtr(asm.R1, t.count.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP), asm.Add.Imm(asm.R2, -8),
		asm.Mov.Reg(asm.R3, asm.RFP), asm.Add.Imm(asm.R3, -16),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnMapUpdateElem.Call(),
		asm.Mov.Imm(asm.R0, 0),
		asm.Return(),
	}
	for _, p := range []struct {
		tp    string
		insns asm.Instructions
	}{{"sys_enter", enter}, {"sys_exit", exit}} {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "lat_" + p.tp[4:], Type: ebpf.RawTracepoint, License: "GPL", Instructions: p.insns})
		if err != nil {
			t.close()
			return nil, fmt.Errorf("loading the latency tool's %s program: %w", p.tp, err)
		}
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: p.tp, Program: prog})
		prog.Close()
		if err != nil {
			t.close()
			return nil, fmt.Errorf("attaching the latency tool to %s: %w", p.tp, err)
		}
		t.links = append(t.links, l)
	}
	return t, nil
}

func (t *latencyTool) close() {
	for _, l := range t.links {
		l.Close()
	}
	for _, m := range []*ebpf.Map{t.start, t.count} {
		if m != nil {
			m.Close()
		}
	}
}

// latencyFloor attaches empty programs of kind ("fexit" or "kprobe") to
// latencyHooked; the returned function detaches them.
func latencyFloor(kind string) (func(), error) {
	empty := asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}
	var links []link.Link
	done := func() {
		for _, l := range links {
			l.Close()
		}
	}
	for _, fn := range latencyHooked {
		var (
			p   *ebpf.Program
			l   link.Link
			err error
		)
		if kind == "fexit" {
			p, err = ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.Tracing, AttachType: ebpf.AttachTraceFExit, AttachTo: fn, License: "GPL", Instructions: empty})
			if err == nil {
				l, err = link.AttachTracing(link.TracingOptions{Program: p})
			}
		} else {
			p, err = ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.Kprobe, License: "GPL", Instructions: empty})
			if err == nil {
				l, err = link.Kprobe(fn, p, nil)
			}
		}
		if p != nil {
			p.Close()
		}
		if err != nil {
			done()
			return nil, fmt.Errorf("empty %s program on %s: %w", kind, fn, err)
		}
		links = append(links, l)
	}
	return done, nil
}

// latencyCase is one column of the latency table.
type latencyCase struct {
	name string
	tool bool
	args []string // bpfmon's flags; nil: no bpfmon
	// floor: empty programs of this kind on the hooked functions.
	floor string
	// base: bpfmon is the --baseline build (before/after in one run).
	base bool
}

var latencyCases = []latencyCase{
	{name: "loop alone"},
	{name: "with the tool", tool: true},
	{name: "tool + floor (empty fexit)", tool: true, floor: "fexit"},
	{name: "tool + bpfmon (default)", tool: true, args: []string{"--kernel-writes", "selective"}},
	{name: "tool + bpfmon, content scanner off", tool: true, args: []string{"--kernel-writes", "selective", "--scan-interval", "0"}},
	{name: "tool + bpfmon --kernel-writes all", tool: true, args: []string{"--kernel-writes", "all"}},
	{name: "tool + floor (empty kprobes)", tool: true, floor: "kprobe"},
	{name: "tool + bpfmon --kernel-hooks kprobe", tool: true, args: []string{"--kernel-hooks", "kprobe", "--kernel-writes", "selective"}},
	{name: "tool + bpfmon --kernel-hooks kprobe --kernel-writes all", tool: true, args: []string{"--kernel-hooks", "kprobe", "--kernel-writes", "all"}},
}

// latencyCasesFor adds, with a --baseline build, its default and kprobe
// cases next to this build's.
func latencyCasesFor(e *env) []latencyCase {
	if e.baseline == "" {
		return latencyCases
	}
	var cs []latencyCase
	for _, c := range latencyCases {
		cs = append(cs, c)
		switch c.name {
		case "tool + bpfmon (default)":
			cs = append(cs, latencyCase{name: "tool + bpfmon-base (default)", tool: true, args: c.args, base: true})
		case "tool + bpfmon --kernel-hooks kprobe":
			cs = append(cs, latencyCase{name: "tool + bpfmon-base --kernel-hooks kprobe", tool: true, args: c.args, base: true})
		}
	}
	return cs
}

// latencyCell is one case in one round.
type latencyCell struct {
	ns     float64 // getpid ns/call
	events int64   // bpfmon's output lines
	lost   int64   // of which lost events' counts
	cpuNS  float64 // bpfmon's CPU per getpid call
	err    error
}

type latencyResults struct {
	calls int
	cases []latencyCase
	cells [][]latencyCell // by round, by case
}

// measureLatency runs the rounds, cases interleaved.
func measureLatency(cfg config, e *env) latencyResults {
	res := latencyResults{calls: 200_000 / cfg.scale, cases: latencyCasesFor(e)}
	if cfg.latencySkip != "" {
		if skip, err := regexp.Compile(cfg.latencySkip); err == nil {
			res.cases = slices.DeleteFunc(res.cases, func(c latencyCase) bool { return skip.MatchString(c.name) })
		} else {
			progress("--latency-skip: %v (no case left out)", err)
		}
	}
	for r := 1; r <= cfg.rounds; r++ {
		row := make([]latencyCell, len(res.cases))
		for i, c := range res.cases {
			row[i] = latencyRound(e, c, res.calls)
			if row[i].err != nil {
				progress("latency round %d: %s: %v", r, c.name, row[i].err)
			} else {
				progress("latency round %d/%d  %-55s %.2f µs/call, %d events, %d lost", r, cfg.rounds, c.name, row[i].ns/1000, row[i].events, row[i].lost)
			}
		}
		res.cells = append(res.cells, row)
	}
	return res
}

func latencyRound(e *env, c latencyCase, calls int) latencyCell {
	var cell latencyCell
	if c.tool {
		t, err := loadLatencyTool()
		if err != nil {
			cell.err = err
			return cell
		}
		defer t.close()
	}
	if c.floor != "" {
		done, err := latencyFloor(c.floor)
		if err != nil {
			cell.err = err
			return cell
		}
		defer done()
	}
	var mon *bg
	out := filepath.Join(e.tmp, "latency.json")
	defer os.Remove(out)
	var cpu0 float64
	if c.args != nil {
		var err error
		// Default flags otherwise: the content scanner runs, and must
		// find the tool's counted writes explained.
		bin := e.bpfmon
		if c.base {
			bin = e.baseline
		}
		mon, err = startBpfmon(e, bin, out, c.args...)
		if err != nil {
			cell.err = err
			return cell
		}
		if d, err := processCPU(mon.cmd.Process.Pid); err == nil {
			cpu0 = float64(d)
		}
	}
	ns, err := getpidOnce(e, calls)
	cell.ns, cell.err = ns, err
	if mon != nil {
		if d, err := processCPU(mon.cmd.Process.Pid); err == nil {
			cell.cpuNS = (float64(d) - cpu0) / float64(calls)
		}
		if _, err := mon.stop(syscall.SIGINT, stopTimeout); err != nil && cell.err == nil {
			cell.err = err
		}
		cell.events, cell.lost = countEvents(out)
	}
	return cell
}

// countEvents counts bpfmon's output lines, and the counts of its lost
// events.
func countEvents(path string) (events, lost int64) {
	lostEv := []byte(`"event":"lost"`)
	scanLines(path, func(line []byte) {
		events++
		if bytes.Contains(line, lostEv) {
			var n int64
			if i := bytes.Index(line, []byte(`"count":`)); i >= 0 {
				fmt.Sscanf(string(line[i+len(`"count":`):]), "%d", &n)
			}
			lost += n
		}
	})
	return events, lost
}

// reportLatency prints the latency table: medians over the rounds.
func reportLatency(w io.Writer, res latencyResults) {
	fmt.Fprintf(w, "## Beside a latency tool (%s getpid calls, 3 map writes each by the tool's two programs; %d rounds, medians)\n\n", commas(int64(res.calls)), len(res.cells))
	fmt.Fprintln(w, "| case | µs per getpid | tax on the tool's cost | bpfmon events | per 100,000 writes | lost | bpfmon CPU per call |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	med := make([]float64, len(res.cases))
	for i := range res.cases {
		var v []float64
		for _, row := range res.cells {
			if row[i].err == nil {
				v = append(v, row[i].ns)
			}
		}
		if len(v) > 0 {
			med[i] = median(v)
		}
	}
	loop, tool := med[0], med[1]
	for i, c := range res.cases {
		if med[i] == 0 {
			reason := "n/a"
			for _, row := range res.cells {
				if row[i].err != nil {
					reason = "n/a: " + md(firstErrorLine(row[i].err.Error()))
				}
			}
			fmt.Fprintf(w, "| %s | %s | | | | | |\n", c.name, reason)
			continue
		}
		tax := ""
		if c.tool && i > 1 && tool > loop {
			tax = fmt.Sprintf("%.2fx", (med[i]-loop)/(tool-loop))
		}
		ev, per, lost, cpu := "", "", "", ""
		if c.args != nil {
			var evs, losts, cpus []float64
			for _, row := range res.cells {
				if row[i].err == nil {
					evs = append(evs, float64(row[i].events))
					losts = append(losts, float64(row[i].lost))
					cpus = append(cpus, row[i].cpuNS)
				}
			}
			e := median(evs)
			ev = commas(int64(e))
			per = fmt.Sprintf("%.1f", e*100000/float64(3*res.calls))
			lost = commas(int64(median(losts)))
			cpu = fmt.Sprintf("%.2f µs", median(cpus)/1000)
		}
		fmt.Fprintf(w, "| %s | %.2f | %s | %s | %s | %s | %s |\n", c.name, med[i]/1000, tax, ev, per, lost, cpu)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Tax: (case − loop alone) / (tool − loop alone); 1.00x is the tool's own cost. Writes: 3 per getpid call (the tool's hash update, hash delete and array update), and as many for every other system call on the machine meanwhile (bpfmon's own included). bpfmon runs with its default flags but those named (the content scanner on); its events include its own start-up reports.")
	fmt.Fprintln(w)
}
