// Command vmtest runs bpfmon's kernel-dependent tests on other kernels, in
// qemu virtual machines, and on this machine's own kernel: the kernel test
// matrix (make vmtest).
//
// For each kernel it downloads the Debian package once (apt-get download,
// cached), builds the test binaries statically (go test -c), packs them
// with busybox and a copy of the source tree (tests read files relative to
// their package) into an initramfs, boots the kernel under qemu with
// software emulation, runs every test binary, and reads the results from
// the serial console. Nothing prebuilt is committed.
//
// Adding a kernel: add a line to the kernels table below (a name and a
// pattern over Debian package names), or pass --kernel NAME=PATH for a
// vmlinuz built elsewhere.
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bpfmon/bpfmon/internal/testutil"
)

// kernel is one column of the matrix.
type kernel struct {
	name string
	// pkg matches the Debian package names that carry it; the newest
	// version in the archive is used.
	pkg *regexp.Regexp
	// suite, when set, is the Debian suite that has the package, other
	// than the system's: reached through a sources list of its own in
	// the cache directory, leaving the system's apt sources alone.
	suite string
	// arch is the CPU the kernel runs on, as GOARCH: "" for amd64, or
	// "arm64" (qemu-system-aarch64, test binaries built for it).
	arch string
	// pkgs, when set, limits the packages tested on this kernel (the
	// emulated CPU is slower; see the table).
	pkgs []string
	// run, when set, limits the tests run in these packages
	// (-test.run per package; --run replaces it).
	run map[string]string
	// lsm, when set, is the kernel command line's LSM list instead of
	// the one with bpf (const lsm).
	lsm string
	// byName leaves the kernel out of the default run: it runs when
	// --kernels names it (CI's time budget; see the table).
	byName bool
	// vmlinuz is set for --kernel NAME=PATH.
	vmlinuz string
	// caps are what the kernel must provide: a test that skips for
	// one of them fails the matrix (testutil.Need fails it in the VM).
	caps []testutil.Capability
}

// allCaps is what Debian's 6.1 and 6.12 cloud kernels provide, booted
// with bpf in lsm=.
var allCaps = []testutil.Capability{
	testutil.Kprobes, testutil.Fentry, testutil.BPFLSM, testutil.FmodRet, testutil.Iterators,
	testutil.SyscallFentry, testutil.SyscallTPBTF, testutil.SyscallRawTracepoint, testutil.TaskStorage,
	testutil.Compat, testutil.ProbeWriteUser,
}

// capsNoBPFLSM is what Debian's 6.12 provides booted without bpf among
// the LSMs, as Ubuntu's kernels are: everything but BPF LSM, so
// enforcement runs its fmod_ret build.
var capsNoBPFLSM = slices.DeleteFunc(slices.Clone(allCaps), func(c testutil.Capability) bool { return c == testutil.BPFLSM })

// allowedSkips are the only skips, besides those for a capability the
// kernel is not declared to have, that leave the matrix green. Keep it
// short: each entry is a test that cannot run on a kernel by design.
var allowedSkips = []struct {
	test *regexp.Regexp
	why  string
}{
	{regexp.MustCompile(`^TestUnavailableNamesReasons$`), "tests the kernel-side sensor's refusal where no hook works; runs where neither kprobes nor fentry does"},
	{regexp.MustCompile(`^TestBpftraceCountsNoAlarm$`), "the VM image has no bpftrace; the host's run (CI) runs it"},
	{regexp.MustCompile(`^TestSystemdUnit/systemd-analyze_verify$`), "the VM image has no systemd; the host's run (CI) verifies the unit"},
	{regexp.MustCompile(`^TestWatchMetricsPrometheus$`), "the VM image has no Prometheus; the host's run (CI) scrapes bpfmon with one"},
	{regexp.MustCompile(`^TestPrometheusRules$`), "the VM image has no promtool; the host's run (CI) checks the shipped rules"},
	{regexp.MustCompile(`^TestAlertmanagerWebhook$`), "the VM image has no Prometheus nor Alertmanager; the host's run (CI) runs them"},
	{regexp.MustCompile(`^(TestWatchPods|TestWatchPodOwners|TestContainerd)$`), "the VM image has no containerd; the host's run (CI) starts pods through a real one"},
	{regexp.MustCompile(`^TestWatchSyslog$`), "the VM image has no rsyslog; the host's run (CI) runs it"},
	{regexp.MustCompile(`^(TestRsyslog|TestRsyslogRELP)$`), "the VM image has no rsyslog; the host's run (CI) sends events to a real rsyslogd"},
	{regexp.MustCompile(`^TestOwnerImpersonation$`), "the VM image has no C library nor dynamic loader for LD_PRELOAD; the host's run (CI) runs it, TestLineage runs the sensor in the VM"},
}

// kernels are Debian's cloud kernels: bookworm's 6.1 and 6.12 (its +deb12
// builds, in bookworm-security), bullseye's 5.10, and the arm64 builds of
// 6.1 and 6.12. They boot under qemu's software emulation in seconds; all
// but arm64 6.1 have kprobes, fentry and BPF LSM.
var kernels = []kernel{
	{name: "6.1", pkg: regexp.MustCompile(`^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$`), caps: allCaps},
	{name: "6.12", pkg: regexp.MustCompile(`^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64-unsigned$`), caps: allCaps},
	{name: "5.10", pkg: regexp.MustCompile(`^linux-image-5\.10\.0-[0-9]+-cloud-amd64-unsigned$`), suite: "bullseye", caps: caps510, run: run510},
	{name: "arm64-6.1", pkg: regexp.MustCompile(`^linux-image-6\.1\.0-[0-9]+-cloud-arm64-unsigned$`), suite: "bookworm", arch: "arm64",
		caps: capsArm64, pkgs: arm64Pkgs},
	{name: "arm64-6.12", pkg: regexp.MustCompile(`^linux-image-6\.12\.[0-9]+\+deb12-cloud-arm64-unsigned$`), suite: "bookworm-security", arch: "arm64",
		caps: allCaps, pkgs: arm64TrampolinePkgs, byName: true},
	{name: "6.12-nobpflsm", pkg: regexp.MustCompile(`^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64-unsigned$`), caps: capsNoBPFLSM,
		lsm: lsmNoBPF, pkgs: enforcePkgs, run: enforceRun},
}

// lsmNoBPF is an LSM list without bpf, as Ubuntu's kernels boot with
// (CONFIG_BPF_LSM built, bpf not in CONFIG_LSM): enforcement's fmod_ret
// build.
const lsmNoBPF = "lockdown,capability,landlock,yama,apparmor"

// hostOnly are the tests, per package, that the VMs leave to the host's
// run (CI runs every package there with go test): their subject is user
// space, the same code on every kernel (flags, policy and state files,
// the output file, signals, supervision, the lock, metrics, the docs,
// the scanner's memory bound), and they reach the kernel only through the
// syscall sensor, whose builds each kernel runs in its own package and in
// the other end-to-end tests. (TestWatchMemoryCgroup's 4M-entry map would
// not fit the VM's 2 GiB either, and TestXDPFilterDetach needs
// xdp-tools, which the VM image does not carry.)
// Run in 6.1 and 6.12 under emulation they took over half of cmd/bpfmon's
// time, and the VM's limit (then 20 minutes) ran out. They are passed as
// -test.skip, so they are not run rather than skipped; --run replaces it.
var hostOnly = map[string]string{"cmd/bpfmon": "^(" + strings.Join([]string{
	"TestBadPolicyFiles", "TestBadStateFiles", "TestUntrustedState",
	"TestHostileFiles", "TestOwnFilesWritten", "TestHostileMetricsFlood", "TestHostileSIGHUPWithoutOutput",
	"TestHostileReloadPolicy", "TestHostileSecondInstance", "TestHostileSelfReads",
	"TestLockWatch", "TestUsageErrors", "TestNotRootNamesCapability", "TestStatusFDRefused",
	"TestWatchStateWhileDown", "TestWatchKilled", "TestWatchTwoInstances", "TestTrustAcrossRestart", "TestPolicyOwnersNoBootstrap",
	"TestDeploymentMemoryLimits", "TestWatchMemoryCgroup", "TestWatchMetricsAddrInUse",
	"TestWatchReaderGone", "TestWatchOutputFull", "TestWatchOutputRotation", "TestWatchOutputReopen",
	"TestReference", "TestReferenceListsEveryFlag", "TestSystemdUnit", "TestWatchSyslogBadURL", "TestXDPFilterDetach",
	// User space on top of the syscall sensor: the alert rate limit, the
	// text output's escaping, values rendered by BTF.
	"TestAlertPolicyAndRateLimit", "TestWatchTextEscapesHostileNames", "TestWatchBTFValues",
}, "|") + ")$",
	// The VM image's ip is busybox's, without netns, veth or xdp: the
	// attachment scan's netlink reads run in the host's run (the link
	// and enforcement paths of issue 39 run in the VMs).
	"internal/inventory": "^(TestAttachments)$",
}

// enforcePkgs and enforceRun are what the kernel without BPF LSM runs:
// the enforcement sensor's tests and the end-to-end test of --enforce
// (its other packages run the same code as on 6.12 with BPF LSM), which
// keeps the entry within CI's budget.
var enforcePkgs = []string{"internal/sensor/lsm", "cmd/bpfmon"}

var enforceRun = map[string]string{"cmd/bpfmon": "^TestWatchEnforce$"}

// capsArm64 is what Debian's arm64 6.1 provides: no BPF trampolines
// (arm64 has them from 6.4, with direct calls from ftrace), so no fentry,
// no BPF LSM and none of the builds that use them.
var capsArm64 = []testutil.Capability{
	testutil.Kprobes, testutil.Iterators, testutil.SyscallTPBTF, testutil.SyscallRawTracepoint, testutil.TaskStorage,
	testutil.Compat,
}

// arm64Pkgs are the packages the arm64 kernel runs: everything that loads
// or reads BPF objects, whose programs, registers and syscall numbers are
// per architecture. An emulated arm64 CPU runs about five times slower
// than an emulated x86-64 one: the end-to-end tests of cmd/bpfmon (the
// same Go code over these packages) would take 40 minutes there, beyond
// CI's budget.
// arm64Packages are the Debian packages the arm64 kernel's run needs
// besides qemu-system-x86's: its emulator, and what builds its C helpers,
// 64-bit and AArch32.
const arm64Packages = "qemu-system-arm clang binutils-aarch64-linux-gnu libc6-dev-arm64-cross libgcc-12-dev-arm64-cross binutils-arm-linux-gnueabihf libc6-dev-armhf-cross libgcc-12-dev-armhf-cross"

var arm64Pkgs = []string{
	"internal/features", "internal/inventory", "internal/mapwriter", "internal/scanner",
	"internal/sensor/bpfsyscall", "internal/sensor/kernelwrite", "internal/sensor/lineage",
	"internal/sensor/lsm", "internal/sensor/netattach", "internal/sensor/record",
}

// arm64TrampolinePkgs are what arm64 6.12 runs besides 6.1's run: the
// packages whose BPF programs have a build for trampolines (arm64 has
// them from 6.4): the syscall sensor's fentry build, the kernel-side
// sensor's fexit hooks, enforcement (BPF LSM), the lineage sensor's fexit
// build, and what features reports of them. That takes 9 minutes of
// emulation, which CI (2 processors) cannot fit within its 30 beside the
// other kernels (28 minutes measured with it): the kernel runs when
// --kernels names it.
var arm64TrampolinePkgs = []string{
	"internal/features", "internal/sensor/bpfsyscall", "internal/sensor/kernelwrite",
	"internal/sensor/lineage", "internal/sensor/lsm", "internal/sensor/netattach",
}

// run510 is what 5.10 runs of cmd/bpfmon's end-to-end tests: those whose
// path differs on it (the syscall sensor's raw_tracepoint build, the
// kernel-side sensor, iterators, enforcement, ring losses, links), which
// keeps CI within its budget; the rest are the same code over the same
// records, run in 6.1 and 6.12. Every other package runs whole.
var run510 = map[string]string{"cmd/bpfmon": "^(" + strings.Join([]string{
	"TestWatchJSON", "TestFeaturesJSON", "TestAlertRules", "TestAlertEventsLost", "TestFloodAndTamper",
	"TestWatchKernelWrites", "TestWatchCountedWritesExplained", "TestWatchProtectedItemized", "TestWatchMapIDItemized",
	"TestAlertProgramWrite", "TestAlertIterator", "TestWatchEnforce", "TestSelfMapsRefuseStrangers", "TestLinkOpsAlert",
}, "|") + ")$"}

// caps510 is what Debian bullseye's 5.10 provides: no task storage
// (5.11), in which the syscall sensor's fentry and tp_btf builds keep
// per-thread state.
var caps510 = []testutil.Capability{
	testutil.Kprobes, testutil.Fentry, testutil.BPFLSM, testutil.FmodRet, testutil.Iterators,
	testutil.SyscallRawTracepoint, testutil.Compat,
}

// lsm is the kernel command line's LSM list: with bpf, for enforcement tests.
const lsm = "lockdown,capability,landlock,yama,bpf"

func main() {
	code, err := run()
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmtest: %v\n", err)
	}
	os.Exit(code)
}

type options struct {
	kernels []string // names; empty: all, and the host
	extra   []kernel
	run     string // -test.run
	bench   string // -test.bench
	count   int    // -test.count
	pkgs    []string
	cache   string
	out     string
	timeout time.Duration
	memory  int
	cpus    int
	jobs    int // virtual machines at once
	host    bool
	append  string // extra kernel command line
	// workloads runs bench's sensor-build workloads (bench --inside)
	// instead of the tests; workloadFlags are its extra flags.
	workloads     bool
	workloadFlags string
	// baseline, with workloads: another bpfmon build, measured beside
	// this tree's in the same rounds (bench --baseline).
	baseline string
	// caps, when set, replaces every selected kernel's declared
	// capabilities (--caps).
	caps *[]testutil.Capability
}

func run() (int, error) {
	o, err := parseOptions()
	if err != nil {
		return 2, err
	}
	selected, arm64, err := o.selectKernels()
	if err != nil {
		return 2, err
	}
	root, err := repoRoot()
	if err != nil {
		return 2, err
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return 1, err
	}
	work, err := os.MkdirTemp("", "bpfmon-vmtest")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(work)
	if err := os.Chmod(work, 0o755); err != nil { // a test runs bpfmon as nobody
		return 1, err
	}

	start := time.Now()
	bins, err := buildBinaries(root, work, &o, arm64)
	if err != nil {
		return 1, err
	}
	results := runKernels(root, work, bins, selected, o)
	report := render(results, time.Since(start))
	fmt.Print("\n" + report)
	_ = os.WriteFile(filepath.Join(o.out, "report.txt"), []byte(report), 0o644)
	for _, r := range results {
		if !r.ok() {
			return 1, nil
		}
	}
	return 0, nil
}

// parseOptions parses vmtest's command line.
func parseOptions() (options, error) {
	var o options
	var only, extra, pkgs string
	flag.StringVar(&only, "kernels", "", "comma-separated kernel names to run (default: "+names(false)+", and the host; also: "+names(true)+")")
	flag.StringVar(&extra, "kernel", "", "extra kernels as NAME=PATH-TO-VMLINUZ, comma-separated")
	flag.StringVar(&o.run, "run", "", "only tests matching this regular expression (go test -run)")
	flag.IntVar(&o.count, "count", 1, "run each test this many times (go test -count)")
	flag.StringVar(&o.bench, "bench", "", "also benchmarks matching this regular expression (go test -bench; with --run '^$', only them)")
	flag.StringVar(&pkgs, "pkgs", "", "comma-separated packages to test (default: every package with tests)")
	flag.StringVar(&o.cache, "cache", defaultCache(), "where downloaded kernels are kept")
	flag.StringVar(&o.out, "out", "out/vmtest", "where console logs and the report are written")
	flag.DurationVar(&o.timeout, "timeout", 40*time.Minute, "time limit for one virtual machine (6.1 and 6.12 take 20 to 28 minutes on 2 shared processors)")
	flag.IntVar(&o.memory, "memory", 2048, "memory of each virtual machine, MiB")
	// One: under qemu's software emulation with two, kernel text patching
	// (static keys flipped when tracepoints attach) has been seen to
	// livelock both processors in int3 handling for minutes.
	flag.IntVar(&o.cpus, "cpus", 1, "processors of each virtual machine")
	flag.IntVar(&o.jobs, "jobs", max(1, runtime.NumCPU()), "virtual machines run at once (each runs on one host processor per --cpus; --workloads runs one at a time, for its measurements)")
	flag.BoolVar(&o.host, "host", true, "also run the tests on this machine's own kernel")
	flag.StringVar(&o.append, "append", "", "extra kernel command line for the virtual machines (e.g. loglevel=7)")
	flag.BoolVar(&o.workloads, "workloads", false, "instead of the tests, run bench's map-write and getpid workloads with each sensor build (make bench does); reports go to OUT/KERNEL.bench.md")
	flag.StringVar(&o.workloadFlags, "workload-flags", "", "extra flags for bench --inside (e.g. --quick)")
	flag.StringVar(&o.baseline, "baseline", "", "with --workloads: also measure this bpfmon `binary` (a static build of an earlier commit) in the same rounds, as bpfmon-base: before/after in one run")
	var caps string
	flag.StringVar(&caps, "caps", "", "declare these capabilities (comma-separated: "+capNames(allCaps)+"; \"none\" for none) for every selected kernel instead of its own; the host declares $"+testutil.CapsEnv+" otherwise")
	flag.Parse()
	if caps != "" {
		var cs []testutil.Capability
		for _, c := range splitNonEmpty(caps) {
			if c == "none" {
				continue
			}
			if !slices.Contains(allCaps, testutil.Capability(c)) {
				return o, fmt.Errorf("--caps: unknown capability %q: want %s", c, capNames(allCaps))
			}
			cs = append(cs, testutil.Capability(c))
		}
		o.caps = &cs
	}
	if only != "" {
		o.kernels = strings.Split(only, ",")
	}
	if pkgs != "" {
		o.pkgs = strings.Split(pkgs, ",")
	}
	for _, e := range splitNonEmpty(extra) {
		name, path, ok := strings.Cut(e, "=")
		if !ok {
			return o, fmt.Errorf("--kernel %q: want NAME=PATH", e)
		}
		o.extra = append(o.extra, kernel{name: name, vmlinuz: path})
	}
	return o, nil
}

// selectKernels checks what a run needs (root, the tools) and returns the
// kernels the options select, and whether one is arm64.
func (o options) selectKernels() ([]kernel, bool, error) {
	if os.Geteuid() != 0 {
		return nil, false, errors.New("run as root: the tests load BPF programs (also on the host)")
	}
	for _, tool := range []string{"qemu-system-x86_64", "busybox", "apt-get", "dpkg-deb", "gcc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, false, fmt.Errorf("%s not found: apt-get install qemu-system-x86 busybox-static gcc gcc-multilib libc6-dev-i386", tool)
		}
	}
	var selected []kernel
	for _, k := range append(append([]kernel{}, kernels...), o.extra...) {
		if (len(o.kernels) == 0 && !k.byName) || contains(o.kernels, k.name) || k.vmlinuz != "" {
			selected = append(selected, k)
		}
	}
	arm64 := slices.ContainsFunc(selected, func(k kernel) bool { return k.arch == "arm64" })
	if arm64 && !o.workloads {
		for _, tool := range []string{"qemu-system-aarch64", "clang", "aarch64-linux-gnu-ld", "arm-linux-gnueabihf-ld"} {
			if _, err := exec.LookPath(tool); err != nil {
				return nil, false, fmt.Errorf("%s not found (for the arm64 kernel): apt-get install %s", tool, arm64Packages)
			}
		}
	}
	return selected, arm64, nil
}

// buildBinaries builds the test binaries (or, with --workloads, bench's),
// for arm64 too when an arm64 kernel is selected. --workloads turns the
// host run off.
func buildBinaries(root, work string, o *options, arm64 bool) (map[string]*binaries, error) {
	var err error
	var b *binaries
	if o.workloads {
		step("building bench, bpfmon and the load programs")
		b, err = buildWorkloads(root, work, o.baseline)
		o.host = false
	} else {
		step("building the test binaries")
		b, err = build(root, work, o.pkgs, "")
	}
	if err != nil {
		return nil, err
	}
	bins := map[string]*binaries{"": b}
	if arm64 && !o.workloads {
		step("building the test binaries for arm64")
		if bins["arm64"], err = build(root, work, o.pkgs, "arm64"); err != nil {
			return nil, err
		}
	}

	return bins, nil
}

// runKernels runs the host (when selected) and the virtual machines, side
// by side as --jobs allows, and returns their results, the host's first.
func runKernels(root, work string, bins map[string]*binaries, selected []kernel, o options) []result {
	b := bins[""]
	var results []result
	if o.host && (len(o.kernels) == 0 || contains(o.kernels, "host")) {
		step("host kernel " + uname())
		host := kernel{name: "host"}
		for _, c := range splitNonEmpty(os.Getenv(testutil.CapsEnv)) {
			host.caps = append(host.caps, testutil.Capability(c))
		}
		if o.caps != nil {
			host.caps = *o.caps
		}
		results = append(results, runHost(root, b, host, o))
	}
	// The kernels are fetched one after the other (apt's cache is one
	// directory), then run side by side: software emulation keeps one
	// host processor busy per virtual processor, and the matrix's time is
	// most of CI's.
	vmResults := make([]result, len(selected))
	jobs := max(1, o.jobs/max(1, o.cpus))
	if o.workloads {
		jobs = 1
	}
	sem := make(chan struct{}, jobs)
	var wg sync.WaitGroup
	for i, k := range selected {
		if o.caps != nil {
			k.caps = *o.caps
		}
		if o.workloads && k.arch != "" {
			vmResults[i] = result{kernel: k.name, packages: map[string]string{}, caps: k.caps, err: errors.New("--workloads runs on x86-64 kernels only")}
			continue
		}
		step("kernel " + k.name + ", declared to have: " + capNames(k.caps))
		vmlinuz := k.vmlinuz
		if vmlinuz == "" {
			var err error
			if vmlinuz, err = fetchKernel(k, o.cache); err != nil {
				vmResults[i] = result{kernel: k.name, packages: map[string]string{}, caps: k.caps, err: err}
				continue
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			vmResults[i] = runVM(root, work, bins[k.arch], k, vmlinuz, o)
			fmt.Printf("vmtest: %s: %s in %v\n", k.name, verdict(vmResults[i]), vmResults[i].took.Round(time.Second))
		}()
	}
	wg.Wait()
	results = append(results, vmResults...)
	return results
}

// capNames is caps for people: "none" for none.
func capNames(cs []testutil.Capability) string {
	if len(cs) == 0 {
		return "none"
	}
	return capList(cs)
}

// names lists the kernels of the default run, or those run only by name.
func names(byName bool) string {
	var n []string
	for _, k := range kernels {
		if k.byName == byName {
			n = append(n, k.name)
		}
	}
	return strings.Join(n, ", ")
}

func step(s string) { fmt.Printf("\n=== vmtest: %s\n", s) }

func defaultCache() string {
	if d := os.Getenv("BPFMON_VMTEST_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "bpfmon-vmtest")
	}
	return "/var/cache/bpfmon-vmtest"
}

func repoRoot() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("finding the module root: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

func uname() string {
	out, _ := exec.Command("uname", "-r").Output()
	return strings.TrimSpace(string(out))
}

// binaries are what the tests need, built on the host.
type binaries struct {
	dir      string
	pkgs     []string // import paths relative to the module, e.g. internal/scanner
	bpfmon   string
	prebuilt string // C test helpers, compiled statically (see testutil.CC)
}

// testBin is the file name of a package's test binary.
func testBin(pkg string) string { return strings.ReplaceAll(pkg, "/", "_") + ".test" }

// build builds the test binaries for arch (as GOARCH; "" for this
// machine's), in directories of their own.
func build(root, work string, want []string, arch string) (*binaries, error) {
	suffix := ""
	if arch != "" {
		suffix = "-" + arch
	}
	b := &binaries{dir: filepath.Join(work, "bin"+suffix), prebuilt: filepath.Join(work, "prebuilt"+suffix)}
	for _, d := range []string{b.dir, b.prebuilt} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	var pkgs []string
	for _, p := range want { // relative to the module, as k.pkgs, k.run and hostOnly name them
		pkgs = append(pkgs, strings.TrimPrefix(p, "./"))
	}
	if len(pkgs) == 0 {
		out, err := command(root, "go", "list", "-f", `{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}`, "./...").Output()
		if err != nil {
			return nil, fmt.Errorf("listing packages: %w", err)
		}
		mod, err := command(root, "go", "list", "-m").Output()
		if err != nil {
			return nil, err
		}
		for _, p := range strings.Fields(string(out)) {
			pkgs = append(pkgs, strings.TrimPrefix(strings.TrimPrefix(p, strings.TrimSpace(string(mod))), "/"))
		}
	}
	sort.Strings(pkgs)
	b.pkgs = pkgs
	env := append(os.Environ(), "CGO_ENABLED=0")
	if arch != "" {
		env = append(env, "GOARCH="+arch)
	}
	for _, p := range pkgs {
		c := command(root, "go", "test", "-c", "-o", filepath.Join(b.dir, testBin(p)), "./"+p)
		c.Env = env
		if out, err := c.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go test -c ./%s: %v\n%s", p, err, out)
		}
	}
	b.bpfmon = filepath.Join(b.dir, "bpfmon")
	c := command(root, "go", "build", "-o", b.bpfmon, "./cmd/bpfmon")
	c.Env = env
	if out, err := c.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./cmd/bpfmon: %v\n%s", err, out)
	}
	return b, prebuildC(root, b.prebuilt, arch)
}

// buildWorkloads builds what bench --inside needs, statically: bench
// itself, bpfmon, and the writer and getpid loops.
func buildWorkloads(root, work, baseline string) (*binaries, error) {
	b := &binaries{dir: filepath.Join(work, "bin"), prebuilt: filepath.Join(work, "prebuilt"), pkgs: []string{workloadsPkg}}
	for _, d := range []string{b.dir, b.prebuilt} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	b.bpfmon = filepath.Join(b.dir, "bpfmon")
	env := append(os.Environ(), "CGO_ENABLED=0")
	for _, c := range []*exec.Cmd{
		command(root, "go", "build", "-o", b.bpfmon, "./cmd/bpfmon"),
		command(root, "go", "build", "-o", filepath.Join(b.dir, "bench"), "./bench"),
		command(root, "gcc", "-O2", "-Wall", "-static", "-o", filepath.Join(b.dir, "writer"), "bench/c/writer.c"),
		command(root, "gcc", "-O2", "-Wall", "-static", "-o", filepath.Join(b.dir, "getpid"), "bench/c/getpid.c"),
	} {
		c.Env = env
		if out, err := c.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s: %v\n%s", strings.Join(c.Args, " "), err, out)
		}
	}
	if baseline != "" {
		data, err := os.ReadFile(baseline)
		if err != nil {
			return nil, fmt.Errorf("--baseline: %w", err)
		}
		if err := os.WriteFile(filepath.Join(b.dir, "bpfmon-base"), data, 0o755); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// workloadsPkg is the result name of bench --inside in the report.
const workloadsPkg = "bench"

// Markers bench --inside prints around its report.
const (
	markFeaturesBegin = "VMFEATURES-BEGIN"
	markFeaturesEnd   = "VMFEATURES-END"
	markBenchBegin    = "VMBENCH-BEGIN"
	markBenchEnd      = "VMBENCH-END"
)

// prebuildC compiles every C test helper (testdata/*.c) statically, 64-
// and 32-bit, named as testutil.CC looks them up: the virtual machines have
// neither gcc nor a C library.
func prebuildC(root, dir, arch string) error {
	// Each variant: the flags testutil.CC is given (its prebuilt name),
	// and the compiler's arguments that build it.
	type variant struct{ flags, args []string }
	cc, variants := "gcc", []variant{{nil, nil}, {[]string{testutil.CompatFlag}, []string{testutil.CompatFlag}}}
	if arch == "arm64" {
		// clang, with Debian's arm64 and armhf cross C libraries and
		// binutils: the cross gcc conflicts with gcc-multilib, which the
		// 32-bit x86 helpers need.
		cc, variants = "clang", []variant{
			{nil, []string{"--target=aarch64-linux-gnu"}},
			{[]string{testutil.CompatFlag}, []string{"--target=" + testutil.AArch32Target}},
		}
	}
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "out") {
			return filepath.SkipDir
		}
		if d.IsDir() || filepath.Ext(path) != ".c" || filepath.Base(filepath.Dir(path)) != "testdata" {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, v := range variants {
			out := filepath.Join(dir, testutil.PrebuiltName(src, v.flags))
			args := append(append(slices.Clone(v.args), "-O2", "-Wall", "-static", "-o", out), path)
			if msg, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
				return fmt.Errorf("%s %s: %v\n%s", cc, strings.Join(args, " "), err, msg)
			}
		}
		return nil
	})
}

// result is one kernel's outcome.
type result struct {
	kernel   string
	release  string
	packages map[string]string // package -> "ok", "FAIL", "no result"
	failures []string          // failed test names
	caps     []testutil.Capability
	skips    []skip
	err      error
	took     time.Duration
	log      string
}

func (r result) ok() bool {
	if r.err != nil {
		return false
	}
	for _, s := range r.packages {
		if s != "ok" {
			return false
		}
	}
	for _, sk := range r.skips {
		if sk.allowed == "" {
			return false
		}
	}
	return len(r.packages) > 0
}

func runHost(root string, b *binaries, k kernel, o options) result {
	start := time.Now()
	r := result{kernel: k.name, release: uname(), packages: map[string]string{}, caps: k.caps}
	var log bytes.Buffer
	for _, p := range b.pkgs {
		args := []string{fmt.Sprintf("-test.count=%d", o.count), "-test.v"}
		if o.run != "" {
			args = append(args, "-test.run", o.run)
		}
		if o.bench != "" {
			args = append(args, "-test.bench", o.bench)
		}
		c := exec.Command(filepath.Join(b.dir, testBin(p)), args...)
		c.Dir = filepath.Join(root, p)
		c.Env = append(os.Environ(), "BPFMON_BIN="+b.bpfmon, testutil.CapsEnv+"="+capList(k.caps))
		out, err := c.CombinedOutput()
		log.Write(out)
		r.packages[p] = "ok"
		if err != nil {
			r.packages[p] = "FAIL"
		}
	}
	r.log = filepath.Join(o.out, "host.log")
	_ = os.WriteFile(r.log, log.Bytes(), 0o644)
	r.failures, r.skips = scanTestOutput(log.String(), k.caps)
	r.took = time.Since(start)
	return r
}

// runVM boots vmlinuz with the tests (safe to run side by side: its
// files are named after the kernel).
func runVM(root, work string, b *binaries, k kernel, vmlinuz string, o options) result {
	start := time.Now()
	r := result{kernel: k.name, packages: map[string]string{}, caps: k.caps}
	initrd := filepath.Join(work, "initrd-"+k.name+".gz")
	if err := makeInitramfs(root, b, k, o, initrd); err != nil {
		r.err = fmt.Errorf("building the initramfs: %w", err)
		return r
	}
	r.log = filepath.Join(o.out, k.name+".log")
	console, err := os.Create(r.log)
	if err != nil {
		r.err = err
		return r
	}
	defer console.Close()
	qemuBin, machine, tty := "qemu-system-x86_64", []string{}, "ttyS0"
	if k.arch == "arm64" {
		qemuBin, machine, tty = "qemu-system-aarch64", []string{"-M", "virt"}, "ttyAMA0"
	}
	qemu := exec.Command(qemuBin, append(machine,
		"-accel", "tcg", "-cpu", "max", "-smp", strconv.Itoa(o.cpus), "-m", strconv.Itoa(o.memory),
		"-kernel", vmlinuz, "-initrd", initrd,
		"-append", strings.TrimSpace("console="+tty+" panic=-1 quiet lsm="+lsmOf(k)+" "+o.append),
		"-nographic", "-no-reboot", "-nic", "none")...)
	qemu.Stdout, qemu.Stderr = console, console
	if err := qemu.Start(); err != nil {
		r.err = fmt.Errorf("starting qemu: %w", err)
		return r
	}
	done := make(chan error, 1)
	go func() { done <- qemu.Wait() }()
	select {
	case err = <-done:
	case <-time.After(o.timeout):
		qemu.Process.Kill()
		<-done
		err = fmt.Errorf("no result after %v", o.timeout)
	}
	console.Sync()
	out, _ := os.ReadFile(r.log)
	text := strings.ReplaceAll(string(out), "\r", "")
	parseConsole(text, &r)
	if err != nil && r.err == nil && !finished(text) {
		r.err = err
	}
	if !finished(text) && r.err == nil {
		r.err = errors.New("the virtual machine stopped before the tests finished (see the console log)")
	}
	for _, p := range pkgsFor(b, k) {
		if _, ok := r.packages[p]; !ok {
			r.packages[p] = "no result"
		}
	}
	r.failures, r.skips = scanTestOutput(text, k.caps)
	r.took = time.Since(start)
	if o.workloads {
		saveBenchReport(text, k, &r, o)
	} else {
		saveFeatures(text, k, r.release, o)
	}
	return r
}

// between is what text holds between markers begin and end, trimmed.
func between(text, begin, end string) (string, bool) {
	i := strings.Index(text, begin)
	j := strings.Index(text, end)
	if i < 0 || j < i {
		return "", false
	}
	return strings.TrimSpace(text[i+len(begin) : j]), true
}

// saveFeatures keeps what bpfmon features printed in the VM, as
// OUT/KERNEL.features.txt: what bpfmon sees on that kernel, for people.
func saveFeatures(text string, k kernel, release string, o options) {
	body, ok := between(text, markFeaturesBegin, markFeaturesEnd)
	if !ok {
		return
	}
	out := fmt.Sprintf("$ bpfmon features   # Debian %s (%s), qemu\n%s\n", k.name, release, body)
	_ = os.WriteFile(filepath.Join(o.out, k.name+".features.txt"), []byte(out), 0o644)
}

// saveBenchReport keeps what bench --inside printed between its markers,
// as OUT/KERNEL.bench.md.
func saveBenchReport(text string, k kernel, r *result, o options) {
	body, ok := between(text, markBenchBegin, markBenchEnd)
	if !ok {
		if r.err == nil {
			r.err = errors.New("bench --inside printed no report (see the console log)")
		}
		return
	}
	md := fmt.Sprintf("## Sensor builds, %s virtual machine (%s, qemu software emulation)\n\n%s\n", k.name, r.release, body)
	path := filepath.Join(o.out, k.name+".bench.md")
	if err := os.WriteFile(path, []byte(md), 0o644); err != nil && r.err == nil {
		r.err = err
	}
	fmt.Print("\n" + md)
}

// Markers the init script prints. The serial console may prefix the first
// line with terminal escapes, so they are searched anywhere in a line.
const (
	markRelease = "VMTEST-RELEASE "
	markResult  = "VMTEST-RESULT "
	markDone    = "VMTEST-DONE"
)

func finished(text string) bool { return strings.Contains(text, markDone) }

func parseConsole(text string, r *result) {
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, markRelease); i >= 0 {
			r.release = strings.TrimSpace(line[i+len(markRelease):])
		}
		if i := strings.Index(line, markResult); i >= 0 {
			f := strings.Fields(line[i+len(markResult):])
			if len(f) == 2 {
				r.packages[f[0]] = "ok"
				if f[1] != "0" {
					r.packages[f[0]] = "FAIL"
				}
			}
		}
	}
}

var (
	failRE   = regexp.MustCompile(`--- FAIL: (\S+)`)
	skipRE   = regexp.MustCompile(`^\s*--- SKIP: (\S+)`)
	reasonRE = regexp.MustCompile(`^\s+\S+\.go:\d+: (.*)$`)
)

// skip is a test that skipped, why, and why that is allowed ("" if not).
type skip struct {
	test, reason, allowed string
}

// scanTestOutput finds the failed tests and the skipped ones (go test -v
// prints a skip's reason on the line before its --- SKIP line), and
// judges each skip: allowed when it is for capabilities the kernel is not
// declared to have (testutil.SkipMarker) or on the allowlist.
func scanTestOutput(text string, caps []testutil.Capability) (failures []string, skips []skip) {
	for _, m := range failRE.FindAllStringSubmatch(text, -1) {
		failures = append(failures, m[1])
	}
	lines := strings.Split(text, "\n")
	for i, line := range lines {
		m := skipRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		sk := skip{test: m[1]}
		sk.reason = skipReason(lines, i, m[1])
		sk.allowed = allowedSkip(sk, caps)
		skips = append(skips, sk)
	}
	return failures, skips
}

// skipReason is the message test printed when it skipped, at line i:
// the first one after its "=== RUN" line (go test -v prints a subtest's
// result after its siblings have run, so the line before it may be
// another test's), else one of the few lines just before.
func skipReason(lines []string, i int, test string) string {
	run := "=== RUN   " + test
	for j := i - 1; j >= 0; j-- {
		if strings.TrimSpace(lines[j]) != run {
			continue
		}
		for k := j + 1; k < i && !strings.HasPrefix(strings.TrimSpace(lines[k]), "=== RUN"); k++ {
			if r := reasonRE.FindStringSubmatch(lines[k]); r != nil {
				return r[1]
			}
		}
		break
	}
	for j := i - 1; j >= 0 && j >= i-4; j-- {
		if r := reasonRE.FindStringSubmatch(lines[j]); r != nil {
			return r[1]
		}
	}
	return ""
}

func allowedSkip(sk skip, caps []testutil.Capability) string {
	if rest, ok := strings.CutPrefix(sk.reason, testutil.SkipMarker); ok {
		names, _, _ := strings.Cut(rest, ":")
		lacked := strings.Split(names, ",")
		for _, c := range lacked {
			if slices.Contains(caps, testutil.Capability(c)) {
				return "" // declared: a test should have failed, not skipped
			}
		}
		return "lacks " + names + " (not declared)"
	}
	for _, a := range allowedSkips {
		if a.test.MatchString(sk.test) {
			return "allowlist: " + a.why
		}
	}
	return ""
}

// fetchKernel returns the cached vmlinuz of the newest package matching
// k.pkg, downloading it first if needed.
func fetchKernel(k kernel, cache string) (string, error) {
	apt, err := aptFor(k, cache)
	if err != nil {
		return "", err
	}
	out, err := exec.Command("apt-cache", append(apt, "pkgnames", "linux-image-")...).Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache pkgnames: %w (run apt-get update)", err)
	}
	var pkgs []string
	for _, p := range strings.Fields(string(out)) {
		if k.pkg.MatchString(p) {
			pkgs = append(pkgs, p)
		}
	}
	if len(pkgs) == 0 {
		return "", fmt.Errorf("no package in the archive matches %s (run apt-get update)", k.pkg)
	}
	sort.Slice(pkgs, func(i, j int) bool { return versionLess(pkgs[i], pkgs[j]) })
	pkg := pkgs[len(pkgs)-1]
	dir := filepath.Join(cache, pkg)
	vmlinuz := filepath.Join(dir, "vmlinuz")
	if _, err := os.Stat(vmlinuz); err == nil {
		fmt.Printf("vmtest: %s: cached %s\n", k.name, pkg)
		return vmlinuz, nil
	}
	fmt.Printf("vmtest: %s: downloading %s\n", k.name, pkg)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return vmlinuz, extractFromPackage(apt, pkg, "boot/vmlinuz-*", vmlinuz, 0o644)
}

// extractFromPackage downloads Debian package pkg with apt-get (options
// apt) and writes its one file matching glob (a path in the package) to
// dest, whole or not at all.
func extractFromPackage(apt []string, pkg, glob, dest string, mode os.FileMode) error {
	tmp, err := os.MkdirTemp("", "bpfmon-deb")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	dl := exec.Command("apt-get", append(apt, "download", pkg)...)
	dl.Dir = tmp
	if msg, err := dl.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get download %s: %v\n%s", pkg, err, msg)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("apt-get download %s gave %d files", pkg, len(debs))
	}
	x := filepath.Join(tmp, "x")
	if msg, err := exec.Command("dpkg-deb", "-x", debs[0], x).CombinedOutput(); err != nil {
		return fmt.Errorf("dpkg-deb -x: %v\n%s", err, msg)
	}
	found, _ := filepath.Glob(filepath.Join(x, glob))
	if len(found) != 1 {
		return fmt.Errorf("%s holds %d files %s", pkg, len(found), glob)
	}
	data, err := os.ReadFile(found[0])
	if err != nil {
		return err
	}
	if err := os.WriteFile(dest+".tmp", data, mode); err != nil {
		return err
	}
	return os.Rename(dest+".tmp", dest)
}

// aptFor is the options that make apt-get and apt-cache see k's suite:
// none for the system's own; else a sources list, package lists and a
// download cache under cache/apt-SUITE, its lists updated once a day.
func aptFor(k kernel, cache string) ([]string, error) {
	if k.suite == "" {
		return nil, nil
	}
	mirror := debianMirror(k.suite)
	dir := filepath.Join(cache, "apt-"+k.suite)
	archOpt, archOpts := "", []string(nil)
	if k.arch != "" {
		dir += "-" + k.arch
		archOpt = "arch=" + k.arch + " "
		archOpts = []string{"-o", "APT::Architecture=" + k.arch, "-o", "APT::Architectures=" + k.arch, "-o", "Dir::State::status=/dev/null"}
	}
	for _, d := range []string{"lists/partial", "cache/archives/partial"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	list := filepath.Join(dir, "sources.list")
	line := "deb [" + archOpt + "signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] " + mirror + " " + k.suite + " main\n"
	if err := os.WriteFile(list, []byte(line), 0o644); err != nil {
		return nil, err
	}
	opts := []string{"-o", "Dir::Etc::sourcelist=" + list, "-o", "Dir::Etc::sourceparts=-",
		"-o", "Dir::State::Lists=" + filepath.Join(dir, "lists"), "-o", "Dir::Cache=" + filepath.Join(dir, "cache"),
		"-o", "APT::Sandbox::User=root"}
	opts = append(opts, archOpts...)
	stamp := filepath.Join(dir, "updated")
	if fi, err := os.Stat(stamp); err == nil && time.Since(fi.ModTime()) < 24*time.Hour {
		return opts, nil
	}
	fmt.Printf("vmtest: %s: apt-get update for Debian %s (%s)\n", k.name, k.suite, dir)
	if msg, err := exec.Command("apt-get", append(opts, "-qq", "update")...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("apt-get update for Debian %s: %v\n%s", k.suite, err, msg)
	}
	return opts, os.WriteFile(stamp, nil, 0o644)
}

// busyboxFor is the busybox for k's CPU: this machine's, or Debian's
// busybox-static package for k.arch, fetched once into the cache.
func busyboxFor(k kernel, cache string) (string, error) {
	if k.arch == "" {
		return exec.LookPath("busybox")
	}
	path := filepath.Join(cache, "busybox-"+k.arch)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	// From bookworm itself: a kernel's suite (bookworm-security for
	// 6.12) may carry no busybox.
	apt, err := aptFor(kernel{name: k.name, suite: "bookworm", arch: k.arch}, cache)
	if err != nil {
		return "", err
	}
	if err := extractFromPackage(apt, "busybox-static", "bin/busybox", path, 0o755); err != nil {
		return "", fmt.Errorf("busybox for %s: %w", k.arch, err)
	}
	return path, nil
}

// debianMirror is the Debian archive the system's apt uses for a suite
// (its first URI ending in /debian, or /debian-security for the security
// suites), else deb.debian.org's.
func debianMirror(suite string) string {
	archive := "/debian"
	if strings.HasSuffix(suite, "-security") {
		archive = "/debian-security"
	}
	for _, f := range []string{"/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"} {
		b, _ := os.ReadFile(f)
		for _, line := range strings.Split(string(b), "\n") {
			fields := strings.Fields(line)
			switch {
			case len(fields) >= 2 && fields[0] == "URIs:":
				fields = fields[1:]
			case len(fields) >= 2 && fields[0] == "deb":
				fields = fields[1:]
				if strings.HasPrefix(fields[0], "[") {
					for len(fields) > 0 && !strings.HasSuffix(fields[0], "]") {
						fields = fields[1:]
					}
					if len(fields) > 0 {
						fields = fields[1:]
					}
				}
			default:
				continue
			}
			for _, u := range fields {
				if strings.HasSuffix(strings.TrimSuffix(u, "/"), archive) {
					return strings.TrimSuffix(u, "/")
				}
			}
		}
	}
	return "http://deb.debian.org" + archive
}

var numRE = regexp.MustCompile(`\d+`)

// versionLess orders package names by the numbers in them.
func versionLess(a, b string) bool {
	na, nb := numRE.FindAllString(a, -1), numRE.FindAllString(b, -1)
	for i := 0; i < len(na) && i < len(nb); i++ {
		x, _ := strconv.Atoi(na[i])
		y, _ := strconv.Atoi(nb[i])
		if x != y {
			return x < y
		}
	}
	return len(na) < len(nb)
}

// initScript mounts what the tests expect, brings up loopback, runs every
// test binary from its package's directory and powers off.
func initScript(b *binaries, k kernel, o options) string {
	var s strings.Builder
	s.WriteString(`#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmpfs /tmp
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up
export BPFMON_BIN=/bin/bpfmon BPFMON_PREBUILT=/prebuilt HOME=/tmp TMPDIR=/tmp BPFMON_TIME_SCALE=` + timeScale(k) + `
export CI=true ` + testutil.VMEnv + `=1 ` + testutil.CapsEnv + `=` + capList(k.caps) + `
echo "` + markRelease + `$(uname -r)"
`)
	if o.workloads {
		flags := o.workloadFlags
		if o.baseline != "" {
			flags += " --baseline /bin/bpfmon-base"
		}
		fmt.Fprintf(&s, "cd /tmp && /bin/bench --inside --bpfmon-bin /bin/bpfmon --writer-bin /bin/writer --getpid-bin /bin/getpid %s; echo \"%s%s $?\"\n",
			flags, markResult, workloadsPkg)
		s.WriteString("echo " + markDone + "\npoweroff -f\n")
		return s.String()
	}
	fmt.Fprintf(&s, "echo %s; /bin/bpfmon features 2>&1; echo %s\n", markFeaturesBegin, markFeaturesEnd)
	args := fmt.Sprintf("-test.count=%d -test.v", o.count)
	if o.bench != "" {
		args += " -test.bench '" + strings.ReplaceAll(o.bench, "'", `'\''`) + "'"
	}
	for _, p := range pkgsFor(b, k) {
		pargs, run := args, o.run
		if run == "" {
			run = k.run[p]
		}
		if run != "" {
			pargs += " -test.run '" + strings.ReplaceAll(run, "'", `'\''`) + "'"
		}
		if skip := hostOnly[p]; skip != "" && o.run == "" {
			pargs += " -test.skip '" + skip + "'"
		}
		fmt.Fprintf(&s, "cd /src/%s && /bin/%s %s; echo \"%s%s $?\"\n", p, testBin(p), pargs, markResult, p)
	}
	s.WriteString("echo " + markDone + "\npoweroff -f\n")
	return s.String()
}

// lsmOf is k's LSM list on the command line.
func lsmOf(k kernel) string {
	if k.lsm != "" {
		return k.lsm
	}
	return lsm
}

// pkgsFor is the packages tested on k: those built, limited by k.pkgs.
func pkgsFor(b *binaries, k kernel) []string {
	if len(k.pkgs) == 0 {
		return b.pkgs
	}
	var out []string
	for _, p := range b.pkgs {
		if slices.Contains(k.pkgs, p) {
			out = append(out, p)
		}
	}
	return out
}

// timeScale is how much longer than on this machine the tests' time
// limits are in k's virtual machine: software emulation of another CPU
// is slower still.
func timeScale(k kernel) string {
	if k.arch != "" {
		return "12"
	}
	return "6"
}

// makeInitramfs writes a gzipped cpio archive: busybox and its applets,
// the test binaries, bpfmon, the prebuilt C helpers, and the source tree
// without .git.
func makeInitramfs(root string, b *binaries, k kernel, o options, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	z, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
	w := newCpio(z)
	for _, d := range []string{"bin", "dev", "proc", "sys", "tmp", "src", "prebuilt", "etc"} {
		w.dir(d)
	}
	w.file("init", 0o755, []byte(initScript(b, k, o)))
	w.file("etc/passwd", 0o644, []byte("root:x:0:0:root:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"))
	w.file("etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n"))
	busybox, err := busyboxFor(k, o.cache)
	if err != nil {
		return err
	}
	if err := w.copyFile("bin/busybox", busybox, 0o755); err != nil {
		return err
	}
	for _, applet := range []string{"sh", "mount", "ip", "cat", "echo", "poweroff", "ls", "mkdir", "sleep", "uname", "sync", "rm", "true", "false", "env"} {
		w.symlink("bin/"+applet, "busybox")
	}
	entries, _ := os.ReadDir(b.dir)
	for _, e := range entries {
		if err := w.copyFile("bin/"+e.Name(), filepath.Join(b.dir, e.Name()), 0o755); err != nil {
			return err
		}
	}
	entries, _ = os.ReadDir(b.prebuilt)
	for _, e := range entries {
		if err := w.copyFile("prebuilt/"+e.Name(), filepath.Join(b.prebuilt, e.Name()), 0o755); err != nil {
			return err
		}
	}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		if d.IsDir() {
			if d.Name() == ".git" || rel == "out" {
				return filepath.SkipDir
			}
			w.dir("src/" + rel)
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		return w.copyFile("src/"+rel, p, 0o644)
	})
	if err != nil {
		return err
	}
	if err := w.close(); err != nil {
		return err
	}
	return z.Close()
}

// render is the matrix as text: a row per kernel and a line per failure.
func render(results []result, took time.Duration) string {
	var s strings.Builder
	fmt.Fprintf(&s, "kernel test matrix (%s)\n\n", took.Round(time.Second))
	w := len("KERNEL")
	for _, r := range results {
		w = max(w, len(r.kernel))
	}
	fmt.Fprintf(&s, "%-*s %-32s %-6s %7s %6s  %s\n", w, "KERNEL", "RELEASE", "RESULT", "TIME", "SKIPS", "PACKAGES")
	for _, r := range results {
		status := "ok"
		if !r.ok() {
			status = "FAIL"
		}
		var pk []string
		for p, st := range r.packages {
			if st != "ok" {
				pk = append(pk, p+":"+st)
			}
		}
		sort.Strings(pk)
		detail := fmt.Sprintf("%d ok", len(r.packages)-len(pk))
		if len(pk) > 0 {
			detail += "; " + strings.Join(pk, " ")
		}
		fmt.Fprintf(&s, "%-*s %-32s %-6s %7s %6d  %s\n", w, r.kernel, r.release, status, r.took.Round(time.Second), len(r.skips), detail)
		fmt.Fprintf(&s, "       declared: %s\n", capNames(r.caps))
		lacks := map[string]int{}
		for _, sk := range r.skips {
			switch {
			case sk.allowed == "":
				fmt.Fprintf(&s, "       skip NOT ALLOWED: %s: %s\n", sk.test, sk.reason)
			case strings.HasPrefix(sk.allowed, "lacks "):
				lacks[sk.allowed]++
			default:
				fmt.Fprintf(&s, "       skip allowed: %s (%s)\n", sk.test, sk.allowed)
			}
		}
		for _, l := range slices.Sorted(maps.Keys(lacks)) {
			fmt.Fprintf(&s, "       skips allowed: %d, %s\n", lacks[l], l)
		}
		if r.err != nil {
			fmt.Fprintf(&s, "       error: %v\n", r.err)
		}
		for _, f := range r.failures {
			fmt.Fprintf(&s, "       failed: %s\n", f)
		}
		if r.log != "" {
			fmt.Fprintf(&s, "       log: %s\n", r.log)
		}
	}
	return s.String()
}

// capList is caps as CapsEnv holds them.
func capList(caps []testutil.Capability) string {
	var s []string
	for _, c := range caps {
		s = append(s, string(c))
	}
	return strings.Join(s, ",")
}

func command(dir, name string, args ...string) *exec.Cmd {
	c := exec.Command(name, args...)
	c.Dir = dir
	return c
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func splitNonEmpty(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// cpio writes the "newc" format the kernel unpacks into its initramfs.
type cpio struct {
	w   io.Writer
	ino uint32
	err error
}

func newCpio(w io.Writer) *cpio { return &cpio{w: w, ino: 1} }

func (c *cpio) entry(name string, mode uint32, data []byte) {
	if c.err != nil {
		return
	}
	c.ino++
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	buf := make([]byte, 0, len(hdr)+len(name)+8+len(data)+4)
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = append(buf, 0)
	for len(buf)%4 != 0 {
		buf = append(buf, 0)
	}
	buf = append(buf, data...)
	for len(buf)%4 != 0 {
		buf = append(buf, 0)
	}
	_, c.err = c.w.Write(buf)
}

func (c *cpio) dir(name string) { c.entry(name, 0o040755, nil) }
func (c *cpio) file(name string, perm uint32, data []byte) {
	c.entry(name, 0o100000|perm, data)
}
func (c *cpio) symlink(name, target string) { c.entry(name, 0o120777, []byte(target)) }

func (c *cpio) copyFile(name, src string, perm uint32) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	c.file(name, perm, data)
	return c.err
}

func (c *cpio) close() error {
	c.entry("TRAILER!!!", 0, nil)
	return c.err
}

// verdict is a result in a word, for the progress lines.
func verdict(r result) string {
	if r.ok() {
		return "ok"
	}
	return "FAIL"
}
