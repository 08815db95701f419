package main

import (
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// info describes the machine and the software measured.
type info struct {
	cpus      string
	model     string
	memory    string
	kernel    string
	date      string
	goVersion string
	bpftrace  string
	bpfmon    string
	loadStart string
	loadEnd   string
	elapsed   time.Duration
}

func machineInfo(e *env) info {
	in := info{
		cpus:      strconv.Itoa(runtime.NumCPU()),
		model:     "?",
		memory:    "?",
		date:      time.Now().UTC().Format(time.RFC3339),
		loadStart: loadavg(),
		goVersion: strings.TrimPrefix(cmdOutput("go", "version"), "go version "),
		kernel:    readTrim("/proc/sys/kernel/osrelease"),
	}
	if out := cmdOutput("nproc"); out != "?" {
		in.cpus = out
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				in.model = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if f := strings.Fields(rest); len(f) > 0 {
					kib, _ := strconv.ParseFloat(f[0], 64)
					in.memory = fmt.Sprintf("%.1f GiB", kib/(1<<20))
				}
			}
		}
	}
	switch {
	case e.bpftraceErr != "" && !strings.Contains(e.bpftraceErr, "skipped"):
		in.bpftrace = "not available"
	default:
		in.bpftrace = cmdOutput("bpftrace", "--version")
	}
	in.bpfmon = "commit " + cmdOutput("git", "rev-parse", "--short", "HEAD")
	if out, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(out))) > 0 {
		in.bpfmon += " + uncommitted changes in " + strings.Join(changedDirs(string(out)), ", ")
	}
	return in
}

// changedDirs lists the top-level directories of `git status --porcelain`.
func changedDirs(status string) []string {
	var dirs []string
	for _, line := range strings.Split(strings.TrimRight(status, "\n"), "\n") {
		if len(line) < 4 {
			continue
		}
		p := strings.TrimSpace(line[3:])
		if i := strings.LastIndexByte(p, '/'); i >= 0 {
			p = p[:i] + "/"
		}
		found := false
		for _, d := range dirs {
			found = found || d == p
		}
		if !found {
			dirs = append(dirs, p)
		}
	}
	return dirs
}

func cmdOutput(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

func loadavg() string {
	f := strings.Fields(readTrim("/proc/loadavg"))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// ---------------------------------------------------------------------------

// agg summarises the rounds of one workload under one monitor.
type agg struct {
	ok        int
	ns        float64
	minRep    int64 // worst round
	made      int64
	maxLost   int64
	failed    int64 // failed updates, all rounds
	drain     float64
	firstErr  error
	allRounds int
	each      []string // ns/update of each round, in order
}

func aggregate(cells []cell) agg {
	a := agg{allRounds: len(cells), minRep: -1}
	var ns, drain []float64
	for _, c := range cells {
		if c.err != nil {
			a.each = append(a.each, "error")
			if a.firstErr == nil {
				a.firstErr = c.err
			}
			continue
		}
		a.ok++
		a.each = append(a.each, nsText(c.ns))
		ns = append(ns, c.ns)
		drain = append(drain, c.drain.Seconds())
		if a.minRep < 0 || c.reported < a.minRep || (c.reported == a.minRep && c.made > a.made) {
			a.minRep, a.made = c.reported, c.made
		}
		a.maxLost = max(a.maxLost, c.lost)
		a.failed += c.failed
	}
	a.ns, a.drain = median(ns), median(drain)
	return a
}

type target struct {
	what, result, goal, status string
}

func status(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// benchReport is what report writes: the run's results, and the
// aggregates the sections share.
type benchReport struct {
	p         func(format string, args ...any)
	cfg       config
	e         *env
	in        info
	workloads []workload
	writes    writeResults
	gp        getpidResults
	pipe      pipelineResult
	idles     []idleResult
	scan      scanResult
	idle      idleResult
	monitors  []string
	aggs      []map[string]agg
}

func report(w io.Writer, cfg config, e *env, in info, workloads []workload, writes writeResults, gp getpidResults, pipe pipelineResult, idles []idleResult, scan scanResult) {
	r := &benchReport{p: func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) },
		cfg: cfg, e: e, in: in, workloads: workloads, writes: writes, gp: gp, pipe: pipe, idles: idles, scan: scan,
		idle: idles[0], monitors: e.monitors()}
	r.aggs = make([]map[string]agg, len(workloads))
	for i := range workloads {
		r.aggs[i] = map[string]agg{}
		for _, m := range r.monitors {
			r.aggs[i][m] = aggregate(writes[i][m])
		}
	}
	r.header()
	r.targets()
	r.mapWrites()
	r.otherSyscalls()
	r.pipeline()
	r.idleCPU()
	r.scanner()
}

// header writes the title and the table of the machine and the run.
func (r *benchReport) header() {
	p := r.p
	cfg := r.cfg
	e := r.e
	in := r.in
	p("# bpfmon benchmarks")
	p("")
	p("Measured by `make bench` in one run, on one machine under one load.")
	if cfg.quick {
		p("")
		p("**Quick run (`--quick`): 10x fewer iterations and one round; not the conditions of the targets.**")
	}
	p("")
	p("| | |")
	p("| --- | --- |")
	p("| machine | %s CPUs, %s, %s RAM |", in.cpus, md(in.model), in.memory)
	p("| kernel | %s |", md(in.kernel))
	p("| date | %s |", in.date)
	p("| Go | %s |", md(in.goVersion))
	p("| bpftrace | %s |", md(in.bpftrace))
	p("| bpfmon | %s |", md(in.bpfmon))
	if e.hook != "" {
		p("| bpfmon programs | %s (from its start message) |", md(e.hook))
	}
	if e.baseline != "" {
		p("| baseline (bpfmon-base) | %s (%s) |", md(e.baseline), md(strings.TrimSpace(cmdOutput(e.baseline, "version"))))
	}
	p("| load average (1, 5, 15 min) | %s at start, %s at end |", in.loadStart, in.loadEnd)
	p("| rounds | %d (map writes), %d (getpid); medians reported |", cfg.rounds, cfg.getpidRounds)
	p("| run time | %.0f s |", in.elapsed.Seconds())
	p("")
}

// targets writes the targets, met or missed.
func (r *benchReport) targets() {
	p := r.p
	workloads := r.workloads
	gp := r.gp
	pipe := r.pipe
	scan := r.scan
	idle := r.idle
	aggs := r.aggs
	// Targets.
	var ts []target
	for i := 0; i < 2 && i < len(workloads); i++ {
		wl := workloads[i]
		none, mon := aggs[i][monNone], aggs[i][monBpfmon]
		t := target{what: fmt.Sprintf("writer slowdown under bpfmon, %s burst of %s", wl, commas(int64(wl.count))), goal: "≤ 1.3x"}
		if none.ok == 0 || mon.ok == 0 {
			t.result, t.status = "n/a: "+errText(none, mon), "MISSED"
		} else {
			r := mon.ns / none.ns
			t.result = fmt.Sprintf("%.2fx (%s vs %s ns/update)", r, nsText(mon.ns), nsText(none.ns))
			t.status = status(r <= 1.3)
		}
		ts = append(ts, t)
	}
	for i := 0; i < 2 && i < len(workloads); i++ {
		wl := workloads[i]
		mon := aggs[i][monBpfmon]
		t := target{what: fmt.Sprintf("events lost by bpfmon, %s burst", wl), goal: fmt.Sprintf("0 lost of %s", commas(int64(wl.count)))}
		if mon.ok == 0 {
			t.result, t.status = "n/a: "+errText(mon), "MISSED"
		} else {
			t.result = fmt.Sprintf("%s lost, %s of %s reported (worst of %s)", commas(mon.maxLost), commas(mon.minRep), commas(mon.made), plural(mon.ok, "round"))
			t.status = status(mon.maxLost == 0 && mon.minRep == mon.made && mon.ok == mon.allRounds)
		}
		ts = append(ts, t)
	}
	{
		t := target{what: fmt.Sprintf("other syscalls slowed by bpfmon (getpid loop of %s)", commas(int64(gp.count))), goal: "≤ 10%"}
		if len(gp.ratios) == 0 {
			t.result, t.status = "n/a: "+errString(gp.err), "MISSED"
		} else {
			r := median(gp.ratios)
			t.result = fmt.Sprintf("%+.1f%% (%.1f vs %.1f ns/call)", (r-1)*100, median(gp.bpfmon), median(gp.none))
			t.status = status(r <= 1.10)
		}
		ts = append(ts, t)
	}
	{
		t := target{what: "JSON pipeline alone (decode + encode, one core)", goal: "≥ 1,000,000 events/s"}
		if pipe.na != "" {
			t.result, t.status = pipe.na, "n/a"
		} else {
			v := median(pipe.eventsSec)
			t.result = fmt.Sprintf("%s events/s", commas(int64(v)))
			t.status = status(v >= 1e6)
		}
		ts = append(ts, t)
	}
	if len(pipe.btfEventsSec) > 0 {
		v := median(pipe.btfEventsSec)
		ts = append(ts, target{what: "JSON pipeline, map with BTF (key and value rendered by type)", goal: "(reported)", status: "-",
			result: fmt.Sprintf("%s events/s, %.3fx the ns/event without BTF", commas(int64(v)), median(pipe.btfRatios))})
	}
	{
		t := target{what: fmt.Sprintf("bpfmon's CPU while idle, %s maps on the host", commas(int64(idle.maps))), goal: "< 1% of a core"}
		if idle.err != nil {
			t.result, t.status = "n/a: "+idle.err.Error(), "MISSED"
		} else {
			t.result = fmt.Sprintf("%.2f%% of a core", idle.percent)
			t.status = status(idle.percent < 1)
		}
		ts = append(ts, t)
	}
	{
		t := target{what: "content scanner: one pass over a 1,000,000-entry hash map", goal: "(reported)", status: "-"}
		if scan.na != "" {
			t.result = scan.na
		} else {
			u, c := scan.cases["unchanged"], scan.cases["one-key-changed"]
			t.result = fmt.Sprintf("unchanged %.2f s (%.2f s CPU), one key changed %.2f s (%.2f s CPU), %.0f MiB heap",
				u["ms/pass"]/1000, u["cpu-ms/pass"]/1000, c["ms/pass"]/1000, c["cpu-ms/pass"]/1000, max(u["heap-MiB"], c["heap-MiB"]))
		}
		ts = append(ts, t)
	}

	p("## Targets")
	p("")
	p("| measurement | result | target | met? |")
	p("| --- | --- | --- | --- |")
	for _, t := range ts {
		p("| %s | %s | %s | %s |", md(t.what), md(t.result), md(t.goal), t.status)
	}
	p("")
}

// mapWrites writes the map writes: each workload under each monitor.
func (r *benchReport) mapWrites() {
	p := r.p
	e := r.e
	workloads := r.workloads
	writes := r.writes
	monitors := r.monitors
	aggs := r.aggs
	// Map writes.
	p("## Map writes")
	p("")
	p("A C program (bench/c/writer.c) creates a map (u32 key, 1,024 entries) and makes a tight loop of raw `BPF_MAP_UPDATE_ELEM` calls (key i %% 1024, value changing with i); ns/update is its own CLOCK_MONOTONIC time over the loop. For each workload, each round runs it with no monitor, under bpfmon%s, and under bpftrace, in that order. Reported and lost are the worst round.", baselineNote(e))
	p("")
	p("| workload | updates | monitor | ns/update (median) | each round | vs none | reported / made | lost | writer exit to monitor exit |")
	p("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	for i, wl := range workloads {
		none := aggs[i][monNone]
		for j, m := range monitors {
			a := aggs[i][m]
			first, count := "", ""
			if j == 0 {
				first, count = wl.String(), commas(int64(wl.count))
			}
			switch {
			case m == monBpftrace && len(writes[i][m]) == 0:
				p("| %s | %s | %s | %s | | | | | |", first, count, m, md(e.bpftraceErr))
				continue
			case a.ok == 0:
				p("| %s | %s | %s | error: %s | | | | | |", first, count, m, md(errText(a)))
				continue
			}
			ns := nsText(a.ns)
			if a.ok < a.allRounds {
				ns += fmt.Sprintf(" (%d of %d rounds failed: %s)", a.allRounds-a.ok, a.allRounds, md(a.firstErr.Error()))
			}
			if a.failed > 0 {
				ns += fmt.Sprintf(" (%s updates failed)", commas(a.failed))
			}
			each := strings.Join(a.each, ", ")
			if m == monNone {
				p("| %s | %s | %s | %s | %s | 1.00x | | | |", first, count, m, ns, each)
				continue
			}
			ratio := ""
			if none.ok > 0 {
				ratio = fmt.Sprintf("%.2fx", a.ns/none.ns)
			}
			p("| %s | %s | %s | %s | %s | %s | %s / %s | %s | %.1f s |", first, count, m, ns, each, ratio, commas(a.minRep), commas(a.made), commas(a.maxLost), a.drain)
		}
	}
	p("")
	p("- bpfmon: `bpfmon watch --format json --output FILE --ready-file F`, ready before the writer starts, stopped with SIGINT as soon as the writer exits (it then drains what is buffered, and exits). Reported: its `map_update` lines on the writer's map id. Lost: from its exit summary (all processes).")
	p("- bpftrace: `bpftrace -e '%s'`, stdout to a file, ready when it prints `Attaching`, stopped with SIGINT once its output has not grown for 0.3 s after the writer exits (bpftrace drops what is still in its perf buffers when stopped; the 0.3 s are in its exit time). Reported: its lines with the writer's pid, less the writer's %d setup calls (create, get info). Lost: its `Lost N events` lines.", bpftraceProgram, writerSetupCalls)
	for _, w := range workloads {
		if w.vsize == 4096 {
			p("- The 4,096-byte workloads make 10x fewer updates: bpfmon's JSON line carries the value in hex, about 8.5 KiB per event, so %s updates already write about %s MB per run.", commas(int64(w.count)), commas(int64(w.count)*8700/1_000_000))
			break
		}
	}
	p("- The `hash with BTF` workload is the hash one with a map that has BTF (u32 keys, values a `struct cfg { u32 pid; bool enabled; }`, loaded with BPF_BTF_LOAD, one more setup call): bpfmon renders each key and value by type (`key_btf`, `value_btf`), the baseline build, if older, does not.")
	p("")
}

// otherSyscalls writes the getpid loop's slowdown.
func (r *benchReport) otherSyscalls() {
	p := r.p
	cfg := r.cfg
	gp := r.gp
	// Other syscalls.
	p("## Other syscalls")
	p("")
	p("A C loop of %s `syscall(SYS_getpid)` calls (bench/c/getpid.c), without and with `bpfmon watch --output /dev/null` running (started and stopped in each round), %s, order alternating.", commas(int64(gp.count)), plural(cfg.getpidRounds, "round"))
	p("")
	if len(gp.ratios) == 0 {
		p("n/a: %s", errString(gp.err))
	} else {
		p("| | ns/call (median) |")
		p("| --- | ---: |")
		p("| no monitor | %.1f |", median(gp.none))
		p("| bpfmon watch | %.1f |", median(gp.bpfmon))
		if len(gp.base) > 0 {
			p("| bpfmon watch, baseline | %.1f |", median(gp.base))
		}
		p("| median of per-round ratios | %.3f (%+.1f%%) |", median(gp.ratios), (median(gp.ratios)-1)*100)
		if len(gp.baseRatios) > 0 {
			p("| median of per-round ratios, baseline | %.3f (%+.1f%%) |", median(gp.baseRatios), (median(gp.baseRatios)-1)*100)
		}
		if gp.err != nil {
			p("")
			p("Stopped early: %s", md(gp.err.Error()))
		}
	}
	p("")
}

// pipeline writes the JSON pipeline alone.
func (r *benchReport) pipeline() {
	p := r.p
	pipe := r.pipe
	// Pipeline.
	p("## JSON pipeline alone")
	p("")
	p("`%s`: decoding one call's entry and exit records and writing its event as a JSON line to io.Discard, in one goroutine; for a map with BTF, also looking its types up in the cache and rendering the key (u32) and value (struct of a u32 and a bool) beside the hex.", pipe.cmdline)
	p("")
	if pipe.na != "" {
		p("%s", pipe.na)
	} else {
		p("| map | events/s (median of %d) | ns/event | allocs/event | ns/event over without BTF (median of per-round ratios) |", len(pipe.eventsSec))
		p("| --- | ---: | ---: | ---: | ---: |")
		p("| without BTF | %s | %.0f | %s | |", commas(int64(median(pipe.eventsSec))), median(pipe.nsOp), pipe.allocs)
		if len(pipe.btfNsOp) > 0 {
			p("| with BTF: key and value also rendered by type (`key_btf`, `value_btf`) | %s | %.0f | %s | %.3fx |", commas(int64(median(pipe.btfEventsSec))), median(pipe.btfNsOp), pipe.allocs, median(pipe.btfRatios))
		}
	}
	p("")
}

// idleCPU writes bpfmon's CPU while idle.
func (r *benchReport) idleCPU() {
	p := r.p
	idles := r.idles
	idle := r.idle
	// Idle.
	p("## Idle CPU")
	p("")
	if idle.err != nil {
		p("n/a: %s", md(idle.err.Error()))
	} else {
		p("With %s extra maps (hash, 4-byte key and value, one element each) held by the harness, `bpfmon watch --format json --output FILE` was measured for %.1f s, from one scan interval after it was ready (its first pass, which reads every map, is start-up) and with no load from the harness: one full pass and the quiet ones between.", commas(int64(idle.maps)), idle.window.Seconds())
		p("")
		p("| bpfmon | CPU, all threads (process CPU clock) | utime+stime (/proc/PID/stat, clock-tick resolution) | RSS | events reported (other processes) |")
		p("| --- | ---: | ---: | ---: | ---: |")
		for i, idle := range idles {
			which := monBpfmon
			if i > 0 {
				which = monBaseline
			}
			if idle.err != nil {
				p("| %s | n/a: %s | | | |", which, md(idle.err.Error()))
				continue
			}
			exact := fmt.Sprintf("%.2f%% of a core", idle.percent)
			if idle.clockError != "" {
				exact = "n/a: " + md(idle.clockError)
			}
			p("| %s | %s | %.1f%% of a core | %.1f MiB | %s |", which, exact, idle.statPct, float64(idle.rssKiB)/1024, commas(idle.events))
		}
		p("")
		p("The kernel programs' cost on other processes' syscalls is charged to those processes: see Other syscalls.")
	}
	p("")
}

// scanner writes the content scanner's pass over a 1,000,000-entry map.
func (r *benchReport) scanner() {
	p := r.p
	scan := r.scan
	idle := r.idle
	p("## Content scanner")
	p("")
	p("`%s`: one full pass (every map on the host, dominated by a 1,000,000-entry hash map, u32 keys and u64 values) after a baseline pass, unlimited budget. Idle CPU above includes the scanner's passes over the %s maps.", scan.cmdline, commas(int64(idle.maps)))
	p("")
	if scan.na != "" {
		p("%s", scan.na)
	} else {
		p("| case | wall time per pass | CPU per pass | elements | snapshot memory (estimate) | Go heap in use |")
		p("| --- | ---: | ---: | ---: | ---: | ---: |")
		for _, name := range []string{"unchanged", "one-key-changed"} {
			m := scan.cases[name]
			p("| %s | %.2f s | %.2f s | %s | %.0f MiB | %.0f MiB |", name, m["ms/pass"]/1000, m["cpu-ms/pass"]/1000,
				commas(int64(m["elements"])), m["snapshot-MiB"], m["heap-MiB"])
		}
	}
}

func nsText(ns float64) string {
	if ns >= 1000 {
		return commas(int64(ns + 0.5))
	}
	return strconv.FormatFloat(ns, 'f', 1, 64)
}

func errText(as ...agg) string {
	for _, a := range as {
		if a.firstErr != nil {
			return a.firstErr.Error()
		}
	}
	return "no successful round"
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func errString(err error) string {
	if err == nil {
		return "no result"
	}
	return err.Error()
}

// baselineNote names the baseline among the monitors, when there is one.
func baselineNote(e *env) string {
	if e.baseline == "" {
		return ""
	}
	return ", under the baseline build (bpfmon-base)"
}

// reportBuilds renders the sensor builds' section.
func reportBuilds(w io.Writer, cfg config, b buildResults) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("Uname: %s. A burst of %s 8-byte array updates (bench/c/writer.c) and a getpid loop, with no monitor and under `bpfmon watch --hook BUILD` for each build this kernel loads, %s interleaved. Programs: the run time of bpfmon's programs per update, as the kernel times them (bpf_stats, in a second burst with them on), over the bare update. CPU: bpfmon's own CPU from ready to exit (burst, drain, stop) per event. Medians of the rounds.", md(uname()), commas(int64(b.updates)), plural(cfg.rounds, "round"))
	p("")
	none, gp := median(b.none), median(b.getpid)
	p("| build | writer ns/update | vs none | programs ns/call | over the bare update | bpfmon CPU ns/event | over the bare update | getpid ns/call | vs none | lost |")
	p("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	p("| none | %s | 1.00x | | | | | %.1f | 1.000 | |", nsText(none), gp)
	if len(b.floor) > 0 {
		fl := median(b.floor)
		p("| empty %s programs on sys_enter/sys_exit (the floor of any raw_syscalls monitor) | | | | | | | %.1f | %.3f | |", b.floorOf, fl, fl/gp)
	} else if b.floorNA != "" {
		p("| empty programs on sys_enter/sys_exit | n/a: %s | | | | | | | | |", md(b.floorNA))
	}
	for _, h := range sensorBuilds {
		if err := b.loads[h]; err != nil {
			p("| %s | n/a: %s | | | | | | | | |", h, md(err.Error()))
			continue
		}
		cells := b.cells[h]
		if len(cells) == 0 {
			p("| %s | n/a: every round failed | | | | | | | | |", h)
			continue
		}
		var ns, prog, cpu, g []float64
		var lost int64
		for _, c := range cells {
			ns, prog, cpu, g = append(ns, c.ns), append(prog, c.progNS), append(cpu, c.cpuNS), append(g, c.getpid)
			lost = max(lost, c.lost)
		}
		p("| %s | %s | %.2fx | %.0f | %.2fx | %.0f | %.2fx | %.1f | %.3f | %s |", h, nsText(median(ns)), median(ns)/none,
			median(prog), median(prog)/none, median(cpu), median(cpu)/none, median(g), median(g)/gp, commas(lost))
	}
	// Which programs the run time is spent in: the syscall sensor's, or
	// the kernel-side sensor's, which also runs on these updates.
	p("")
	p("Programs per update, by name (medians; runs per update in brackets):")
	p("")
	for _, h := range sensorBuilds {
		cells := b.cells[h]
		if b.loads[h] != nil || len(cells) == 0 {
			continue
		}
		names := map[string]bool{}
		for _, c := range cells {
			for n := range c.perProg {
				names[n] = true
			}
		}
		var parts []string
		for _, n := range slices.Sorted(maps.Keys(names)) {
			var ns, runs []float64
			for _, c := range cells {
				ns, runs = append(ns, c.perProg[n][0]), append(runs, c.perProg[n][1])
			}
			parts = append(parts, fmt.Sprintf("%s %.0f ns (%.2f)", md(n), median(ns), median(runs)))
		}
		p("- %s: %s", h, strings.Join(parts, ", "))
	}
}
