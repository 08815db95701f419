// Package kernelwrite is the kernel-side sensor: it reports writes to maps
// that happen inside the kernel, above all those BPF programs make through
// the map helpers (bpf_map_update_elem, bpf_map_delete_elem,
// bpf_map_push_elem, bpf_map_pop_elem, the local-storage helpers). Such
// writes make no system call, so the syscall sensor cannot see them, and a
// malicious or compromised program rewriting a security tool's map is
// visible no other way.
//
// The kernel side (bpf/kernelwrite.c) hooks the map types' operations with
// fexit programs where the kernel allows BPF trampolines, and with kprobes
// otherwise, choosing per function at start. Its records go into the
// ring buffer every sensor shares, and are decoded here, in order with the
// syscall sensor's records: a bpf(2) call's own write completes that
// call's event instead of making a second one. The program that wrote is
// found from the return addresses on the kernel stack, resolved against the
// JIT'd images of the programs loaded (see progs.go).
package kernelwrite

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/features"
	"github.com/bpfmon/bpfmon/internal/sensor"
	"github.com/bpfmon/bpfmon/internal/sensor/record"
)

// Mode chooses the kind of hook.
type Mode string

// Hook kinds.
const (
	ModeAuto   Mode = "auto"   // fexit where the kernel allows it, else kprobes
	ModeFexit  Mode = "fexit"  // fexit (fentry) only
	ModeKprobe Mode = "kprobe" // kprobes only
	ModeOff    Mode = "off"
)

// ParseMode parses --kernel-hooks.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeAuto, ModeFexit, ModeKprobe, ModeOff:
		return m, nil
	}
	return "", fmt.Errorf("unknown --kernel-hooks %q: want auto, fexit, kprobe or off", s)
}

// Need is how much the set needs the sensor in mode m: a forced kind of
// hook must work, auto takes what there is.
func (m Mode) Need() sensor.Need {
	switch m {
	case ModeOff:
		return sensor.Off
	case ModeFexit, ModeKprobe:
		return sensor.Required
	}
	return sensor.Optional
}

// hook is one kernel function the sensor can hook, with its two programs.
type hook struct {
	fn     string // kernel function
	fexit  string // program name of the fexit (or fentry) build
	kprobe string // program name of the kprobe build
	params int    // parameters the fexit program expects the function to have
	// fexitAlt names fexit programs for other parameter counts.
	fexitAlt map[int]string
	covers   string // what it reports, for `bpfmon features`
	// progs marks the hooks that track program loads for attribution,
	// rather than reporting writes.
	progs bool
	// since is the first kernel with the function; before, its absence
	// is expected and harmless.
	since string
}

// Functions lists every kernel function the sensor hooks where it can:
// bpfmon features reports each, hooked or with the reason it is not.
func Functions() []string {
	fns := make([]string, len(hooks))
	for i, h := range hooks {
		fns[i] = h.fn
	}
	return fns
}

// hooks lists every function the sensor hooks. The map operations are
// those the verifier makes programs call directly for a known map
// (do_misc_fixups), and bpf(2) calls for non-per-CPU maps.
var hooks = []hook{
	{fn: "array_map_update_elem", fexit: "fx_array_upd", kprobe: "kp_array_upd", params: 4, covers: "array and percpu_array updates"},
	{fn: "htab_map_update_elem", fexit: "fx_htab_upd", kprobe: "kp_htab_upd", params: 4, covers: "hash updates"},
	{fn: "htab_map_delete_elem", fexit: "fx_htab_del", kprobe: "kp_htab_del", params: 2, covers: "hash and percpu_hash deletes"},
	{fn: "htab_lru_map_update_elem", fexit: "fx_lru_upd", kprobe: "kp_lru_upd", params: 4, covers: "lru_hash updates"},
	{fn: "htab_lru_map_delete_elem", fexit: "fx_lru_del", kprobe: "kp_lru_del", params: 2, covers: "lru_hash and lru_percpu_hash deletes"},
	{fn: "htab_percpu_map_update_elem", fexit: "fx_pcpu_upd", kprobe: "kp_pcpu_upd", params: 4, covers: "percpu_hash updates by programs"},
	{fn: "htab_lru_percpu_map_update_elem", fexit: "fx_lrupcpu_upd", kprobe: "kp_lrupcpu_upd", params: 4, covers: "lru_percpu_hash updates by programs"},
	{fn: "trie_update_elem", fexit: "fx_trie_upd", kprobe: "kp_trie_upd", params: 4, covers: "lpm_trie updates"},
	{fn: "trie_delete_elem", fexit: "fx_trie_del", kprobe: "kp_trie_del", params: 2, covers: "lpm_trie deletes"},
	{fn: "bpf_percpu_array_update", fexit: "fx_pcpuarr_sys", kprobe: "kp_pcpuarr_sys", params: 4, covers: "the kernel's copy of bpf(2) percpu_array updates"},
	{fn: "bpf_percpu_hash_update", fexit: "fx_pcpuhash_sys", kprobe: "kp_pcpuhash_sys", params: 4, covers: "the kernel's copy of bpf(2) percpu_hash updates"},
	{fn: "queue_stack_map_push_elem", fexit: "fx_qs_push", kprobe: "kp_qs_push", params: 3, covers: "queue and stack pushes"},
	{fn: "queue_map_pop_elem", fexit: "fx_queue_pop", kprobe: "kp_queue_pop", params: 2, covers: "queue pops"},
	{fn: "stack_map_pop_elem", fexit: "fx_stack_pop", kprobe: "kp_stack_pop", params: 2, covers: "stack pops"},
	{fn: "bloom_map_push_elem", fexit: "fx_bloom_push", kprobe: "kp_bloom_push", params: 3, covers: "bloom_filter pushes", since: "5.16"},
	{fn: "bpf_local_storage_update", fexit: "fx_lstor_upd", kprobe: "kp_lstor_upd", params: 5, covers: "local-storage creates and updates",
		fexitAlt: map[int]string{6: "fx_lstor_upd6"}},
	{fn: "bpf_task_storage_delete", fexit: "fx_task_del", kprobe: "kp_task_del", params: 5, covers: "task_storage deletes"},
	{fn: "bpf_task_storage_delete_recur", fexit: "fx_task_del_r", kprobe: "kp_task_del_r", params: 5, covers: "task_storage deletes by tracing programs", since: "6.2"},
	{fn: "bpf_sk_storage_delete", fexit: "fx_sk_del", kprobe: "kp_sk_del", params: 5, covers: "sk_storage deletes"},
	{fn: "bpf_inode_storage_delete", fexit: "fx_inode_del", kprobe: "kp_inode_del", params: 5, covers: "inode_storage deletes"},
	{fn: "bpf_cgrp_storage_delete", fexit: "fx_cgrp_del", kprobe: "kp_cgrp_del", params: 5, covers: "cgrp_storage deletes", since: "6.2"},
	{fn: "bpf_prog_kallsyms_add", fexit: "fe_prog_add", kprobe: "kp_prog_add", params: 1, covers: "program loads (attribution)", progs: true},
	{fn: "bpf_prog_kallsyms_del_all", fexit: "fe_prog_del", kprobe: "kp_prog_del", params: 1, covers: "program frees (attribution)", progs: true},
}

// HookStatus says how one function is hooked, or why it is not.
type HookStatus struct {
	Function string `json:"function"`
	Covers   string `json:"covers"`
	// Kind is "fexit", "fentry" or "kprobe"; empty when not hooked.
	Kind string `json:"kind,omitempty"`
	// FexitError and KprobeError say why each kind of hook was not used.
	FexitError  string `json:"fexit_error,omitempty"`
	KprobeError string `json:"kprobe_error,omitempty"`
}

// Reason says why the function is not hooked by fexit, or at all.
func (h HookStatus) Reason() string {
	var parts []string
	if h.FexitError != "" {
		parts = append(parts, "fexit: "+h.FexitError)
	}
	if h.KprobeError != "" {
		parts = append(parts, "kprobe: "+h.KprobeError)
	}
	return strings.Join(parts, "; ")
}

// Config configures the sensor.
type Config struct {
	// Mode is ModeAuto (the default, also for ""), ModeFexit or
	// ModeKprobe.
	Mode Mode
	// Writes is WritesSelective (the default, also for "") or WritesAll.
	Writes Writes
	// CountEntries bounds the kernel's table of counts (0:
	// DefaultCountEntries); SummaryEvery is how often counted writes are
	// summarised (0: DefaultSummaryEvery; at least a second).
	CountEntries int
	SummaryEvery time.Duration
	// CacheSlots is how many slots of each CPU's cache of counts are
	// used (0: all 64; a power of two). The tests make it 1, so that
	// every counted pair evicts the one before.
	CacheSlots int
}

// ErrUnavailable wraps the reason no kernel-side hook works here.
var ErrUnavailable = errors.New("no kernel-side hook is available")

// UnavailableError is returned by New when no write hook could be
// attached: each function's outcome, and the reasons in short.
type UnavailableError struct {
	Hooks  []HookStatus
	Reason string
}

func (e *UnavailableError) Error() string { return ErrUnavailable.Error() + ": " + e.Reason }
func (e *UnavailableError) Unwrap() []error {
	return []error{ErrUnavailable, sensor.ErrUnavailable}
}

// Sensor is the kernel-side sensor.
type Sensor struct {
	// Hooks is the outcome for every function, hooked or not, once
	// started.
	Hooks []HookStatus

	// The maps (Coll), the attached and control programs (Progs), the
	// links and losses: ProgramIDs, MapIDs, Stats.
	sensor.Base
	mode       Mode
	writes     Writes
	cfg        Config
	writeProgs []*ebpf.Program // of Progs, the write hooks
	loadProgs  []*ebpf.Program // and the program load/free hooks
	// The control programs that change the frozen selection and counts.
	ctlSelect, ctlForget *ebpf.Program
	ctlEpoch, ctlFlush   *ebpf.Program // kw_ctl_epoch, kw_ctl_flush: the counts' epochs and caches
	dec                  *decoder
}

// New returns the sensor, not started.
func New(cfg Config) *Sensor {
	mode := cfg.Mode
	if mode == "" {
		mode = ModeAuto
	}
	writes := cfg.Writes
	if writes == "" {
		writes = WritesSelective
	}
	return &Sensor{mode: mode, writes: writes, cfg: cfg}
}

// Name is the sensor's name in logs, errors and the set.
const Name = "kernel"

// Name implements sensor.Sensor.
func (s *Sensor) Name() string { return Name }

// Start loads and attaches the sensor (sensor.Sensor). It fails with an
// error wrapping ErrUnavailable when no write hook can be attached,
// naming each reason.
func (s *Sensor) Start(env *sensor.Env) error {
	err := s.start(env)
	if err != nil {
		s.Close()
	}
	return err
}

// start runs the start-up's steps in order: the object's constants, the
// maps (bpfmon's own protected before any hook runs), the hooks (fexit,
// then kprobes for the rest), and the decoder that reads their records.
func (s *Sensor) start(env *sensor.Env) error {
	capBytes := env.CaptureBytes
	if capBytes <= 0 || capBytes > record.MaxCapture {
		return fmt.Errorf("capture limit %d bytes out of range: must be between 1 and %d", capBytes, record.MaxCapture)
	}
	spec, replace, syms, epochNS, err := s.configure(env, capBytes)
	if err != nil {
		return err
	}
	if err := s.createMaps(env, spec, replace); err != nil {
		return err
	}
	ld := &loader{spec: spec, opts: sensor.Options(replace)}
	if err := s.attachHooks(ld, syms); err != nil {
		return err
	}
	return s.startDecoder(env, ld, syms, epochNS)
}

// configure reads the embedded object and sets its constants: table
// sizes, the itemizing mode, the summary epoch, the capture limit, and
// the kernel text bounds from kallsyms (nil when unreadable: kprobes then
// cannot be placed, and every writer is found by a stack walk). It
// returns the object with every program, and the ring to load it with.
func (s *Sensor) configure(env *sensor.Env, capBytes int) (*ebpf.CollectionSpec, map[string]*ebpf.Map, *kallsyms, uint64, error) {
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, nil, nil, 0, fmt.Errorf("counting possible CPUs: %w", err)
	}
	countEntries := s.cfg.CountEntries
	if countEntries <= 0 {
		countEntries = DefaultCountEntries
	}
	epochNS := uint64(s.cfg.SummaryEvery)
	if s.cfg.SummaryEvery <= 0 {
		epochNS = uint64(DefaultSummaryEvery)
	}
	epochNS = max(epochNS, uint64(time.Second))
	syms, err := readKallsyms()
	if err != nil {
		syms = nil // kprobes then cannot be placed; fexit needs no kallsyms
	}
	lo, hi := syscallCallers(syms)
	consts := []sensor.Constant{
		{Name: "itemize_all", Value: boolU32(s.writes == WritesAll)},
		{Name: "capture_limit", Value: uint32(capBytes)}, {Name: "possible_cpus", Value: uint32(cpus)},
		{Name: "sys_caller_lo", Value: lo}, {Name: "sys_caller_hi", Value: hi},
	}
	if n := s.cfg.CacheSlots; n > 0 {
		if n > int(kwKwLimitsKW_CACHE_SLOTS) || n&(n-1) != 0 {
			return nil, nil, nil, 0, fmt.Errorf("cache slots %d: want a power of two up to %d", n, kwKwLimitsKW_CACHE_SLOTS)
		}
		consts = append(consts, sensor.Constant{Name: "cache_mask", Value: uint32(n - 1)})
	}
	if syms != nil && syms.textStart != 0 && syms.textEnd > syms.textStart {
		// Without them every writer is found by a stack walk.
		consts = append(consts, sensor.Constant{Name: "core_lo", Value: syms.textStart}, sensor.Constant{Name: "core_hi", Value: syms.textEnd})
	}
	spec, replace, err := s.Prepare(env, sensor.Object{Name: Name, Spec: loadKw, Constants: consts,
		PerCPU: []string{"kscratch"}, Sizes: map[string]uint32{"kw_counts": uint32(countEntries)}})
	if err != nil {
		return nil, nil, nil, 0, err
	}
	return spec, replace, syms, epochNS, nil
}

// createMaps creates the sensor's maps, with the ring buffer replaced by
// bpfmon's, and adds them to the replacements the programs load with.
// bpfmon's own maps are filtered before any hook runs, from the first
// record on.
func (s *Sensor) createMaps(env *sensor.Env, spec *ebpf.CollectionSpec, replace map[string]*ebpf.Map) error {
	mapsOnly := spec.Copy()
	mapsOnly.Programs = nil
	var err error
	s.Coll, err = ebpf.NewCollectionWithOptions(mapsOnly, sensor.Options(replace))
	if err != nil {
		return fmt.Errorf("creating the kernel-side sensor's maps: %w", err)
	}
	for name, m := range s.Coll.Maps {
		if name != kwMapEvents {
			replace[name] = m
		}
	}
	return s.protect(env.Self.Maps)
}

// attachHooks attaches each hook, fexit where the mode and the kernel
// allow, kprobes for the rest (see loader), recording in s.Hooks how
// each went; it fails with an UnavailableError when no write hook is on.
func (s *Sensor) attachHooks(ld *loader, syms *kallsyms) error {
	kernelBTF, btfErr := features.KernelSpec()
	kprobeErr := features.Kprobes()
	s.Hooks = make([]HookStatus, len(hooks))
	for i, h := range hooks {
		s.Hooks[i] = HookStatus{Function: h.fn, Covers: h.covers}
	}
	attached := make([]*ebpf.Program, len(hooks))
	if s.mode != ModeKprobe {
		want := map[int]string{}
		for i, h := range hooks {
			if prog, err := checkFexitTarget(kernelBTF, btfErr, h); err != nil {
				s.Hooks[i].FexitError = err.Error()
			} else {
				want[i] = prog
			}
		}
		s.attach(ld, want, attached, func(i int, p *ebpf.Program) (link.Link, error) {
			return sensor.Hook{Prog: hooks[i].fexit, How: sensor.Tracing}.Link(p)
		}, func(i int, kind, reason string) {
			if kind != "" && hooks[i].progs {
				kind = "fentry"
			}
			s.Hooks[i].Kind, s.Hooks[i].FexitError = kind, reason
		}, "fexit")
	}
	if s.mode != ModeFexit {
		want := map[int]string{}
		for i, h := range hooks {
			if attached[i] != nil {
				continue
			}
			if err := kprobeTarget(h, syms, kprobeErr); err != nil {
				s.Hooks[i].KprobeError = err.Error()
			} else {
				want[i] = h.kprobe
			}
		}
		s.attach(ld, want, attached, func(i int, p *ebpf.Program) (link.Link, error) {
			return sensor.Hook{Prog: hooks[i].kprobe, How: sensor.Kprobe, Target: hooks[i].fn}.Link(p)
		}, func(i int, kind, reason string) {
			s.Hooks[i].Kind, s.Hooks[i].KprobeError = kind, reason
		}, "kprobe")
	}
	writeHooks := 0
	for i, p := range attached {
		switch {
		case p == nil:
			if hooks[i].since != "" && absent(hooks[i].fn, syms, kernelBTF) {
				s.Hooks[i].KprobeError += " (the function exists since Linux " + hooks[i].since + ")"
			}
			continue
		case hooks[i].progs:
			s.loadProgs = append(s.loadProgs, p)
		default:
			s.writeProgs = append(s.writeProgs, p)
			writeHooks++
		}
		s.Progs = append(s.Progs, p)
	}
	if writeHooks == 0 {
		return &UnavailableError{Hooks: s.Hooks, Reason: s.summarizeFailures()}
	}
	return nil
}

// startDecoder loads the selection's control program (unless every write
// is itemized) and hands the ring's kernel-side records to the decoder.
func (s *Sensor) startDecoder(env *sensor.Env, ld *loader, syms *kallsyms, epochNS uint64) error {
	var count *counter
	if s.writes != WritesAll {
		if err := s.loadControl(ld); err != nil {
			return err
		}
		cpus, err := ebpf.PossibleCPU()
		if err != nil {
			return fmt.Errorf("counting possible CPUs: %w", err)
		}
		count = &counter{counts: s.Coll.Maps[kwMapKwCounts], forget: s.ctlForget, flip: s.ctlEpoch, flush: s.ctlFlush,
			cpus: cpus, every: time.Duration(epochNS), next: time.Now().Add(time.Duration(epochNS)),
			maps: map[uint32]event.Map{}, last: map[uint32]uint64{}}
	}
	var err error
	s.dec, err = newDecoder(decoderConfig{
		selfTGID:     env.Self.TGID,
		selfPrograms: append(slices.Clone(env.Self.Programs), s.ProgramIDs()...),
		capture:      env.CaptureBytes,
		kallsyms:     syms,
		stats:        s.Coll.Maps[kwMapKstats],
		writeProgs:   s.writeProgs,
		loadProgs:    s.loadProgs,
		trackLoads:   s.tracksLoads(),
		hooked:       s.hookedFunctions(),
		count:        count,
		decoder:      &env.Ring.Decoder,
		kprobed:      s.kprobed(),
	})
	if err != nil {
		return err
	}
	for kind, h := range map[record.Kind]record.Handler{
		record.KindKwrite: s.dec.write, record.KindProg: s.dec.prog, record.KindProgGone: s.dec.prog,
	} {
		if err := env.Ring.Handle(kind, h); err != nil {
			return err
		}
	}
	s.Loss = env.Ring.CountLost(event.SourceKernel, s.dec.lostWrites)
	env.Ring.OnTick(s.dec.tick)
	env.Log.Info("watching writes by BPF programs, writer named from the kernel stack", "sensor", Name, "hooks", s.Kind(), "functions", s.Hooked(),
		"itemized", s.writes)
	return nil
}

func boolU32(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// checkFexitTarget verifies, from the kernel's BTF, that fn exists and has
// the parameters the fexit program reads: the return value's slot follows
// them, and a changed signature would make the program read the wrong one.
// It returns the program that fits.
// syscallCallerFuncs are the functions of the bpf(2) command code that call
// a map's operations (or the per-CPU syscall updates) themselves, and those
// they may be inlined into. A hooked operation returning into one of them
// is that command's own write, and its stack is not walked (see
// from_syscall in bpf/kernelwrite.c).
var syscallCallerFuncs = []string{
	"bpf_map_update_value", "map_update_elem", "generic_map_update_batch",
	"map_delete_elem", "generic_map_delete_batch", "map_lookup_and_delete_elem",
	"__sys_bpf",
}

// syscallCallers returns where syscallCallerFuncs (or their compiler-renamed
// copies) lie in this kernel, as the programs' sys_caller_lo/hi; without
// kallsyms, nothing: every write's stack is walked.
func syscallCallers(syms *kallsyms) (lo, hi [kwKwLimitsSYS_CALLERS]uint64) {
	if syms == nil {
		return lo, hi
	}
	i := 0
	for _, fn := range syscallCallerFuncs {
		for _, name := range []string{fn, syms.variant(fn)} {
			if name == "" || i == len(lo) {
				continue
			}
			if sp, ok := syms.span(name); ok && syms.inCore(sp.start) {
				lo[i], hi[i] = sp.start, sp.end
				i++
			}
		}
	}
	return lo, hi
}

func checkFexitTarget(spec *btf.Spec, specErr error, h hook) (string, error) {
	if specErr != nil {
		return "", fmt.Errorf("no kernel BTF: %w", specErr)
	}
	var fn *btf.Func
	if err := spec.TypeByName(h.fn, &fn); err != nil {
		return "", fmt.Errorf("%s is not in the kernel's BTF (inlined, renamed or absent)", h.fn)
	}
	proto, ok := fn.Type.(*btf.FuncProto)
	if !ok {
		return "", fmt.Errorf("%s has no prototype in BTF", h.fn)
	}
	n := len(proto.Params)
	switch {
	case h.progs || n == h.params:
		return h.fexit, nil
	case h.fexitAlt[n] != "":
		return h.fexitAlt[n], nil
	}
	return "", fmt.Errorf("%s has %d parameters in this kernel, the program expects %d", h.fn, n, h.params)
}

// attach loads the programs want names (by hook index) and attaches each
// with attachOne; set records, per hook, the kind attached or why not.
func (s *Sensor) attach(ld *loader, want map[int]string, attached []*ebpf.Program,
	attachOne func(int, *ebpf.Program) (link.Link, error), set func(i int, kind, reason string), kind string) {
	progs, errs := ld.load(want)
	for i, p := range progs {
		l, err := attachOne(i, p)
		if err != nil {
			p.Close()
			errs[i] = fmt.Errorf("attaching: %w", err)
			continue
		}
		attached[i] = p
		s.Links = append(s.Links, l)
		set(i, kind, "")
	}
	for i, err := range errs {
		set(i, "", err.Error())
	}
}

// loader loads the sensor's programs, its maps replaced by the sensor's.
type loader struct {
	spec *ebpf.CollectionSpec
	opts ebpf.CollectionOptions
}

// load loads the programs want names, by hook index. All at once first: the
// usual case, and loading them one by one costs the library's preparation
// each time. When that fails, one by one, so that a program the kernel
// refuses costs only its own hook; unless the kernel refused for a reason
// that holds for all (EPERM).
func (ld *loader) load(want map[int]string) (map[int]*ebpf.Program, map[int]error) {
	progs, errs := map[int]*ebpf.Program{}, map[int]error{}
	if len(want) == 0 {
		return progs, errs
	}
	names := map[string]bool{}
	for _, n := range want {
		names[n] = true
	}
	coll, err := ld.collection(names)
	if err == nil {
		for i, n := range want {
			progs[i] = coll.DetachProgram(n)
		}
		coll.Close()
		return progs, errs
	}
	if errors.Is(err, unix.EPERM) || len(want) == 1 {
		for i := range want {
			errs[i] = explainLoadError(err)
		}
		return progs, errs
	}
	for i, n := range want {
		coll, err := ld.collection(map[string]bool{n: true})
		if err != nil {
			errs[i] = explainLoadError(err)
			continue
		}
		progs[i] = coll.DetachProgram(n)
		coll.Close()
	}
	return progs, errs
}

func (ld *loader) collection(names map[string]bool) (*ebpf.Collection, error) {
	spec := ld.spec.Copy()
	for n := range spec.Programs {
		if !names[n] {
			delete(spec.Programs, n)
		}
	}
	if len(spec.Programs) != len(names) {
		return nil, errors.New("BPF object lacks a program: regenerate it with go generate")
	}
	return ebpf.NewCollectionWithOptions(spec, ld.opts)
}

// absent reports whether this kernel lacks fn altogether.
func absent(fn string, syms *kallsyms, spec *btf.Spec) bool {
	if syms != nil {
		if _, ok := syms.addr(fn); ok {
			return false
		}
		return syms.variant(fn) == ""
	}
	if spec != nil {
		var f *btf.Func
		return spec.TypeByName(fn, &f) != nil
	}
	return false
}

// kprobeTarget says why a kprobe cannot be placed on h.fn, or nil.
func kprobeTarget(h hook, syms *kallsyms, avail error) error {
	if avail != nil {
		return avail
	}
	if syms == nil {
		return nil // unknown: attaching will tell
	}
	if _, ok := syms.addr(h.fn); ok {
		return nil
	}
	if v := syms.variant(h.fn); v != "" {
		return fmt.Errorf("only the compiler's variant %s is in kallsyms: its arguments may be rewritten, so it is not hooked", v)
	}
	return fmt.Errorf("%s is not in kallsyms", h.fn)
}

func explainLoadError(err error) error {
	var ve *ebpf.VerifierError
	switch {
	case errors.Is(err, unix.EPERM):
		return errors.New("program load denied (EPERM)")
	case errors.As(err, &ve):
		return fmt.Errorf("the verifier rejected the program: %v", ve)
	}
	return fmt.Errorf("program load failed: %w", err)
}

// summarizeFailures gives the distinct reasons the write hooks failed,
// each kind of hook apart.
func (s *Sensor) summarizeFailures() string {
	var fx, kp []string
	for i, h := range s.Hooks {
		if hooks[i].progs || hooks[i].since != "" {
			continue // not needed to call the sensor unavailable
		}
		if h.FexitError != "" && !slices.Contains(fx, h.FexitError) {
			fx = append(fx, h.FexitError)
		}
		if h.KprobeError != "" && !slices.Contains(kp, h.KprobeError) {
			kp = append(kp, h.KprobeError)
		}
	}
	var parts []string
	if len(fx) > 0 {
		parts = append(parts, "fexit: "+strings.Join(fx, " / "))
	}
	if len(kp) > 0 {
		parts = append(parts, "kprobe: "+strings.Join(kp, " / "))
	}
	return strings.Join(parts, "; ")
}

// hookedFunctions lists the functions with a write hook attached.
func (s *Sensor) hookedFunctions() []string {
	var fns []string
	for i, h := range s.Hooks {
		if h.Kind != "" && !hooks[i].progs {
			fns = append(fns, h.Function)
		}
	}
	return fns
}

// loadControl loads the programs through which bpfmon changes the
// selection and empties the counts: the maps are frozen against bpf(2).
func (s *Sensor) loadControl(ld *loader) error {
	coll, err := ld.collection(map[string]bool{kwProgKwCtlSelect: true, kwProgKwCtlForget: true, kwProgKwCtlEpoch: true,
		kwProgKwCtlFlush: true})
	if err != nil {
		return fmt.Errorf("loading the kernel-side sensor's control programs: %w", err)
	}
	s.ctlSelect, s.ctlForget = coll.DetachProgram(kwProgKwCtlSelect), coll.DetachProgram(kwProgKwCtlForget)
	s.ctlEpoch, s.ctlFlush = coll.DetachProgram(kwProgKwCtlEpoch), coll.DetachProgram(kwProgKwCtlFlush)
	coll.Close()
	s.Progs = append(s.Progs, s.ctlSelect, s.ctlForget, s.ctlEpoch, s.ctlFlush)
	return nil
}

// kprobed lists the functions hooked by kprobes.
func (s *Sensor) kprobed() map[string]bool {
	m := map[string]bool{}
	for _, h := range s.Hooks {
		if h.Kind == "kprobe" {
			m[h.Function] = true
		}
	}
	return m
}

// tracksLoads reports whether the program-load hook is attached, so that
// programs loaded after start are known in order with their writes.
func (s *Sensor) tracksLoads() bool {
	for _, h := range s.Hooks {
		if h.Function == "bpf_prog_kallsyms_add" {
			return h.Kind != ""
		}
	}
	return false
}

// protect enters bpfmon's maps in kw_select (never reported) and freezes
// the sensor's maps against writes through bpf(2): no process may blind
// the filter or the selection, clear the counters or counts, or scribble
// on the scratch records. The programs still write what they own; bpfmon
// changes the selection and empties the counts through its control
// programs (kw_ctl_*).
func (s *Sensor) protect(selfMaps []uint32) error {
	ids := append(slices.Clone(selfMaps), s.MapIDs()...)
	filter := s.Coll.Maps[kwMapKwSelect]
	for _, id := range ids {
		if err := filter.Put(id, uint8(kwKwSelSEL_SELF)); err != nil {
			return fmt.Errorf("filling the self-map filter: %w", err)
		}
	}
	return s.Freeze()
}

// Kind summarises the hooks in use: "fexit", "kprobe" or "fexit+kprobe".
func (s *Sensor) Kind() string {
	var fx, kp bool
	for _, h := range s.Hooks {
		switch h.Kind {
		case "fexit", "fentry":
			fx = true
		case "kprobe":
			kp = true
		}
	}
	switch {
	case fx && kp:
		return "fexit+kprobe"
	case kp:
		return "kprobe"
	}
	return "fexit"
}

// Features implements sensor.Sensor: writes by BPF programs, their
// attribution, and the kernel's copy of bpf(2) writes; or why not.
func (s *Sensor) Features(startErr error) []features.Feature {
	const scannerFallback = "the content scanner finds their changes by reading maps, without naming the program"
	hs := s.Hooks
	var ue *UnavailableError
	if errors.As(startErr, &ue) {
		hs = ue.Hooks
	}
	var fns []features.FunctionHook
	for _, h := range hs {
		fns = append(fns, features.FunctionHook{Function: h.Function, Covers: h.Covers, Kind: h.Kind, Reason: h.Reason()})
	}
	if startErr != nil {
		reason := startErr.Error()
		if errors.Is(startErr, sensor.ErrNotStarted) {
			reason = "turned off (--kernel-hooks off)"
		}
		return []features.Feature{
			{Name: "kernel_side_writes", Detail: reason, Fallback: scannerFallback, Functions: fns},
			{Name: "program_attribution", Detail: "needs the kernel-side sensor, unavailable: " + reason,
				Fallback: "map_changed events from the scanner carry the map, key and values, not the program"},
			{Name: "syscall_kernel_copy", Detail: "needs the kernel-side sensor, unavailable: " + reason,
				Fallback: "bpf(2) keys and values are read from the caller's buffers at syscall entry"},
		}
	}
	var hooked, missing []string
	for _, f := range fns {
		if f.Kind != "" {
			hooked = append(hooked, f.Function)
		} else {
			missing = append(missing, f.Function)
		}
	}
	detail := fmt.Sprintf("%s on %d kernel functions", s.Kind(), len(hooked))
	if len(missing) > 0 {
		detail += "; not hooked: " + strings.Join(missing, ", ") + " (see functions)"
	}
	writes := features.Feature{Name: "kernel_side_writes", Available: true, Detail: detail, Functions: fns}
	attr := features.Feature{Name: "program_attribution", Available: true,
		Detail: "return addresses on the kernel stack, resolved against the JIT'd images of loaded programs; " +
			"loads tracked in order with the writes (bpf_prog_kallsyms_add), so short-lived programs are named too"}
	if !s.tracksLoads() {
		attr.Detail = "return addresses on the kernel stack, resolved against the JIT'd images of loaded programs; " +
			"program loads are not hooked, so each attribution is confirmed with the kernel and a program already unloaded is reported unknown"
	}
	kernelCopy := false
	for _, h := range s.Hooks {
		if h.Function == "htab_map_update_elem" {
			kernelCopy = h.Kind == "fexit"
		}
	}
	cp := features.Feature{Name: "syscall_kernel_copy", Available: kernelCopy,
		Detail: "bpf(2) writes carry the kernel's own copy of key and value (fexit inside the call)"}
	if !kernelCopy {
		cp.Detail = "the map operations are hooked by kprobes, which the kernel does not run inside bpf(2) map updates"
		cp.Fallback = "bpf(2) keys and values are read from the caller's buffers at syscall entry"
	}
	return []features.Feature{writes, attr, cp}
}

// Hooked counts the functions hooked for writes.
func (s *Sensor) Hooked() int {
	n := 0
	for i, h := range s.Hooks {
		if h.Kind != "" && !hooks[i].progs {
			n++
		}
	}
	return n
}

// Detach removes the hooks; records already written remain to be read.
func (s *Sensor) Detach() {
	if s.dec != nil {
		s.dec.detached.Store(true)
	}
	s.Base.Detach()
	// What the caches hold goes into the counts, before the final loss
	// report (a count kw_counts has no room for is lost) and drain.
	if s.dec != nil && s.dec.count != nil {
		s.dec.count.flushAll()
	}
}

// Close detaches and frees everything.
func (s *Sensor) Close() error {
	s.Detach()
	s.Base.Close()
	s.writeProgs, s.loadProgs = nil, nil
	s.ctlSelect, s.ctlForget, s.ctlEpoch, s.ctlFlush = nil, nil, nil, nil
	return nil
}
