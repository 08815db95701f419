// Command bench measures what bpfmon costs and whether it misses anything
// (issue 4), in one run on one machine under one load, and prints the results
// as markdown on stdout (progress goes to stderr). Run it as root from the
// module: `make bench`, or `go run ./bench --quick` for a smoke run.
//
// It builds bpfmon and two C load generators (bench/c/writer.c, bench/c/getpid.c)
// into a temporary directory, then measures:
//
//   - map writes: a tight loop of BPF_MAP_UPDATE_ELEM with no monitor, under
//     `bpfmon watch` and under a bpftrace one-liner, rounds interleaved;
//   - other syscalls: a getpid loop with and without `bpfmon watch`;
//   - the JSON pipeline alone: BenchmarkPipelineJSON;
//   - bpfmon's own CPU while idle, with 10,000 extra maps on the host (--idle-maps), over one cycle of the scanner's full passes.
//
// Every child runs in its own process group, dies with the harness
// (PR_SET_PDEATHSIG) and is killed on errors and on SIGINT/SIGTERM.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"

	"github.com/bpfmon/bpfmon/internal/scanner"
	"github.com/bpfmon/bpfmon/internal/tracefs"
	"golang.org/x/sys/unix"
)

// The bpftrace comparison: one line per bpf(2) call with the caller's pid and
// the first u32 of its attr (the map fd for map commands).
const bpftraceProgram = `tracepoint:syscalls:sys_enter_bpf { printf("%d %d\n", pid, *(uint32 *)uptr(args->uattr)); }`

const (
	monNone     = "none"
	monBpfmon   = "bpfmon"
	monBaseline = "bpfmon-base" // --baseline: another build, for before/after
	monBpftrace = "bpftrace"
)

// monitors lists the monitors measured, in the order each round runs them.
func (e *env) monitors() []string {
	if e.baseline == "" {
		return []string{monNone, monBpfmon, monBpftrace}
	}
	return []string{monNone, monBpfmon, monBaseline, monBpftrace}
}

// Timeouts for one step. Generous: a monitor can slow the writer a lot.
const (
	buildTimeout = 10 * time.Minute
	readyTimeout = 3 * time.Minute // a loaded host slows the VMs' emulation many times over
	runTimeout   = 5 * time.Minute
	stopTimeout  = 5 * time.Minute // bpfmon drains what is buffered first
)

type workload struct {
	kind  string // "array" or "hash"; "hash-btf": with BTF, rendered by type in each event
	vsize int    // value size in bytes
	count int    // updates
}

func (w workload) String() string {
	if kind, ok := strings.CutSuffix(w.kind, "-btf"); ok {
		return fmt.Sprintf("%s with BTF (u32 keys, struct values), %s-byte values", kind, commas(int64(w.vsize)))
	}
	return fmt.Sprintf("%s, %s-byte values", w.kind, commas(int64(w.vsize)))
}

// config is the command line.
type config struct {
	rounds       int
	getpidRounds int
	idle         time.Duration
	quick        bool
	skipBpftrace bool
	baseline     string // another bpfmon binary, measured beside this tree's
	// inside: run in a test virtual machine (vmtest --workloads): the
	// builds' workloads only, with the binaries given.
	inside               bool
	bpfmonBin, writerBin string
	getpidBin            string
	latency              bool          // with --inside: only the latency tool's workload
	latencySkip          string        // with --latency: leave out the cases whose name matches
	vm                   bool          // also run the workloads in the virtual machines
	idleMaps             int           // maps on the host during the idle measurement
	scale                int           // iteration divisor: 10 with --quick
	scaleOnly            bool          // only the scale measurements
	boundOnly            bool          // only the memory bound measurements
	soak                 time.Duration // --soak-owners: the owner soak instead of the benchmarks
}

// env is what preflight and the builds found.
type env struct {
	tmp         string
	root        string // module root
	bpfmon      string // binaries
	baseline    string // --baseline, absolute; "" for none
	writer      string
	getpid      string
	bpftraceErr string // why the bpftrace column is n/a, if it is
	hook        string // bpfmon's program type, from its start message
}

func init() {
	// Children are started from the main goroutine; keeping it on the main
	// thread makes PR_SET_PDEATHSIG (which follows the forking thread) fire
	// only when the harness itself exits.
	runtime.LockOSThread()
}

func main() {
	if spec := os.Getenv(strangerEnv); spec != "" {
		os.Exit(stranger(spec))
	}
	var cfg config
	flag.IntVar(&cfg.rounds, "rounds", 3, "interleaved rounds of the map-write measurements")
	flag.IntVar(&cfg.getpidRounds, "getpid-rounds", 7, "interleaved rounds of the getpid measurement")
	flag.DurationVar(&cfg.idle, "idle", time.Duration(scanner.FullEvery)*scanner.DefaultInterval, "how long to measure bpfmon's idle CPU (one cycle of the content scanner's full passes)")
	flag.BoolVar(&cfg.quick, "quick", false, "smoke run: 10x fewer iterations, 1 round, 1 s idle")
	flag.BoolVar(&cfg.skipBpftrace, "skip-bpftrace", false, "do not measure bpftrace")
	flag.StringVar(&cfg.baseline, "baseline", "", "also measure this bpfmon `binary` (a build of an earlier commit) in the same rounds, as monitor bpfmon-base: before/after in one run")
	flag.BoolVar(&cfg.vm, "vm", true, "also run the map-write and getpid workloads with each sensor build in the test matrix's virtual machines (make vmtest's kernels)")
	flag.IntVar(&cfg.idleMaps, "idle-maps", 10000, "maps held on the host while bpfmon's idle CPU is measured")
	flag.DurationVar(&cfg.soak, "soak-owners", 0, "instead of the benchmarks, the owner soak: bpftrace and mapwriter write their protected maps while a workload execs for this long; reports the alerts raised (want 0), then each way a stranger tampers with the maps and its alerts (needs bpftrace)")
	flag.BoolVar(&cfg.boundOnly, "bound-only", false, "only the memory bound measurements: a 10M-entry hash rewritten, a 16M-entry hash, a 10M-update burst into a growing map, 100,000 maps, all at once (about 10 minutes)")
	flag.BoolVar(&cfg.scaleOnly, "scale-only", false, "only the scale measurements: 100,000 maps, a 16M-entry hash, a 10M-update burst (about 7 minutes)")
	flag.BoolVar(&cfg.inside, "inside", false, "run inside a test virtual machine: the builds' workloads only (vmtest --workloads)")
	flag.StringVar(&cfg.bpfmonBin, "bpfmon-bin", "", "with --inside: the bpfmon binary")
	flag.StringVar(&cfg.writerBin, "writer-bin", "", "with --inside: the writer binary (bench/c/writer.c)")
	flag.StringVar(&cfg.getpidBin, "getpid-bin", "", "with --inside: the getpid binary (bench/c/getpid.c)")
	flag.StringVar(&cfg.latencySkip, "latency-skip", "", "with --latency: leave out the cases whose name matches this regular expression (e.g. 'all$' on a loaded machine)")
	flag.BoolVar(&cfg.latency, "latency", false, "with --inside: only the latency tool's workload (a sys_enter/sys_exit tool writing maps on every syscall, under bpfmon's kernel-side sensor; vmtest --workloads --workload-flags=--latency)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: go run ./bench [flags]   (as root, from the bpfmon module)\n\nFlags:\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	cfg.scale = 1
	if cfg.quick {
		cfg.scale = 10
		if !set["rounds"] {
			cfg.rounds = 1
		}
		if !set["getpid-rounds"] {
			cfg.getpidRounds = 1
		}
		if !set["idle"] {
			cfg.idle = time.Second
		}
	}
	if cfg.rounds < 1 || cfg.getpidRounds < 1 || cfg.idle <= 0 {
		fmt.Fprintln(os.Stderr, "bench: --rounds, --getpid-rounds and --idle must be positive")
		os.Exit(2)
	}

	tmp, err := os.MkdirTemp("", "bpfmon-bench-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
	cleanup := func() {
		children.killAll()
		// After a signal the main goroutine may still be creating a file in
		// tmp (until it notices its children are gone): retry.
		for range 40 {
			if os.RemoveAll(tmp) == nil {
				return
			}
			time.Sleep(25 * time.Millisecond)
		}
		fmt.Fprintf(os.Stderr, "bench: could not remove %s\n", tmp)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "\nbench: %v: killing children, removing %s\n", s, tmp)
		cleanup()
		os.Exit(130)
	}()

	err = run(cfg, tmp)
	cleanup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

func run(cfg config, tmp string) error {
	start := time.Now()
	e := &env{tmp: tmp}
	if cfg.inside {
		e.bpfmon, e.writer, e.getpid = cfg.bpfmonBin, cfg.writerBin, cfg.getpidBin
		e.baseline = cfg.baseline // vmtest --baseline: the copy it put in the VM
		if cfg.latency {
			l := measureLatency(cfg, e)
			fmt.Println(markBenchBegin)
			reportLatency(os.Stdout, l)
			fmt.Println(markBenchEnd)
			return nil
		}
		b := measureBuilds(cfg, e)
		l := measureLatency(cfg, e)
		fmt.Println(markBenchBegin)
		reportBuilds(os.Stdout, cfg, b)
		reportLatency(os.Stdout, l)
		fmt.Println(markBenchEnd)
		return nil
	}
	if cfg.baseline != "" {
		abs, err := filepath.Abs(cfg.baseline)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("--baseline: %w", err)
		}
		e.baseline = abs
	}
	if err := preflight(cfg, e); err != nil {
		return err
	}
	info := machineInfo(e)
	if err := build(e); err != nil {
		return err
	}

	if cfg.soak > 0 {
		return runSoak(cfg, e)
	}
	if cfg.boundOnly {
		fmt.Println("## Memory bound")
		fmt.Println()
		reportBound(os.Stdout, measureBound(cfg, e))
		return nil
	}
	if cfg.scaleOnly {
		fmt.Println("## Scale")
		fmt.Println()
		reportScale(os.Stdout, measureScale(cfg, e))
		return nil
	}
	workloads := []workload{
		{"array", 8, 1_000_000 / cfg.scale},
		{"hash", 8, 1_000_000 / cfg.scale},
		{"hash-btf", 8, 1_000_000 / cfg.scale}, // the cost of rendering by type: compare with the row above
		{"array", 4096, 100_000 / cfg.scale},
		{"hash", 4096, 100_000 / cfg.scale},
	}
	writes := measureWrites(cfg, e, workloads)
	gp := measureGetpid(cfg, e)
	pipe := measurePipeline(cfg, e)
	idle := []idleResult{measureIdle(cfg, e, e.bpfmon)}
	if e.baseline != "" {
		idle = append(idle, measureIdle(cfg, e, e.baseline))
	}
	scan := measureScan(cfg)
	scale := measureScale(cfg, e)
	builds := measureBuilds(cfg, e)
	var vms string
	if cfg.vm {
		vms = measureVMs(cfg, e)
	}

	info.loadEnd = loadavg()
	info.elapsed = time.Since(start)
	report(os.Stdout, cfg, e, info, workloads, writes, gp, pipe, idle, scan)
	fmt.Println()
	fmt.Println("## Sensor builds, this machine")
	fmt.Println()
	reportBuilds(os.Stdout, cfg, builds)
	fmt.Println()
	fmt.Println("## Scale")
	fmt.Println()
	reportScale(os.Stdout, scale)
	if vms != "" {
		fmt.Println()
		fmt.Print(vms)
	}
	return nil
}

// Markers around the report that --inside prints on the console.
const (
	markBenchBegin = "VMBENCH-BEGIN"
	markBenchEnd   = "VMBENCH-END"
)

// measureVMs runs the builds' workloads in the test matrix's virtual
// machines (vmtest --workloads) and returns their reports.
func measureVMs(cfg config, e *env) string {
	// One processor: with two, qemu's multi-threaded emulation raced the
	// kernel's int3 text patching (an oops in syscall_exit_to_user_mode
	// as bpfmon attached and detached). The writer's figure there
	// therefore includes bpfmon's consumer, emulated on the same CPU.
	args := []string{"run", "./vmtest", "--workloads", "--host=false"}
	if cfg.quick {
		args = append(args, "--workload-flags=--quick")
	}
	old, _ := filepath.Glob(filepath.Join(e.root, "out", "vmtest", "*.bench.md"))
	for _, f := range old {
		os.Remove(f) // an earlier run's: not this one's figures
	}
	progress("go %s", strings.Join(args, " "))
	cmd := exec.Command("go", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := runCmd(cmd, 40*time.Minute); err != nil {
		return fmt.Sprintf("## Sensor builds, virtual machines\n\nn/a: vmtest --workloads: %v: %s\n", err, md(lastLine(out.String())))
	}
	var b strings.Builder
	files, _ := filepath.Glob(filepath.Join(e.root, "out", "vmtest", "*.bench.md"))
	slices.Sort(files)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		b.Write(data)
		b.WriteString("\n")
	}
	return b.String()
}

// ---------------------------------------------------------------------------
// Preflight and builds.

func preflight(cfg config, e *env) error {
	if os.Geteuid() != 0 {
		return errors.New("must run as root: bpfmon and bpftrace load BPF programs (try: sudo make bench)")
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return errors.New("run from inside the bpfmon module (make bench, or go run ./bench)")
	}
	e.root = filepath.Dir(gomod)
	if err := os.Chdir(e.root); err != nil {
		return err
	}
	// bpftrace on older kernels, and cilium/ebpf maps there, charge
	// RLIMIT_MEMLOCK; children inherit this.
	_ = unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY})

	if cfg.skipBpftrace {
		e.bpftraceErr = "n/a: skipped (--skip-bpftrace)"
		return nil
	}
	// bpftrace's tracepoints need tracefs.
	if err := tracefs.Mount(); err != nil {
		e.bpftraceErr = "n/a: " + err.Error()
		return nil
	}
	if _, err := exec.LookPath("bpftrace"); err != nil {
		var buf bytes.Buffer
		apt := func(args ...string) error {
			progress("bpftrace not found: apt-get %s", strings.Join(args, " "))
			cmd := exec.Command("apt-get", args...)
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			buf.Reset()
			cmd.Stdout, cmd.Stderr = &buf, &buf
			return runCmd(cmd, buildTimeout)
		}
		err := apt("install", "-y", "-q", "bpftrace")
		if err != nil && apt("update", "-q") == nil {
			// A fresh machine may have no package lists yet.
			err = apt("install", "-y", "-q", "bpftrace")
		}
		if err != nil {
			e.bpftraceErr = fmt.Sprintf("n/a: bpftrace is not installed and apt-get install bpftrace failed (%v): %s", err, lastLine(buf.String()))
			return nil
		}
		if _, err := exec.LookPath("bpftrace"); err != nil {
			e.bpftraceErr = "n/a: bpftrace not found after apt-get install bpftrace"
		}
	}
	return nil
}

func build(e *env) error {
	e.bpfmon = filepath.Join(e.tmp, "bpfmon")
	e.writer = filepath.Join(e.tmp, "writer")
	e.getpid = filepath.Join(e.tmp, "getpid")
	steps := [][]string{
		{"go", "build", "-o", e.bpfmon, "./cmd/bpfmon"},
		{"gcc", "-O2", "-Wall", "-o", e.writer, "bench/c/writer.c"},
		{"gcc", "-O2", "-Wall", "-o", e.getpid, "bench/c/getpid.c"},
	}
	for _, s := range steps {
		progress("%s", strings.Join(s, " "))
		cmd := exec.Command(s[0], s[1:]...)
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		if err := runCmd(cmd, buildTimeout); err != nil {
			return fmt.Errorf("%s: %v\n%s", strings.Join(s, " "), err, buf.String())
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// Map writes.

// cell is one measurement of one workload under one monitor.
type cell struct {
	ns       float64       // writer's ns per update
	made     int64         // updates made
	failed   int64         // updates that failed
	reported int64         // events the monitor reported for the writer
	lost     int64         // events the monitor says it lost
	drain    time.Duration // from the writer's exit to the monitor's
	err      error
}

// writes[workload index][monitor] lists the rounds.
type writeResults []map[string][]cell

func measureWrites(cfg config, e *env, workloads []workload) writeResults {
	res := make(writeResults, len(workloads))
	for i := range res {
		res[i] = map[string][]cell{}
	}
	for r := 1; r <= cfg.rounds; r++ {
		for i, w := range workloads {
			for _, m := range e.monitors() {
				if m == monBpftrace && e.bpftraceErr != "" {
					continue
				}
				var c cell
				switch m {
				case monNone:
					c = writeNone(e, w)
				case monBpfmon:
					c = writeBpfmon(e, e.bpfmon, w)
				case monBaseline:
					c = writeBpfmon(e, e.baseline, w)
				case monBpftrace:
					c = writeBpftrace(e, w)
				}
				res[i][m] = append(res[i][m], c)
				if c.err != nil {
					progress("round %d/%d  %-24s %-8s  error: %v", r, cfg.rounds, w, m, c.err)
					if m == monBpftrace && errors.Is(c.err, errStart) {
						e.bpftraceErr = "n/a: " + c.err.Error()
					}
					continue
				}
				msg := fmt.Sprintf("round %d/%d  %-24s %-8s %8.1f ns/update", r, cfg.rounds, w, m, c.ns)
				if m != monNone {
					msg += fmt.Sprintf(", %s/%s reported, %s lost, monitor done %.1f s after the writer", commas(c.reported), commas(c.made), commas(c.lost), c.drain.Seconds())
				}
				progress("%s", msg)
			}
		}
	}
	return res
}

type writerOut struct {
	ns     float64
	count  int64
	errors int64
	mapID  int
	pid    int
}

var (
	reWriterStart = regexp.MustCompile(`map_id=(\d+) pid=(\d+)`)
	reWriterEnd   = regexp.MustCompile(`ns_per_op=([0-9.]+) count=(\d+) errors=(\d+)`)
)

func runWriter(e *env, w workload) (writerOut, error) {
	var o writerOut
	cmd := exec.Command(e.writer, w.kind, strconv.Itoa(w.vsize), strconv.Itoa(w.count))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := runCmd(cmd, runTimeout); err != nil {
		return o, fmt.Errorf("writer: %v: %s", err, lastLine(stderr.String()))
	}
	m1 := reWriterStart.FindStringSubmatch(stdout.String())
	m2 := reWriterEnd.FindStringSubmatch(stdout.String())
	if m1 == nil || m2 == nil {
		return o, fmt.Errorf("writer: unexpected output %q", stdout.String())
	}
	o.mapID, _ = strconv.Atoi(m1[1])
	o.pid, _ = strconv.Atoi(m1[2])
	o.ns, _ = strconv.ParseFloat(m2[1], 64)
	o.count, _ = strconv.ParseInt(m2[2], 10, 64)
	o.errors, _ = strconv.ParseInt(m2[3], 10, 64)
	return o, nil
}

func writeNone(e *env, w workload) cell {
	o, err := runWriter(e, w)
	return cell{ns: o.ns, made: o.count, failed: o.errors, err: err}
}

var reSummary = regexp.MustCompile(`stopped: (\d+) events, (\d+) lost`)
var reHook = regexp.MustCompile(`watching bpf\(2\) map calls from every process \((\S+) on `)

// errStart marks a monitor that could not be started.
var errStart = errors.New("could not start")

func writeBpfmon(e *env, bin string, w workload) cell {
	out := filepath.Join(e.tmp, "bpfmon.json")
	defer os.Remove(out)
	mon, err := startBpfmon(e, bin, out)
	if err != nil {
		return cell{err: err}
	}
	defer mon.kill()
	o, err := runWriter(e, w)
	if err != nil {
		return cell{err: err}
	}
	c := cell{ns: o.ns, made: o.count, failed: o.errors}
	c.drain, c.err = mon.stop(syscall.SIGINT, stopTimeout)
	if c.err != nil {
		return c
	}
	stderr := mon.stderrText()
	if e.hook == "" && bin == e.bpfmon {
		if m := reHook.FindStringSubmatch(stderr); m != nil {
			e.hook = m[1]
		}
	}
	m := reSummary.FindStringSubmatch(stderr)
	if m == nil {
		c.err = fmt.Errorf("bpfmon printed no summary line: %s", lastLine(stderr))
		return c
	}
	c.lost, _ = strconv.ParseInt(m[2], 10, 64)
	c.reported, c.err = countBpfmon(out, o.mapID)
	return c
}

// startBpfmon starts `bpfmon watch` (the binary bin) writing JSON to out
// and waits until its probes are attached.
func startBpfmon(e *env, bin, out string, args ...string) (*bg, error) {
	ready := filepath.Join(e.tmp, "bpfmon.ready")
	os.Remove(ready)
	cmd := exec.Command(bin, append([]string{"watch", "--format", "json", "--output", out, "--ready-file", ready}, args...)...)
	mon, err := startBG("bpfmon", cmd, filepath.Join(e.tmp, "bpfmon.stderr"), "")
	if err != nil {
		return nil, fmt.Errorf("%w: bpfmon: %v", errStart, err)
	}
	if err := mon.waitFor(func() bool { _, err := os.Stat(ready); return err == nil }, readyTimeout); err != nil {
		mon.kill()
		return nil, fmt.Errorf("%w: bpfmon watch: %v", errStart, err)
	}
	return mon, nil
}

// countBpfmon counts the map_update events on map mapID in bpfmon's JSON.
func countBpfmon(path string, mapID int) (int64, error) {
	ev := []byte(`"event":"map_update"`)
	mp := fmt.Appendf(nil, `"map":{"id":%d,`, mapID)
	var n int64
	err := scanLines(path, func(line []byte) {
		if bytes.Contains(line, ev) && bytes.Contains(line, mp) {
			n++
		}
	})
	return n, err
}

// writerSetupCalls are the writer's bpf(2) calls before its loop
// (BPF_MAP_CREATE, BPF_OBJ_GET_INFO_BY_FD); bpftrace's one-liner sees them.
const writerSetupCalls = 2

var reBpftraceLost = regexp.MustCompile(`Lost (\d+) events`)

func writeBpftrace(e *env, w workload) cell {
	out := filepath.Join(e.tmp, "bpftrace.out")
	defer os.Remove(out)
	cmd := exec.Command("bpftrace", "-e", bpftraceProgram)
	mon, err := startBG("bpftrace", cmd, filepath.Join(e.tmp, "bpftrace.stderr"), out)
	if err != nil {
		return cell{err: fmt.Errorf("%w: bpftrace: %v", errStart, err)}
	}
	defer mon.kill()
	attaching := []byte("Attaching")
	if err := mon.waitFor(func() bool { return fileHas(out, attaching) }, readyTimeout); err != nil {
		return cell{err: fmt.Errorf("%w: bpftrace: %v", errStart, err)}
	}
	o, err := runWriter(e, w)
	if err != nil {
		return cell{err: err}
	}
	c := cell{ns: o.ns, made: o.count, failed: o.errors}
	// bpftrace drops what is still in its perf buffers when stopped: let it
	// catch up first (its output stops growing), and count that time.
	t0 := time.Now()
	settle(out, 300*time.Millisecond, stopTimeout)
	_, c.err = mon.stop(syscall.SIGINT, stopTimeout)
	c.drain = time.Since(t0)
	if c.err != nil {
		return c
	}
	prefix := []byte(strconv.Itoa(o.pid) + " ")
	c.err = scanLines(out, func(line []byte) {
		if bytes.HasPrefix(line, prefix) {
			c.reported++
		} else if m := reBpftraceLost.FindSubmatch(line); m != nil {
			n, _ := strconv.ParseInt(string(m[1]), 10, 64)
			c.lost += n
		}
	})
	for _, m := range reBpftraceLost.FindAllStringSubmatch(mon.stderrText(), -1) {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		c.lost += n
	}
	setup := int64(writerSetupCalls)
	if strings.HasSuffix(w.kind, "-btf") {
		setup++ // BPF_BTF_LOAD
	}
	c.reported = max(0, c.reported-setup)
	return c
}

// ---------------------------------------------------------------------------
// Other syscalls.

type getpidResults struct {
	none, bpfmon, base []float64 // ns per call, per round (base: --baseline)
	ratios, baseRatios []float64 // bpfmon/none and base/none, per round
	count              int
	err                error
}

func measureGetpid(cfg config, e *env) getpidResults {
	res := getpidResults{count: 2_000_000 / cfg.scale}
	one := func() (float64, error) {
		cmd := exec.Command(e.getpid, strconv.Itoa(res.count))
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
	watched := func(bin string) (float64, error) {
		mon, err := startBpfmon(e, bin, os.DevNull)
		if err != nil {
			return 0, err
		}
		defer mon.kill()
		ns, err := one()
		if err != nil {
			return 0, err
		}
		_, err = mon.stop(syscall.SIGINT, stopTimeout)
		return ns, err
	}
	// Each round measures every side once; the order rotates so that
	// drift does not favour any of them.
	sides := []func() (float64, error){one, func() (float64, error) { return watched(e.bpfmon) }}
	if e.baseline != "" {
		sides = append(sides, func() (float64, error) { return watched(e.baseline) })
	}
	for r := 1; r <= cfg.getpidRounds; r++ {
		got := make([]float64, len(sides))
		for k := range sides {
			i := (k + r) % len(sides)
			if r%2 == 0 {
				i = (len(sides) - 1 - k + r) % len(sides)
			}
			ns, err := sides[i]()
			if err != nil {
				res.err = err
				progress("getpid round %d/%d: error: %v", r, cfg.getpidRounds, err)
				return res
			}
			got[i] = ns
		}
		a, b := got[0], got[1]
		res.none = append(res.none, a)
		res.bpfmon = append(res.bpfmon, b)
		res.ratios = append(res.ratios, b/a)
		msg := fmt.Sprintf("getpid round %d/%d  none %.1f ns/call, bpfmon %.1f ns/call (%+.1f%%)", r, cfg.getpidRounds, a, b, (b/a-1)*100)
		if len(got) > 2 {
			res.base = append(res.base, got[2])
			res.baseRatios = append(res.baseRatios, got[2]/a)
			msg += fmt.Sprintf(", baseline %.1f ns/call (%+.1f%%)", got[2], (got[2]/a-1)*100)
		}
		progress("%s", msg)
	}
	return res
}

// goTest runs `go args...` (a go test benchmark) and returns its output.
func goTest(args []string) (string, error) {
	progress("go %s", strings.Join(args, " "))
	cmd := exec.Command("go", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := runCmd(cmd, buildTimeout)
	return out.String(), err
}

// ---------------------------------------------------------------------------
// The JSON pipeline alone.

type pipelineResult struct {
	cmdline   string
	eventsSec []float64 // btf=off: a map without BTF
	nsOp      []float64
	allocs    string
	// btf=on: the map's key and value also rendered by its BTF (the
	// cache lookup and the rendering), measured in the same rounds.
	btfEventsSec []float64
	btfNsOp      []float64
	btfRatios    []float64 // per round, ns/event btf=on over btf=off
	na           string    // why there is no number
}

var (
	reEventsSec = regexp.MustCompile(`([0-9.e+]+) events/s`)
	reNsOp      = regexp.MustCompile(`([0-9.]+) ns/op`)
	reAllocs    = regexp.MustCompile(`(\d+) allocs/op`)
)

// measurePipeline runs BenchmarkPipelineJSON once per round, each run
// measuring btf=off then btf=on, so that the two compare as per-round
// ratios on a noisy machine.
func measurePipeline(cfg config, e *env) pipelineResult {
	args := []string{"test", "-run", "^$", "-bench", "BenchmarkPipelineJSON",
		"-benchtime", fmt.Sprintf("%dx", 1_000_000/cfg.scale), "-count", "1",
		"./internal/sensor/bpfsyscall/"}
	res := pipelineResult{cmdline: fmt.Sprintf("go %s (%d times)", strings.Join(args, " "), cfg.rounds)}
	var err error
	var out string
	for range cfg.rounds {
		out, err = goTest(args)
		var off, on float64
		for _, line := range strings.Split(out, "\n") {
			if !strings.HasPrefix(line, "BenchmarkPipelineJSON") {
				continue
			}
			btf := strings.HasPrefix(line, "BenchmarkPipelineJSON/btf=on")
			if m := reEventsSec.FindStringSubmatch(line); m != nil {
				v, _ := strconv.ParseFloat(m[1], 64)
				if btf {
					res.btfEventsSec = append(res.btfEventsSec, v)
				} else {
					res.eventsSec = append(res.eventsSec, v)
				}
			}
			if m := reNsOp.FindStringSubmatch(line); m != nil {
				v, _ := strconv.ParseFloat(m[1], 64)
				if btf {
					res.btfNsOp, on = append(res.btfNsOp, v), v
				} else {
					res.nsOp, off = append(res.nsOp, v), v
				}
			}
			if m := reAllocs.FindStringSubmatch(line); m != nil && !btf {
				res.allocs = m[1]
			}
		}
		if off > 0 && on > 0 {
			res.btfRatios = append(res.btfRatios, on/off)
		}
	}
	switch {
	case len(res.eventsSec) > 0:
		progress("pipeline: %s events/s (median of %d); with BTF rendering %s events/s", commas(int64(median(res.eventsSec))), len(res.eventsSec), commas(int64(median(res.btfEventsSec))))
	case err != nil:
		res.na = fmt.Sprintf("n/a: go test failed (%v): %s", err, firstErrorLine(out))
	default:
		res.na = "n/a: benchmark not found"
	}
	if res.na != "" {
		progress("pipeline: %s", res.na)
	}
	return res
}

// ---------------------------------------------------------------------------
// The content scanner: one pass over a 1M-entry hash map.

type scanResult struct {
	cmdline string
	// per case (unchanged, one-key-changed): ms/pass, cpu-ms/pass, heap-MiB, snapshot-MiB, elements
	cases map[string]map[string]float64
	na    string
}

var reScanCase = regexp.MustCompile(`^BenchmarkScanPass1M/([a-z-]+?)(-\d+)?\s`)

var reMetric = regexp.MustCompile(`([0-9.e+]+) ([a-zA-Z/-]+)`)

func measureScan(cfg config) scanResult {
	args := []string{"test", "-run", "^$", "-bench", "BenchmarkScanPass1M", "-benchtime", "3x", "./internal/scanner/"}
	if cfg.scale > 1 {
		args[6] = "1x"
	}
	res := scanResult{cmdline: "go " + strings.Join(args, " "), cases: map[string]map[string]float64{}}
	out, err := goTest(args)
	for _, line := range strings.Split(out, "\n") {
		c := reScanCase.FindStringSubmatch(line)
		if c == nil {
			continue
		}
		metrics := map[string]float64{}
		for _, m := range reMetric.FindAllStringSubmatch(line[len(c[0]):], -1) {
			v, _ := strconv.ParseFloat(m[1], 64)
			metrics[m[2]] = v
		}
		res.cases[c[1]] = metrics
	}
	switch {
	case res.cases["unchanged"]["ms/pass"] > 0:
		progress("scanner: %.0f ms per unchanged pass over a 1M-entry hash", res.cases["unchanged"]["ms/pass"])
	case err != nil:
		res.na = fmt.Sprintf("n/a: go test failed (%v): %s", err, firstErrorLine(out))
	default:
		res.na = "n/a: benchmark not found"
	}
	return res
}

// ---------------------------------------------------------------------------
// Idle CPU.

type idleResult struct {
	bin        string // the bpfmon measured
	maps       int
	window     time.Duration
	percent    float64 // exact: the process CPU-time clock
	statPct    float64 // utime+stime from /proc/PID/stat, clock-tick resolution
	rssKiB     int64
	events     int64 // events bpfmon reported from start to stop (other processes' calls)
	err        error
	clockError string // why percent is from /proc/PID/stat only
}

func measureIdle(cfg config, e *env, bin string) idleResult {
	res := idleResult{maps: cfg.idleMaps, bin: bin}
	progress("idle: creating %d maps, then %v of bpfmon watch doing nothing", res.maps, cfg.idle)
	var maps []*ebpf.Map
	defer func() {
		for _, m := range maps {
			m.Close()
		}
	}()
	for range res.maps {
		m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "bench_idle", Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 1})
		if err != nil {
			res.err = fmt.Errorf("creating map %d of %d: %v", len(maps)+1, res.maps, err)
			return res
		}
		maps = append(maps, m)
	}
	out := filepath.Join(e.tmp, "idle.json")
	defer os.Remove(out)
	mon, err := startBpfmon(e, bin, out)
	if err != nil {
		res.err = err
		return res
	}
	defer mon.kill()
	pid := mon.cmd.Process.Pid
	hz := clockTicks()
	// The scanner's first pass reads every map (start-up, not idling):
	// the window begins one scan interval after ready.
	if !cfg.quick {
		time.Sleep(scanner.DefaultInterval)
	}
	t0, err := cpuTicks(pid)
	if err != nil {
		res.err = err
		return res
	}
	c0, cerr0 := processCPU(pid)
	w0 := time.Now()
	time.Sleep(cfg.idle)
	c1, cerr1 := processCPU(pid)
	t1, err := cpuTicks(pid)
	res.window = time.Since(w0)
	if err != nil {
		res.err = err
		return res
	}
	res.rssKiB = rssKiB(pid)
	if _, err := mon.stop(syscall.SIGINT, stopTimeout); err != nil {
		res.err = err
		return res
	}
	res.statPct = float64(t1-t0) / hz / res.window.Seconds() * 100
	if err := errors.Join(cerr0, cerr1); err != nil {
		res.clockError = err.Error()
		res.percent = res.statPct
	} else {
		res.percent = float64(c1-c0) / float64(res.window) * 100
	}
	_ = scanLines(out, func([]byte) { res.events++ })
	progress("idle: %.2f%% of a core over %.1f s (utime+stime: %.1f%%), %d events seen", res.percent, res.window.Seconds(), res.statPct, res.events)
	return res
}

// processCPU is the CPU time of all threads of process pid, past and
// present, in nanoseconds: its CPU-time clock (clock_getcpuclockid(3)).
func processCPU(pid int) (time.Duration, error) {
	const cpuclockSched = 2 // CPUCLOCK_SCHED; no CPUCLOCK_PERTHREAD_MASK: the whole process
	clk := int32(^uint32(pid)<<3) | cpuclockSched
	var ts unix.Timespec
	if err := unix.ClockGettime(clk, &ts); err != nil {
		return 0, fmt.Errorf("clock_gettime(CPU clock of %d): %v", pid, err)
	}
	return time.Duration(ts.Nano()), nil
}

// cpuTicks is utime+stime of process pid (all its threads), in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// comm may contain spaces and parentheses: fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return ut + st, nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times.
func clockTicks() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64); err == nil && v > 0 {
			return v
		}
	}
	return 100 // USER_HZ on every Linux architecture bpfmon supports
}

func rssKiB(pid int) int64 { return statusKiB(pid, "VmRSS:") }

// ---------------------------------------------------------------------------
// Child processes.

// reaper tracks running children so that they can all be killed on exit.
type reaper struct {
	mu      sync.Mutex
	closing bool
	pids    map[int]bool // process group leaders
}

var children = &reaper{pids: map[int]bool{}}

func (r *reaper) start(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	cmd.WaitDelay = 5 * time.Second
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		return errors.New("shutting down")
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	r.pids[cmd.Process.Pid] = true
	return nil
}

// forget is called once cmd has been waited for.
func (r *reaper) forget(cmd *exec.Cmd) {
	r.mu.Lock()
	delete(r.pids, cmd.Process.Pid)
	r.mu.Unlock()
}

func (r *reaper) isClosing() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closing
}

func (r *reaper) killAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closing = true
	for pid := range r.pids {
		unix.Kill(-pid, unix.SIGKILL)
	}
}

// runCmd runs cmd to completion, killing its process group after timeout.
func runCmd(cmd *exec.Cmd, timeout time.Duration) error {
	if err := children.start(cmd); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer children.forget(cmd)
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		<-done
		return fmt.Errorf("%s timed out after %v", filepath.Base(cmd.Path), timeout)
	}
}

// bg is a child running in the background: a monitor.
type bg struct {
	name   string
	cmd    *exec.Cmd
	stderr string // file
	done   chan struct{}
	err    error // from Wait, once done is closed
}

// startBG starts cmd with stderr (and stdout, if not "") going to files.
func startBG(name string, cmd *exec.Cmd, stderrPath, stdoutPath string) (*bg, error) {
	ef, err := os.Create(stderrPath)
	if err != nil {
		return nil, err
	}
	defer ef.Close()
	cmd.Stderr = ef
	if stdoutPath != "" {
		of, err := os.Create(stdoutPath)
		if err != nil {
			return nil, err
		}
		defer of.Close()
		cmd.Stdout = of
	}
	if err := children.start(cmd); err != nil {
		return nil, err
	}
	b := &bg{name: name, cmd: cmd, stderr: stderrPath, done: make(chan struct{})}
	go func() {
		b.err = cmd.Wait()
		children.forget(cmd)
		close(b.done)
	}()
	return b, nil
}

func (b *bg) exited() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

func (b *bg) stderrText() string {
	data, _ := os.ReadFile(b.stderr)
	return string(data)
}

// waitFor polls ready until it holds, the child exits, or timeout passes.
func (b *bg) waitFor(ready func() bool, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !ready() {
		if b.exited() {
			return fmt.Errorf("exited before it was ready (%v): %s", b.err, lastLine(b.stderrText()))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %s", timeout, lastLine(b.stderrText()))
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// stop sends sig and waits for a clean exit; after timeout it kills.
func (b *bg) stop(sig syscall.Signal, timeout time.Duration) (time.Duration, error) {
	t0 := time.Now()
	if err := b.cmd.Process.Signal(sig); err != nil && !b.exited() {
		b.kill()
		return 0, fmt.Errorf("%s: %v", b.name, err)
	}
	select {
	case <-b.done:
	case <-time.After(timeout):
		b.kill()
		return time.Since(t0), fmt.Errorf("%s did not exit within %v of %v; killed", b.name, timeout, sig)
	}
	took := time.Since(t0)
	if b.err != nil {
		return took, fmt.Errorf("%s: %v: %s", b.name, b.err, lastLine(b.stderrText()))
	}
	return took, nil
}

// kill kills the child's process group and waits for it, unless it is gone.
func (b *bg) kill() {
	if b.exited() {
		return
	}
	unix.Kill(-b.cmd.Process.Pid, unix.SIGKILL)
	<-b.done
}

// ---------------------------------------------------------------------------
// Files and text.

// scanLines calls fn for each line of the file at path, streaming it.
func scanLines(path string, fn func([]byte)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		fn(sc.Bytes())
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading %s: %v", path, err)
	}
	return nil
}

// settle waits until the file's size has not changed for quiet, at most limit.
func settle(path string, quiet, limit time.Duration) {
	deadline := time.Now().Add(limit)
	last, since := int64(-1), time.Now()
	for time.Now().Before(deadline) {
		var size int64
		if fi, err := os.Stat(path); err == nil {
			size = fi.Size()
		}
		if size != last {
			last, since = size, time.Now()
		} else if time.Since(since) >= quiet {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fileHas reports whether the first 64 KiB of the file contain s.
func fileHas(path string, s []byte) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	n, _ := io.ReadFull(f, buf)
	return bytes.Contains(buf[:n], s)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// firstErrorLine picks the most telling line of failed go test output.
func firstErrorLine(s string) string {
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, ".go:") || strings.HasPrefix(line, "--- FAIL") || strings.Contains(line, "panic:") {
			return strings.TrimSpace(line)
		}
	}
	return lastLine(s)
}

func progress(format string, args ...any) {
	if children.isClosing() {
		return // interrupted: the failures that follow are ours
	}
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// commas formats n with thousands separators.
func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// md makes s safe in a markdown table cell.
func md(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.Join(strings.Fields(s), " ")
}
