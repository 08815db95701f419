package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/metrics"
	"github.com/bpfmon/bpfmon/internal/outfile"
	"github.com/bpfmon/bpfmon/internal/pods"
	"github.com/bpfmon/bpfmon/internal/policy"
	"github.com/bpfmon/bpfmon/internal/scanner"
	"github.com/bpfmon/bpfmon/internal/sdnotify"
	"github.com/bpfmon/bpfmon/internal/sensor/bpfsyscall"
	"github.com/bpfmon/bpfmon/internal/sensor/kernelwrite"
	"github.com/bpfmon/bpfmon/internal/sensor/record"
	"github.com/bpfmon/bpfmon/internal/syslogout"
	"github.com/bpfmon/bpfmon/internal/watch"
)

// watchFlags is bpfmon watch's command line as given: one field a flag,
// bound by flagSet. Nothing here is checked; Validate does that.
type watchFlags struct {
	format, outPath, outMaxSize string
	outMaxFiles                 int
	syslogURL, criSocket        string
	ready                       string
	capture                     int
	ring                        string
	scanInterval                time.Duration
	scanMaxKeyed                int
	scanBudget, scanMemory      string
	statePath                   string
	hook                        string
	logFormat, logLevel         string
	cpuProfile                  string
	kernelHooks, kernelWrites   string
	policyPath                  string
	alertsOnly                  bool
	metricsAddr                 string
	metricsPodLabels            bool
	lockFile                    string
	enforce                     bool
	protect                     selectorList
	pids, mapIDs                uintList
	names, events               stringList
	// lockFileSet: --lock-file was given (else $BPFMON_LOCK_FILE, when
	// set, names the lock).
	lockFileSet bool
}

// watchOptions are bpfmon watch's options: the flags, and what Validate
// made of them. The command line is parsed (flagSet), validated
// (Validate), and only then does anything start (startWatch).
type watchOptions struct {
	watchFlags
	eventTypes       []event.Type
	ringBytes        int
	budget, memory   int
	maxSize          int
	hookBuild        bpfsyscall.Hook
	kernelMode       kernelwrite.Mode
	kernelWritesMode kernelwrite.Writes
	logLevel         slog.Level
	policy           *policy.Policy
	statusFD         int // $BPFMON_STATUS_FD, -1 without
}

// codedError ends a command with its exit code; the command prints it as
// "bpfmon COMMAND: " and its text.
type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

// usageError is a command line refused: exit 2.
func usageError(format string, a ...any) error {
	return &codedError{code: exitUsage, err: fmt.Errorf(format, a...)}
}

// runtimeError is a failure to start what the command line asks: exit 1.
func runtimeError(format string, a ...any) error {
	return &codedError{code: exitError, err: fmt.Errorf(format, a...)}
}

// exitCode prints err as command's and returns its code: a
// *codedError's, else exitError.
func exitCode(stderr io.Writer, command string, err error) int {
	fmt.Fprintf(stderr, "bpfmon %s: %v\n", command, err)
	var ee *codedError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitError
}

// flagSet is watch's flag set, bound to o's fields.
func (o *watchOptions) flagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	fs.StringVar(&o.format, "format", "auto", "output format: text, json (one object per line), or auto (text on a terminal, json otherwise)")
	fs.StringVar(&o.outPath, "output", "", "write events to `FILE` (created with mode 0600, never through a link; an existing one must be a regular file of bpfmon's user that others cannot write; default, - or /dev/stdout: standard output); SIGHUP reopens it (logrotate)")
	fs.StringVar(&o.outMaxSize, "output-max-size", "0", "rotate --output once it would grow past `SIZE` (whole MiB: 10M, 1G; 0: never); the file is then appended to, not truncated")
	fs.IntVar(&o.outMaxFiles, "output-max-files", 5, "with --output-max-size: keep `N` rotated files (0: all)")
	fs.StringVar(&o.syslogURL, "syslog", "", "also send every event written to `URL` as an RFC 5424 syslog message (tcp://HOST:PORT with octet counting, relp://HOST:PORT with the receiver's acknowledgements, udp://HOST:PORT, or unix:///PATH): never waits for the receiver, reconnects with backoff, counts what it cannot deliver (bpfmon_lost_events_total{source=\"output\"}) and reports it there as a lost event once back")
	fs.StringVar(&o.criSocket, "cri-socket", "", "name the Kubernetes pod of processes in containers (process.pod) by asking the container runtime's CRI socket at `PATH` (default: the first of "+strings.Join(pods.DefaultSockets, ", ")+" that answers; off: none, the pod uid from the cgroup path only); never waits for it")
	fs.StringVar(&o.ready, "ready-file", "", "write bpfmon's pid to `FILE` once all probes are attached and the state at start is recorded")
	fs.IntVar(&o.capture, "capture-bytes", record.DefaultCapture, fmt.Sprintf("capture at most `N` bytes of each key and value (1-%d)", record.MaxCapture))
	fs.StringVar(&o.ring, "ring-buffer", defaultRing, "kernel ring buffer `SIZE` (bytes, or with K/M/G suffix)")
	fs.DurationVar(&o.scanInterval, "scan-interval", scanner.DefaultInterval, "content scanner: read and compare every map this often (0 turns it off)")
	fs.IntVar(&o.scanMaxKeyed, "scan-max-keyed", scanner.DefaultMaxKeyed, "content scanner: report at most `N` changed keys per map and pass, then one summary")
	fs.StringVar(&o.scanBudget, "scan-budget", "32M", "content scanner: read at most `SIZE` bytes per second (K/M/G suffix; 0: unlimited)")
	fs.StringVar(&o.scanMemory, "scan-memory", defaultScanMemory, "content scanner: hold at most `SIZE` of snapshots and comparisons; larger maps are compared by hashes (old values then unknown), then per range of keys or as a whole (docs/memory.md); it sets Go's memory limit, with the ring buffer")
	fs.StringVar(&o.statePath, "state", "", "content scanner: save each pass to `FILE` and, at start, report what changed while bpfmon was not running, the gap, and holders of protected maps that are not their saved owners")
	fs.StringVar(&o.hook, "hook", "auto", "syscall sensor build: auto (the first the kernel loads of fentry, tp_btf, raw_tracepoint), fentry (trampolines on the bpf syscall and map mmaps only), tp_btf or raw_tracepoint (raw_syscalls: every syscall)")
	fs.StringVar(&o.logFormat, "log-format", "text", "diagnostics on stderr: text (key=value) or json (one object per line), both from log/slog")
	fs.StringVar(&o.watchFlags.logLevel, "log-level", "info", "diagnostics on stderr from this level on: debug (adds one line per content scanner pass), info, warn or error")
	fs.StringVar(&o.cpuProfile, "cpu-profile", "", "write a Go CPU profile of bpfmon itself to `FILE` until it stops (for go tool pprof; to report a performance problem)")
	fs.StringVar(&o.kernelHooks, "kernel-hooks", "auto", "kernel-side sensor (writes by BPF programs): auto (fexit where the kernel allows, else kprobes, else none), fexit, kprobe, or off")
	fs.StringVar(&o.kernelWrites, "kernel-writes", "selective", "kernel-side sensor: selective (every write to a protected map or one chosen with --map-id, and each program's first write to any map; a known program's later writes to other maps are counted in the kernel and summarised as map_writes_counted) or all (every write, itemized: costly beside busy tools)")
	fs.StringVar(&o.policyPath, "policy", "", "tamper-alert policy `FILE` (YAML: protected maps, owners, rules; see docs/alerts.md); SIGHUP loads it again (a broken file keeps the policy in force)")
	fs.BoolVar(&o.alertsOnly, "alerts-only", false, "write only events that carry an alert (and lost events)")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "serve Prometheus metrics on /metrics and readiness on /healthz at `HOST:PORT` (:9567: every interface; port 0: a free port, logged); off by default")
	fs.BoolVar(&o.metricsPodLabels, "metrics-pod-labels", false, "also count alerts by the namespace and pod of the process (bpfmon_alerts_by_pod_total; at most 64 namespaces and 256 pods, the rest \"other\"); needs --metrics-addr; off by default")
	fs.StringVar(&o.lockFile, "lock-file", defaultLockFile, "take the lock of one bpfmon watch per host at `FILE` ($"+lockEnv+" sets the default); a second watch is refused, naming the first's pid")
	fs.BoolVar(&o.enforce, "enforce", false, "refuse write access to protected maps to processes that do not own them (BPF LSM, else fmod_ret on the security_ functions; exits 3 where the kernel allows neither)")
	fs.Var(&o.protect, "protect", "protect maps matching `KIND:VALUE`: id:ID, name:NAME, pin:PATH, program:NAME or program_id:ID (repeatable)")
	fs.Var(&o.pids, "pid", "report only calls by these process `IDs` (thread group ids; comma-separated or repeated)")
	fs.Var(&o.mapIDs, "map-id", "report only events on these map `IDs` (comma-separated or repeated)")
	fs.Var(&o.names, "map-name", "report only events on maps with these `NAMES` (names are chosen by map creators: not an identity)")
	fs.Var(&o.events, "event", "report only these event `TYPES`: "+strings.Join(event.Names(), ", "))
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
	return fs
}

// Validate holds every rule of watch's command line, one flag's value or
// several flags together, and records what it parsed. It reads the files
// the command line names (the policy; whether the others may be used) but
// creates none and loads nothing: a command line it refuses (exit 2)
// leaves no trace. The first rule broken is the error.
func (o *watchOptions) Validate() error {
	if err := o.validateSizes(); err != nil {
		return err
	}
	if err := o.validateScanner(); err != nil {
		return err
	}
	// Every file the command line names, before the policy is read and
	// any probe loads.
	files := watchFiles{output: o.outPath, state: o.statePath, policy: o.policyPath, ready: o.ready, cpuProfile: o.cpuProfile}
	if err := files.check(); err != nil {
		return usageError("%w", err)
	}
	if err := o.validateSensors(); err != nil {
		return err
	}
	if err := o.validateLog(); err != nil {
		return err
	}
	if err := o.validateStatusFD(); err != nil {
		return err
	}
	o.policy = policy.Default()
	if o.policyPath != "" {
		var err error
		if o.policy, err = policy.Load(o.policyPath); err != nil {
			return usageError("%w", err)
		}
	}
	o.policy.AddProtect(o.protect...)
	return o.validateOutput()
}

// validateSizes: the events chosen, the ring buffer, the capture and the
// output format.
func (o *watchOptions) validateSizes() error {
	var err error
	if o.eventTypes, err = event.ParseTypes(o.events); err != nil {
		return usageError("%w", err)
	}
	o.ringBytes, err = parseSize(o.ring)
	if err != nil || o.ringBytes < 4<<10 || o.ringBytes > 1<<30 {
		return usageError("invalid --ring-buffer %q: want a size between 4K and 1G", o.ring)
	}
	if o.capture < 1 || o.capture > record.MaxCapture {
		return usageError("invalid --capture-bytes %d: want 1 to %d", o.capture, record.MaxCapture)
	}
	switch o.format {
	case "auto", "json", "text":
	default:
		return usageError("unknown --format %q: want text, json or auto", o.format)
	}
	return nil
}

// validateScanner: the content scanner's flags, and --state, which needs it.
func (o *watchOptions) validateScanner() error {
	var err error
	if o.budget, err = parseSize(o.scanBudget); err != nil {
		return usageError("invalid --scan-budget %q: want bytes per second, with K/M/G suffix (0: unlimited)", o.scanBudget)
	}
	if o.memory, err = parseSize(o.scanMemory); err != nil {
		return usageError("invalid --scan-memory %q: want a size, with K/M/G suffix", o.scanMemory)
	}
	if o.scanInterval < 0 {
		return usageError("invalid --scan-interval %v: want 0 (scanner off) or a positive duration", o.scanInterval)
	}
	if o.scanMaxKeyed < 1 {
		return usageError("invalid --scan-max-keyed %d: want at least 1", o.scanMaxKeyed)
	}
	if o.statePath != "" && o.scanInterval == 0 {
		return usageError("--state needs the content scanner, which --scan-interval 0 turns off")
	}
	return nil
}

// validateSensors: the builds and modes of the sensors.
func (o *watchOptions) validateSensors() error {
	var err error
	if o.hookBuild, err = bpfsyscall.ParseHook(o.hook); err != nil {
		return usageError("%w", err)
	}
	if o.kernelMode, err = kernelwrite.ParseMode(o.kernelHooks); err != nil {
		return usageError("%w", err)
	}
	if o.kernelWritesMode, err = kernelwrite.ParseWrites(o.kernelWrites); err != nil {
		return usageError("%w", err)
	}
	return nil
}

// validateLog: the diagnostics' level and format.
func (o *watchOptions) validateLog() error {
	switch o.watchFlags.logLevel {
	case "debug", "info", "warn", "error":
		o.logLevel.UnmarshalText([]byte(o.watchFlags.logLevel))
	default:
		return usageError("unknown --log-level %q: want debug, info, warn or error", o.watchFlags.logLevel)
	}
	switch o.logFormat {
	case "text", "json":
	default:
		return usageError("unknown --log-format %q: want text or json", o.logFormat)
	}
	return nil
}

// statusEnv names a descriptor bpfmon watch tells its progress on, one
// line a step: "ready scanner=on" (or off) once ready, then "scan_pass N"
// after each content scanner pass. For tests and supervisors that start
// bpfmon and wait for it; the log's lines are for people.
const statusEnv = "BPFMON_STATUS_FD"

// validateStatusFD: $BPFMON_STATUS_FD, when set, names an open
// descriptor other than standard input, output and error.
func (o *watchOptions) validateStatusFD() error {
	o.statusFD = -1
	v, ok := os.LookupEnv(statusEnv)
	if !ok {
		return nil
	}
	fd, err := strconv.Atoi(v)
	if err == nil && fd > 2 {
		_, err = unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	}
	if err != nil || fd <= 2 {
		return usageError("%s=%q: want the number of a descriptor bpfmon inherits open, 3 or more (or leave it unset)", statusEnv, v)
	}
	o.statusFD = fd
	return nil
}

// validateOutput: the output's rotation, and the metrics address.
func (o *watchOptions) validateOutput() error {
	var err error
	o.maxSize, err = parseSize(o.outMaxSize)
	switch {
	case err != nil || o.maxSize%outfile.MiB != 0:
		return usageError("invalid --output-max-size %q: want a whole number of MiB, such as 10M or 1G, or 0", o.outMaxSize)
	case o.maxSize > 0 && (o.outPath == "" || isStdout(o.outPath)):
		return usageError("--output-max-size rotates the --output file: give --output FILE")
	case o.outMaxFiles < 0:
		return usageError("invalid --output-max-files %d: want 0 (keep all) or more", o.outMaxFiles)
	}
	if o.metricsAddr != "" {
		if err := metrics.CheckAddr(o.metricsAddr); err != nil {
			return usageError("invalid --metrics-addr %w", err)
		}
	}
	if o.metricsPodLabels && o.metricsAddr == "" {
		return usageError("--metrics-pod-labels labels the metrics --metrics-addr serves: give --metrics-addr HOST:PORT too")
	}
	if o.syslogURL != "" {
		if _, _, err := syslogout.Parse(o.syslogURL); err != nil {
			return usageError("invalid --syslog %v", err)
		}
	}
	return nil
}

// logger is the diagnostics' logger on stderr, as the validated
// --log-level and --log-format ask.
func (o *watchOptions) logger(stderr io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: o.logLevel}
	if o.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(stderr, opts))
	}
	return slog.New(slog.NewTextHandler(stderr, opts))
}

// watchRun is a validated command line started: what watch.Run needs and
// what is to be undone after it, in the order startWatch makes them.
type watchRun struct {
	log      *slog.Logger
	opts     watch.Options
	stop     chan struct{}
	outFile  *outfile.File
	hup      <-chan os.Signal
	cleanups []func() // run last first
}

// close undoes what startWatch did, last first.
func (w *watchRun) close() {
	for i := len(w.cleanups) - 1; i >= 0; i-- {
		w.cleanups[i]()
	}
}

// startWatch takes the one-monitor lock, binds the metrics server, opens
// the output, sets up the signals and starts the CPU profile, in this
// order: one monitor per host is said before anything is bound, an
// address in use stops bpfmon before any probe loads, and the output is
// opened last, so that a command line refused leaves no file behind.
// On an error, what it did is undone already.
func (o *watchOptions) startWatch(stdout, stderr io.Writer, hup <-chan os.Signal) (*watchRun, error) {
	w := &watchRun{log: o.logger(stderr), stop: make(chan struct{}), hup: hup}
	steps := []func(*watchRun, io.Writer) error{o.lock, o.serveMetrics, o.openOutput, o.signals, o.memoryLimit, o.startProfile, o.openStatus, o.podNames, o.openSyslog}
	for _, step := range steps {
		if err := step(w, stdout); err != nil {
			w.close()
			return nil, err
		}
	}
	return w, nil
}

// lock: one monitor per host, said before anything is bound or loaded.
// The environment's default is read here, not as the flag's default, so
// that the reference and --help show the real one.
func (o *watchOptions) lock(w *watchRun, _ io.Writer) error {
	if v := os.Getenv(lockEnv); v != "" && !o.lockFileSet {
		o.lockFile = v
	}
	if ok, err := lockWatch(o.lockFile); errors.Is(err, errLocked) {
		return &codedError{code: exitError, err: err}
	} else if !ok {
		w.log.Warn("running without the one-monitor lock: "+err.Error()+"; a second bpfmon watch would not be refused", "lock_file", o.lockFile)
	}
	return nil
}

// serveMetrics binds --metrics-addr before any probe loads: an address
// in use stops bpfmon at once. The server stops after the watch's final
// flush, so a last scrape can see the final counts.
func (o *watchOptions) serveMetrics(w *watchRun, _ io.Writer) error {
	if o.metricsAddr == "" {
		return nil
	}
	ln, err := metrics.Listen(o.metricsAddr)
	if err != nil {
		return runtimeError("--metrics-addr: %w", err)
	}
	w.opts.Metrics = metrics.New(version)
	if o.metricsPodLabels {
		w.opts.Metrics.PodLabels()
	}
	srv := w.opts.Metrics.Serve(ln)
	// Tests and people who asked for port 0 read the address here.
	w.log.Info("metrics: serving /metrics and /healthz", "addr", srv.Addr().String())
	w.cleanups = append(w.cleanups, func() {
		if err := srv.Shutdown(2 * time.Second); err != nil {
			w.log.Warn("metrics: stopping the server: "+err.Error(), "part", "metrics")
		}
	})
	return nil
}

// openOutput opens --output (standard output without one) and settles
// --format auto.
func (o *watchOptions) openOutput(w *watchRun, stdout io.Writer) error {
	w.opts.Out = stdout
	if o.outPath != "" && !isStdout(o.outPath) {
		f, err := outfile.Open(o.outPath, int64(o.maxSize), o.outMaxFiles)
		if err != nil {
			if errors.Is(err, outfile.ErrRefused) {
				return usageError("--output: %w", err)
			}
			return runtimeError("--output: %w", err)
		}
		w.cleanups = append(w.cleanups, func() { f.Close() })
		w.opts.Out, w.outFile = f, f
	}
	if o.format == "auto" {
		o.format = "json"
		if f, ok := w.opts.Out.(*os.File); ok && isTerminal(f) {
			o.format = "text"
		}
	}
	return nil
}

// signals: SIGINT and SIGTERM stop the watch (a second one ends bpfmon
// without draining); a closed pipe is an error to handle (EPIPE), not a
// death: bpfmon then stops and says what it could not write; SIGHUP
// reopens the output and loads the policy again.
func (o *watchOptions) signals(w *watchRun, _ io.Writer) error {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	signal.Ignore(syscall.SIGPIPE)
	reload := make(chan struct{}, 1)
	w.opts.Reload = reload
	go w.reopenOnHUP(reload, o.outPath)
	go func() {
		<-sig
		sdnotify.Notify(sdnotify.Stopping)
		close(w.stop)
		<-sig
		w.log.Warn("second signal: exiting without draining")
		os.Exit(exitError)
	}()
	return nil
}

// reopenOnHUP: SIGHUP reopens the output (logrotate moves the file away,
// then asks for a new one) and loads the policy again; it never ends
// bpfmon.
func (w *watchRun) reopenOnHUP(reload chan<- struct{}, path string) {
	for range w.hup {
		if w.outFile != nil {
			if err := w.outFile.Reopen(); err != nil {
				w.log.Error(err.Error(), "part", "output")
			} else {
				w.log.Info("output reopened (SIGHUP)", "path", path)
			}
		}
		select {
		case reload <- struct{}{}:
		default: // one pending is enough
		}
	}
}

// memoryLimit sets Go's memory limit from --scan-memory and the ring
// buffer (docs/memory.md).
func (o *watchOptions) memoryLimit(w *watchRun, _ io.Writer) error {
	if limit, warning := watch.SetMemoryLimit(int64(o.memory), int64(o.ringBytes)); warning != "" {
		w.log.Warn(warning, "go_memory_limit", limit)
	}
	return nil
}

// startProfile starts --cpu-profile's profile, stopped when the watch is.
func (o *watchOptions) startProfile(w *watchRun, _ io.Writer) error {
	if o.cpuProfile == "" {
		return nil
	}
	f, err := outfile.Create(o.cpuProfile, true)
	if err != nil {
		return usageError("--cpu-profile: %w", err)
	}
	w.cleanups = append(w.cleanups, func() { f.Close() })
	if err := pprof.StartCPUProfile(f); err != nil {
		return runtimeError("--cpu-profile: %w", err)
	}
	w.cleanups = append(w.cleanups, pprof.StopCPUProfile)
	return nil
}

// openStatus: the status descriptor ($BPFMON_STATUS_FD), told each
// watch.Status as a line. A line it cannot write is said in the log and
// the watch goes on.
func (o *watchOptions) openStatus(w *watchRun, _ io.Writer) error {
	if o.statusFD < 0 {
		return nil
	}
	unix.CloseOnExec(o.statusFD)
	f := os.NewFile(uintptr(o.statusFD), statusEnv)
	w.cleanups = append(w.cleanups, func() { f.Close() })
	var mu sync.Mutex
	w.opts.Status = func(st watch.Status) {
		var line string
		switch st.Kind {
		case watch.StatusReady:
			line = "ready scanner=off\n"
			if st.Scanner {
				line = "ready scanner=on\n"
			}
		case watch.StatusScanPass:
			line = "scan_pass " + strconv.Itoa(st.Pass) + "\n"
		default:
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if _, err := io.WriteString(f, line); err != nil {
			w.log.Warn("writing the status line: "+err.Error(), statusEnv, o.statusFD)
		}
	}
	return nil
}

// podNames: the pod of processes in containers, from the runtime's CRI
// (--cri-socket); it never waits for the runtime.
func (o *watchOptions) podNames(w *watchRun, _ io.Writer) error {
	cfg := pods.Config{Socket: o.criSocket, Log: w.log}
	if m := w.opts.Metrics; m != nil {
		cfg.Miss = m.PodMiss
	}
	names := pods.New(cfg)
	w.cleanups = append(w.cleanups, func() { names.Close() })
	if f := names.Feature(); o.criSocket != "" && o.criSocket != "off" && !f.Available {
		w.log.Warn("--cri-socket: "+f.Detail+"; events name the pod uid from the cgroup path only", "part", "pods")
	}
	w.opts.Pods = names
	w.opts.Features = append(w.opts.Features, names.Feature())
	return nil
}

// openSyslog: --syslog's stream beside the output. At the stop, what the
// receiver has not acknowledged within syslogDrain is counted lost, before
// the metrics server's last scrape (cleanups run last first).
func (o *watchOptions) openSyslog(w *watchRun, _ io.Writer) error {
	if o.syslogURL == "" {
		return nil
	}
	cfg := syslogout.Config{URL: o.syslogURL, Log: w.log}
	if m := w.opts.Metrics; m != nil {
		cfg.Lost = m.OutputLost
	}
	sw, err := syslogout.New(cfg)
	if err != nil {
		return usageError("--syslog: %w", err)
	}
	w.opts.Also = sw
	w.cleanups = append(w.cleanups, func() {
		delivered, lost := sw.Close(syslogDrain)
		w.log.Info("syslog: stopped", "part", "output", "delivered", delivered, "lost", lost)
	})
	return nil
}

// syslogDrain is how long a stopping watch waits for the syslog
// receiver to take what is queued.
const syslogDrain = 5 * time.Second

// watchOpts is what watch.Run is given.
func (o *watchOptions) watchOpts(w *watchRun) watch.Options {
	opts := w.opts
	opts.Format = o.format
	opts.Log = w.log
	opts.ReadyFile = o.ready
	opts.CaptureBytes = o.capture
	opts.RingBytes = o.ringBytes
	opts.Hook = o.hookBuild
	opts.KernelHooks = o.kernelMode
	opts.KernelWrites = o.kernelWritesMode
	opts.ScanInterval = o.scanInterval
	opts.ScanMaxKeyed = o.scanMaxKeyed
	opts.ScanBudget = int64(o.budget)
	opts.StatePath = o.statePath
	opts.ScanMemory = int64(o.memory)
	opts.Policy = o.policy
	opts.AlertsOnly = o.alertsOnly
	opts.Enforce = o.enforce
	opts.PolicyPath = o.policyPath
	opts.Protect = o.protect
	opts.Filter = watch.Filter{PIDs: o.pids, MapIDs: o.mapIDs, MapNames: o.names, Events: o.eventTypes}
	return opts
}
