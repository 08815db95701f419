// Command bpfmon makes every change to every eBPF map on a Linux host
// visible. This file holds flags and subcommands only; the work is done in
// internal/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/mapwriter"
	"github.com/bpfmon/bpfmon/internal/metrics"
	"github.com/bpfmon/bpfmon/internal/outfile"
	"github.com/bpfmon/bpfmon/internal/pods"
	"github.com/bpfmon/bpfmon/internal/policy"
	"github.com/bpfmon/bpfmon/internal/scanner"
	"github.com/bpfmon/bpfmon/internal/sdnotify"
	"github.com/bpfmon/bpfmon/internal/sensor"
	"github.com/bpfmon/bpfmon/internal/sensor/bpfsyscall"
	"github.com/bpfmon/bpfmon/internal/sensor/kernelwrite"
	"github.com/bpfmon/bpfmon/internal/sensor/record"
	"github.com/bpfmon/bpfmon/internal/syslogout"
	"github.com/bpfmon/bpfmon/internal/watch"
)

// Exit codes.
const (
	exitOK    = 0 // success, a stop by SIGINT or SIGTERM included
	exitError = 1 // runtime failure: privileges, kernel, I/O
	exitUsage = 2 // bad command line or policy
	// exitUnavailable: what the command line requires (--enforce, a
	// forced --hook or --kernel-hooks kind) is not available on this kernel.
	exitUnavailable = 3
	// exitOutputClosed: the reader of the output (a pipe, a socket) went
	// away; the summary on stderr says how many events were not written.
	exitOutputClosed = 4
)

var version = "dev"

const usage = `bpfmon makes every change to every eBPF map on this host visible.

Usage:
  bpfmon watch [flags]      stream map changes and handle acquisitions
  bpfmon maps [flags]       list every map: holders, programs, pins
  bpfmon features [flags]   what this kernel lets bpfmon see, and why not
  bpfmon mapwriter [flags]  demo: create a map and write it once a second
  bpfmon version            print the version

Run 'bpfmon COMMAND --help' for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	// Kernels before 5.11 charge BPF maps and programs to RLIMIT_MEMLOCK
	// (64 KiB by default), which bpfmon's first ring buffer exceeds;
	// later ones charge the memory cgroup, and this does nothing.
	_ = rlimit.RemoveMemlock()
	raiseNoFile()
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "watch":
		return runWatch(args[1:], stdout, stderr)
	case "mapwriter":
		return runMapwriter(args[1:], stdout, stderr)
	case "maps":
		return runMaps(args[1:], stdout, stderr)
	case "features":
		return runFeatures(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "bpfmon %s\n", version)
		return exitOK
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "bpfmon: unknown command %q\n\n%s", args[0], usage)
	return exitUsage
}

// inspectFlags, when set, is handed each command's flag set in place of
// parsing it, and the command stops there: the reference generator
// (reference_test.go) documents the real flag sets this way.
var inspectFlags func(*flag.FlagSet)

// parse parses a subcommand's flags. It returns an exit code when the
// program should stop: 0 after --help, 2 after a usage error.
func parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (int, bool) {
	if inspectFlags != nil {
		inspectFlags(fs)
		return exitOK, true
	}
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		return exitOK, true
	case err != nil:
		fmt.Fprintf(stderr, "bpfmon %s: %v\n", fs.Name(), err)
		fs.SetOutput(stderr)
		fs.Usage()
		return exitUsage, true
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "bpfmon %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.SetOutput(stderr)
		fs.Usage()
		return exitUsage, true
	}
	return 0, false
}

// usageFunc prints synopsis and the flags, written --name as users of
// Tetragon, bpftool or pwru expect (both - and -- are accepted).
func usageFunc(fs *flag.FlagSet, synopsis string) func() {
	return func() {
		w := fs.Output()
		fmt.Fprintf(w, "%s\n\nFlags:\n", synopsis)
		fs.VisitAll(func(f *flag.Flag) {
			name, help := flag.UnquoteUsage(f)
			line := "  --" + f.Name
			if name != "" {
				line += " " + name
			}
			fmt.Fprintf(w, "%s\n      %s", line, help)
			if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "[]" && f.DefValue != "false" {
				fmt.Fprintf(w, " (default %s)", f.DefValue)
			}
			fmt.Fprintln(w)
		})
	}
}

// Defaults of the sizes the memory bound derives from (docs/memory.md).
const (
	defaultRing       = "32M"
	defaultScanMemory = "256M"
)

func runWatch(args []string, stdout, stderr io.Writer) int {
	// SIGHUP, first of all: its default action ends the process, and
	// `systemctl reload` sends it whatever the flags (see reload below).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	format := fs.String("format", "auto", "output format: text, json (one object per line), or auto (text on a terminal, json otherwise)")
	outPath := fs.String("output", "", "write events to `FILE` (created with mode 0600, never through a link; an existing one must be a regular file of bpfmon's user that others cannot write; default, - or /dev/stdout: standard output); SIGHUP reopens it (logrotate)")
	outMaxSize := fs.String("output-max-size", "0", "rotate --output once it would grow past `SIZE` (whole MiB: 10M, 1G; 0: never); the file is then appended to, not truncated")
	outMaxFiles := fs.Int("output-max-files", 5, "with --output-max-size: keep `N` rotated files (0: all)")
	syslogURL := fs.String("syslog", "", "also send every event written to `URL` as an RFC 5424 syslog message (tcp://HOST:PORT with octet counting, relp://HOST:PORT with the receiver's acknowledgements, udp://HOST:PORT, or unix:///PATH): never waits for the receiver, reconnects with backoff, counts what it cannot deliver (bpfmon_lost_events_total{source=\"output\"}) and reports it there as a lost event once back")
	criSocket := fs.String("cri-socket", "", "name the Kubernetes pod of processes in containers (process.pod) by asking the container runtime's CRI socket at `PATH` (default: the first of "+strings.Join(pods.DefaultSockets, ", ")+" that answers; off: none, the pod uid from the cgroup path only); never waits for it")
	ready := fs.String("ready-file", "", "write bpfmon's pid to `FILE` once all probes are attached and the state at start is recorded")
	capture := fs.Int("capture-bytes", record.DefaultCapture, fmt.Sprintf("capture at most `N` bytes of each key and value (1-%d)", record.MaxCapture))
	ring := fs.String("ring-buffer", defaultRing, "kernel ring buffer `SIZE` (bytes, or with K/M/G suffix)")
	scanInterval := fs.Duration("scan-interval", scanner.DefaultInterval, "content scanner: read and compare every map this often (0 turns it off)")
	scanMaxKeyed := fs.Int("scan-max-keyed", scanner.DefaultMaxKeyed, "content scanner: report at most `N` changed keys per map and pass, then one summary")
	scanBudget := fs.String("scan-budget", "32M", "content scanner: read at most `SIZE` bytes per second (K/M/G suffix; 0: unlimited)")
	scanMemory := fs.String("scan-memory", defaultScanMemory, "content scanner: hold at most `SIZE` of snapshots and comparisons; larger maps are compared by hashes (old values then unknown), then per range of keys or as a whole (docs/memory.md); it sets Go's memory limit, with the ring buffer")
	statePath := fs.String("state", "", "content scanner: save each pass to `FILE` and, at start, report what changed while bpfmon was not running, the gap, and holders of protected maps that are not their saved owners")
	hook := fs.String("hook", "auto", "syscall sensor build: auto (the first the kernel loads of fentry, tp_btf, raw_tracepoint), fentry (trampolines on the bpf syscall and map mmaps only), tp_btf or raw_tracepoint (raw_syscalls: every syscall)")
	logFormat := fs.String("log-format", "text", "diagnostics on stderr: text (key=value) or json (one object per line), both from log/slog")
	logLevel := fs.String("log-level", "info", "diagnostics on stderr from this level on: debug (adds one line per content scanner pass), info, warn or error")
	cpuProfile := fs.String("cpu-profile", "", "write a Go CPU profile of bpfmon itself to `FILE` until it stops (for go tool pprof; to report a performance problem)")
	kernelHooks := fs.String("kernel-hooks", "auto", "kernel-side sensor (writes by BPF programs): auto (fexit where the kernel allows, else kprobes, else none), fexit, kprobe, or off")
	kernelWrites := fs.String("kernel-writes", "selective", "kernel-side sensor: selective (every write to a protected map or one chosen with --map-id, and each program's first write to any map; a known program's later writes to other maps are counted in the kernel and summarised as map_writes_counted) or all (every write, itemized: costly beside busy tools)")
	policyPath := fs.String("policy", "", "tamper-alert policy `FILE` (YAML: protected maps, owners, rules; see docs/alerts.md); SIGHUP loads it again (a broken file keeps the policy in force)")
	alertsOnly := fs.Bool("alerts-only", false, "write only events that carry an alert (and lost events)")
	metricsAddr := fs.String("metrics-addr", "", "serve Prometheus metrics on /metrics and readiness on /healthz at `HOST:PORT` (:9567: every interface; port 0: a free port, logged); off by default")
	lockFile := fs.String("lock-file", defaultLockFile, "take the lock of one bpfmon watch per host at `FILE` ($"+lockEnv+" sets the default); a second watch is refused, naming the first's pid")
	enforce := fs.Bool("enforce", false, "refuse write access to protected maps to processes that do not own them (BPF LSM, else fmod_ret on the security_ functions; exits 3 where the kernel allows neither)")
	var protect selectorList
	fs.Var(&protect, "protect", "protect maps matching `KIND:VALUE`: id:ID, name:NAME, pin:PATH, program:NAME or program_id:ID (repeatable)")
	var pids, mapIDs uintList
	var names, events stringList
	fs.Var(&pids, "pid", "report only calls by these process `IDs` (thread group ids; comma-separated or repeated)")
	fs.Var(&mapIDs, "map-id", "report only events on these map `IDs` (comma-separated or repeated)")
	fs.Var(&names, "map-name", "report only events on maps with these `NAMES` (names are chosen by map creators: not an identity)")
	fs.Var(&events, "event", "report only these event `TYPES`: "+strings.Join(event.Names(), ", "))
	fs.Usage = usageFunc(fs, `Usage: bpfmon watch [flags]

Streams every bpf(2) call that changes a map or obtains a handle to one,
every write a BPF program makes to a map (where the kernel allows a hook),
and changes found by reading map contents, until SIGINT or SIGTERM; then
drains, prints a summary on stderr and exits 0. If the reader of its output
goes away (bpfmon watch | head), it stops within a second and exits 4; if
the output file cannot be written (a full disk), it goes on, counts what it
could not write and reports it as a lost event (source output) once it can.
SIGHUP reopens --output and loads --policy again (a file that does not load
keeps the policy in force); it never ends bpfmon.`)
	if code, stop := parse(fs, args, stdout, stderr); stop {
		return code
	}

	eventTypes, err := event.ParseTypes(events)
	if err != nil {
		fmt.Fprintf(stderr, "bpfmon watch: %v\n", err)
		return exitUsage
	}
	ringBytes, err := parseSize(*ring)
	if err != nil || ringBytes < 4<<10 || ringBytes > 1<<30 {
		fmt.Fprintf(stderr, "bpfmon watch: invalid --ring-buffer %q: want a size between 4K and 1G\n", *ring)
		return exitUsage
	}
	if *capture < 1 || *capture > record.MaxCapture {
		fmt.Fprintf(stderr, "bpfmon watch: invalid --capture-bytes %d: want 1 to %d\n", *capture, record.MaxCapture)
		return exitUsage
	}

	switch *format {
	case "auto", "json", "text":
	default:
		fmt.Fprintf(stderr, "bpfmon watch: unknown --format %q: want text, json or auto\n", *format)
		return exitUsage
	}

	budget, err := parseSize(*scanBudget)
	if err != nil {
		fmt.Fprintf(stderr, "bpfmon watch: invalid --scan-budget %q: want bytes per second, with K/M/G suffix (0: unlimited)\n", *scanBudget)
		return exitUsage
	}
	memory, err := parseSize(*scanMemory)
	if err != nil {
		fmt.Fprintf(stderr, "bpfmon watch: invalid --scan-memory %q: want a size, with K/M/G suffix\n", *scanMemory)
		return exitUsage
	}
	if *scanInterval < 0 {
		fmt.Fprintf(stderr, "bpfmon watch: invalid --scan-interval %v: want 0 (scanner off) or a positive duration\n", *scanInterval)
		return exitUsage
	}
	if *scanMaxKeyed < 1 {
		fmt.Fprintf(stderr, "bpfmon watch: invalid --scan-max-keyed %d: want at least 1\n", *scanMaxKeyed)
		return exitUsage
	}
	if *statePath != "" {
		if *scanInterval == 0 {
			fmt.Fprintln(stderr, "bpfmon watch: --state needs the content scanner, which --scan-interval 0 turns off")
			return exitUsage
		}
	}
	// Every file the command line names, before the policy is read and
	// any probe loads.
	files := watchFiles{output: *outPath, state: *statePath, policy: *policyPath, ready: *ready, cpuProfile: *cpuProfile}
	if err := files.check(); err != nil {
		fmt.Fprintf(stderr, "bpfmon watch: %v\n", err)
		return exitUsage
	}
	hookBuild, err := bpfsyscall.ParseHook(*hook)
	if err != nil {
		fmt.Fprintf(stderr, "bpfmon watch: %v\n", err)
		return exitUsage
	}
	kernelMode, err := kernelwrite.ParseMode(*kernelHooks)
	if err != nil {
		fmt.Fprintf(stderr, "bpfmon watch: %v\n", err)
		return exitUsage
	}
	kernelWritesMode, err := kernelwrite.ParseWrites(*kernelWrites)
	if err != nil {
		fmt.Fprintf(stderr, "bpfmon watch: %v\n", err)
		return exitUsage
	}

	var level slog.Level
	switch *logLevel {
	case "debug", "info", "warn", "error":
		level.UnmarshalText([]byte(*logLevel))
	default:
		fmt.Fprintf(stderr, "bpfmon watch: unknown --log-level %q: want debug, info, warn or error\n", *logLevel)
		return exitUsage
	}
	logOpts := &slog.HandlerOptions{Level: level}
	var logger *slog.Logger
	switch *logFormat {
	case "text":
		logger = slog.New(slog.NewTextHandler(stderr, logOpts))
	case "json":
		logger = slog.New(slog.NewJSONHandler(stderr, logOpts))
	default:
		fmt.Fprintf(stderr, "bpfmon watch: unknown --log-format %q: want text or json\n", *logFormat)
		return exitUsage
	}

	pol := policy.Default()
	if *policyPath != "" {
		if pol, err = policy.Load(*policyPath); err != nil {
			fmt.Fprintf(stderr, "bpfmon watch: %v\n", err)
			return exitUsage
		}
	}
	pol.AddProtect(protect...)

	maxSize, err := parseSize(*outMaxSize)
	switch {
	case err != nil || maxSize%outfile.MiB != 0:
		fmt.Fprintf(stderr, "bpfmon watch: invalid --output-max-size %q: want a whole number of MiB, such as 10M or 1G, or 0\n", *outMaxSize)
		return exitUsage
	case maxSize > 0 && (*outPath == "" || isStdout(*outPath)):
		fmt.Fprintf(stderr, "bpfmon watch: --output-max-size rotates the --output file: give --output FILE\n")
		return exitUsage
	case *outMaxFiles < 0:
		fmt.Fprintf(stderr, "bpfmon watch: invalid --output-max-files %d: want 0 (keep all) or more\n", *outMaxFiles)
		return exitUsage
	}

	if *syslogURL != "" {
		if _, _, err := syslogout.Parse(*syslogURL); err != nil {
			fmt.Fprintf(stderr, "bpfmon watch: invalid --syslog %v\n", err)
			return exitUsage
		}
	}
	if *metricsAddr != "" {
		if err := metrics.CheckAddr(*metricsAddr); err != nil {
			fmt.Fprintf(stderr, "bpfmon watch: invalid --metrics-addr %v\n", err)
			return exitUsage
		}
	}

	// One monitor per host, said before anything is bound or loaded.
	// The environment's default is read here, not as the flag's default,
	// so that the reference and --help show the real one.
	if v := os.Getenv(lockEnv); v != "" && !flagSet(fs, "lock-file") {
		*lockFile = v
	}
	if ok, err := lockWatch(*lockFile); errors.Is(err, errLocked) {
		fmt.Fprintf(stderr, "bpfmon watch: %v\n", err)
		return exitError
	} else if !ok {
		logger.Warn("running without the one-monitor lock: "+err.Error()+"; a second bpfmon watch would not be refused", "lock_file", *lockFile)
	}

	// Bound before any probe loads: an address in use stops bpfmon at
	// once. The server stops after the watch's final flush, so a last
	// scrape can see the final counts.
	var mets *metrics.Metrics
	if *metricsAddr != "" {
		ln, err := metrics.Listen(*metricsAddr)
		if err != nil {
			fmt.Fprintf(stderr, "bpfmon watch: --metrics-addr: %v\n", err)
			return exitError
		}
		mets = metrics.New(version)
		srv := mets.Serve(ln)
		// Tests and people who asked for port 0 read the address here.
		logger.Info("metrics: serving /metrics and /healthz", "addr", srv.Addr().String())
		defer func() {
			if err := srv.Shutdown(2 * time.Second); err != nil {
				logger.Warn("metrics: stopping the server: "+err.Error(), "part", "metrics")
			}
		}()
	}

	// Opened last: a command line refused above leaves no file behind.
	var out io.Writer = stdout
	var outFile *outfile.File
	if *outPath != "" && !isStdout(*outPath) {
		f, err := outfile.Open(*outPath, int64(maxSize), *outMaxFiles)
		if err != nil {
			fmt.Fprintf(stderr, "bpfmon watch: --output: %v\n", err)
			if errors.Is(err, outfile.ErrRefused) {
				return exitUsage
			}
			return exitError
		}
		defer f.Close()
		out, outFile = f, f
	}
	if *format == "auto" {
		*format = "json"
		if f, ok := out.(*os.File); ok && isTerminal(f) {
			*format = "text"
		}
	}

	stop := make(chan struct{})
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	// A closed pipe is an error to handle (EPIPE), not a death: bpfmon
	// then stops and says what it could not write.
	signal.Ignore(syscall.SIGPIPE)
	// SIGHUP reopens the output (logrotate moves the file away, then
	// asks for a new one) and loads the policy again; it never ends
	// bpfmon.
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			if outFile != nil {
				if err := outFile.Reopen(); err != nil {
					logger.Error(err.Error(), "part", "output")
				} else {
					logger.Info("output reopened (SIGHUP)", "path", *outPath)
				}
			}
			select {
			case reload <- struct{}{}:
			default: // one pending is enough
			}
		}
	}()
	go func() {
		<-sig
		sdnotify.Notify(sdnotify.Stopping)
		close(stop)
		<-sig
		logger.Warn("second signal: exiting without draining")
		os.Exit(exitError)
	}()

	if limit, warning := watch.SetMemoryLimit(int64(memory), int64(ringBytes)); warning != "" {
		logger.Warn(warning, "go_memory_limit", limit)
	}
	opts := watch.Options{
		Format:       *format,
		Out:          out,
		Log:          logger,
		ReadyFile:    *ready,
		CaptureBytes: *capture,
		RingBytes:    ringBytes,
		Hook:         hookBuild,
		KernelHooks:  kernelMode,
		KernelWrites: kernelWritesMode,
		ScanInterval: *scanInterval,
		ScanMaxKeyed: *scanMaxKeyed,
		ScanBudget:   int64(budget),
		StatePath:    *statePath,
		ScanMemory:   int64(memory),
		Policy:       pol,
		AlertsOnly:   *alertsOnly,
		Enforce:      *enforce,
		Metrics:      mets,
		Reload:       reload,
		PolicyPath:   *policyPath,
		Protect:      protect,
		Filter: watch.Filter{
			PIDs:     pids,
			MapIDs:   mapIDs,
			MapNames: names,
			Events:   eventTypes,
		},
	}
	if *cpuProfile != "" {
		f, err := outfile.Create(*cpuProfile, true)
		if err != nil {
			fmt.Fprintf(stderr, "bpfmon watch: --cpu-profile: %v\n", err)
			return exitUsage
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "bpfmon watch: --cpu-profile: %v\n", err)
			return exitError
		}
		defer pprof.StopCPUProfile()
	}
	podCfg := pods.Config{Socket: *criSocket, Log: logger}
	if mets != nil {
		podCfg.Miss = mets.PodMiss
	}
	podNames := pods.New(podCfg)
	defer podNames.Close()
	if f := podNames.Feature(); *criSocket != "" && *criSocket != "off" && !f.Available {
		logger.Warn("--cri-socket: "+f.Detail+"; events name the pod uid from the cgroup path only", "part", "pods")
	}
	opts.Pods = podNames
	opts.Features = append(opts.Features, podNames.Feature())
	var syslogW *syslogout.Writer
	if *syslogURL != "" {
		cfg := syslogout.Config{URL: *syslogURL, Log: logger}
		if mets != nil {
			cfg.Lost = mets.OutputLost
		}
		if syslogW, err = syslogout.New(cfg); err != nil {
			fmt.Fprintf(stderr, "bpfmon watch: --syslog: %v\n", err)
			return exitUsage
		}
		opts.Also = syslogW
	}
	sum, err := watch.Run(opts, stop)
	if syslogW != nil {
		// What the receiver has not acknowledged within the time is
		// counted lost, before the last scrape.
		delivered, lost := syslogW.Close(syslogDrain)
		logger.Info("syslog: stopped", "part", "output", "delivered", delivered, "lost", lost)
	}
	if errors.Is(err, watch.ErrOutputClosed) {
		logger.Warn(sum.String()+" ("+err.Error()+")", "events", sum.Events, "not_written", sum.NotWritten, "lost", sum.Lost, "alerts", sum.Alerts)
		return exitOutputClosed
	}
	if err != nil {
		logger.Error("bpfmon watch: " + err.Error())
		if errors.Is(err, sensor.ErrUnavailable) {
			return exitUnavailable
		}
		return exitError
	}
	logger.Info(sum.String(), "events", sum.Events, "not_written", sum.NotWritten, "lost", sum.Lost, "alerts", sum.Alerts)
	return exitOK
}

// syslogDrain is how long a stopping watch waits for the syslog
// receiver to take what is queued.
const syslogDrain = 5 * time.Second

func runMapwriter(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mapwriter", flag.ContinueOnError)
	interval := fs.Duration("interval", time.Second, "time between writes")
	count := fs.Int("count", 0, "stop after `N` rounds (0: until SIGINT/SIGTERM)")
	fs.Usage = usageFunc(fs, `Usage: bpfmon mapwriter [flags]

Creates an array map "bpfmon_demo" and, every interval, writes it from user
space (bpf(2) BPF_MAP_UPDATE_ELEM) and from a BPF program (the
bpf_map_update_elem helper, run with BPF_PROG_TEST_RUN), printing what it did.
Run 'bpfmon watch' in another terminal to see the events.`)
	if code, stop := parse(fs, args, stdout, stderr); stop {
		return code
	}
	if *interval <= 0 || *count < 0 {
		fmt.Fprintln(stderr, "bpfmon mapwriter: --interval must be positive and --count not negative")
		return exitUsage
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	if err := mapwriter.Run(ctx, mapwriter.Config{Interval: *interval, Count: *count, Out: stdout}); err != nil {
		fmt.Fprintf(stderr, "bpfmon mapwriter: %v\n", err)
		return exitError
	}
	return exitOK
}

func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return "not a regular file"
}

// checkDir: the directory path is to be created in exists.
func checkDir(path string) error {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("cannot create %s: %w", path, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("cannot create %s: %s is not a directory", path, dir)
	}
	return nil
}

// raiseNoFile raises the soft limit on open files to the hard limit:
// the content scanner holds a descriptor for each map it reads, and
// the sensors one per program and link, on hosts where the default soft
// limit (1024) is too low for them. (Go's runtime does the same at
// start since Go 1.19; said here, as bpfmon depends on it.)
func raiseNoFile() {
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	}
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// parseSize parses "4096", "64K", "32M", "1G".
func parseSize(s string) (int, error) {
	mult := 1
	switch {
	case strings.HasSuffix(s, "K"), strings.HasSuffix(s, "k"):
		mult = 1 << 10
	case strings.HasSuffix(s, "M"), strings.HasSuffix(s, "m"):
		mult = 1 << 20
	case strings.HasSuffix(s, "G"), strings.HasSuffix(s, "g"):
		mult = 1 << 30
	}
	if mult != 1 {
		s = s[:len(s)-1]
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > (1<<31)/mult {
		return 0, fmt.Errorf("invalid size")
	}
	return n * mult, nil
}

// stringList collects comma-separated or repeated names. An empty name
// is an error, not "all": a script that expands an empty variable into
// --event "" must not silently watch everything.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s == "" {
			return fmt.Errorf("empty name in %q", v)
		}
		*l = append(*l, s)
	}
	return nil
}

// selectorList collects --protect selectors.
type selectorList []policy.Selector

func (l *selectorList) String() string {
	var s []string
	for _, sel := range *l {
		s = append(s, sel.String())
	}
	return strings.Join(s, " ")
}

func (l *selectorList) Set(v string) error {
	sel, err := policy.ParseSelector(v)
	if err != nil {
		// The flag package names the flag and the value already.
		msg := err.Error()
		if _, rest, ok := strings.Cut(msg, `": `); ok {
			msg = rest
		}
		return errors.New(msg)
	}
	*l = append(*l, sel)
	return nil
}

type uintList []uint32

func (l *uintList) String() string {
	var s []string
	for _, v := range *l {
		s = append(s, strconv.FormatUint(uint64(v), 10))
	}
	return strings.Join(s, ",")
}

// Set takes ids from 1 to 2^32-1: the kernel gives no process or map id 0.
func (l *uintList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		n, err := strconv.ParseUint(s, 10, 32)
		switch {
		case s == "":
			return fmt.Errorf("empty id in %q", v)
		case errors.Is(err, strconv.ErrRange) || (err == nil && n == 0):
			return fmt.Errorf("%q is out of range: want 1 to 4294967295", s)
		case err != nil:
			return fmt.Errorf("%q is not a number", s)
		}
		*l = append(*l, uint32(n))
	}
	return nil
}
