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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/mapwriter"
	"github.com/bpfmon/bpfmon/internal/policy"
	"github.com/bpfmon/bpfmon/internal/sensor"
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

// runWatch is bpfmon watch: its command line parsed (watchOptions.flagSet)
// and validated (Validate), then the process set up (startWatch), the
// watch run, and how it ended turned into an exit code.
func runWatch(args []string, stdout, stderr io.Writer) int {
	// SIGHUP, first of all: its default action ends the process, and
	// `systemctl reload` sends it whatever the flags (see reopenOnHUP).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var o watchOptions
	fs := o.flagSet()
	if code, stop := parse(fs, args, stdout, stderr); stop {
		return code
	}
	o.lockFileSet = flagSet(fs, "lock-file")
	if err := o.Validate(); err != nil {
		return exitCode(stderr, "watch", err)
	}
	w, err := o.startWatch(stdout, stderr, hup)
	if err != nil {
		return exitCode(stderr, "watch", err)
	}
	defer w.close()
	sum, err := watch.Run(o.watchOpts(w), w.stop)
	return watchExit(w.log, sum, err)
}

// watchExit says how the watch ended, in the log, and returns the exit
// code that says it to whoever started bpfmon.
func watchExit(log *slog.Logger, sum watch.Summary, err error) int {
	if errors.Is(err, watch.ErrOutputClosed) {
		log.Warn(sum.String()+" ("+err.Error()+")", "events", sum.Events, "not_written", sum.NotWritten, "lost", sum.Lost, "alerts", sum.Alerts)
		return exitOutputClosed
	}
	if err != nil {
		log.Error("bpfmon watch: " + err.Error())
		if errors.Is(err, sensor.ErrUnavailable) {
			return exitUnavailable
		}
		return exitError
	}
	log.Info(sum.String(), "events", sum.Events, "not_written", sum.NotWritten, "lost", sum.Lost, "alerts", sum.Alerts)
	return exitOK
}

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
