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
// syscall sensor's ring buffer and are decoded here, in order with the
// syscall records, as a bpfsyscall.Extension. The program that wrote is
// found from the return addresses on the kernel stack, resolved against the
// JIT'd images of the programs loaded (see progs.go).
package kernelwrite

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/features"
	"github.com/bpfmon/bpfmon/internal/sensor/bpfsyscall"
)

// Hook kinds.
const (
	ModeAuto   = "auto"   // fexit where the kernel allows it, else kprobes
	ModeFexit  = "fexit"  // fexit (fentry) only
	ModeKprobe = "kprobe" // kprobes only
	ModeOff    = "off"
)

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
	// Ring is the syscall sensor's ring buffer, which the records go into.
	Ring *ebpf.Map
	// Mode is ModeAuto (default), ModeFexit or ModeKprobe.
	Mode string
	// CaptureBytes limits key and value bytes per record (as the syscall
	// sensor's).
	CaptureBytes int
	// SelfMaps and SelfPrograms are bpfmon's other maps and programs: its
	// maps are never reported, its programs never named as writers.
	SelfMaps, SelfPrograms []uint32
	// SelfTGID is bpfmon's process: its own bpf(2) calls are not
	// reported (the syscall sensor excludes them too). 0: this process.
	SelfTGID uint32
	// IncludeSelf reports the current process's bpf(2) calls too (tests).
	IncludeSelf bool
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
func (e *UnavailableError) Unwrap() error { return ErrUnavailable }

// Sensor is the loaded and attached kernel-side sensor.
type Sensor struct {
	// Hooks is the outcome for every function, hooked or not.
	Hooks []HookStatus

	coll       *ebpf.Collection // maps
	progs      []*ebpf.Program  // attached programs
	writeProgs []*ebpf.Program  // of which the write hooks
	loadProgs  []*ebpf.Program  // and the program load/free hooks
	links      []link.Link
	dec        *decoder
}

// New loads and attaches the sensor. It fails with an error wrapping
// ErrUnavailable when no write hook can be attached, naming each reason.
func New(cfg Config) (*Sensor, error) {
	if cfg.Ring == nil {
		return nil, errors.New("kernelwrite: no ring buffer")
	}
	mode := cfg.Mode
	if mode == "" {
		mode = ModeAuto
	}
	if mode != ModeAuto && mode != ModeFexit && mode != ModeKprobe {
		return nil, fmt.Errorf("unknown kernel hook mode %q: want %s, %s or %s", mode, ModeAuto, ModeFexit, ModeKprobe)
	}
	capBytes := cfg.CaptureBytes
	if capBytes <= 0 {
		capBytes = 4096
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("counting possible CPUs: %w", err)
	}
	self := cfg.SelfTGID
	if self == 0 && !cfg.IncludeSelf {
		self = uint32(os.Getpid())
	}

	spec, err := loadKw()
	if err != nil {
		return nil, fmt.Errorf("parsing the embedded BPF object: %w", err)
	}
	spec.Maps["kscratch"].MaxEntries = uint32(cpus)
	ringInfo, err := cfg.Ring.Info()
	if err != nil {
		return nil, fmt.Errorf("reading the ring buffer's info: %w", err)
	}
	spec.Maps["events"].MaxEntries = ringInfo.MaxEntries
	for name, v := range map[string]any{
		"capture_limit": uint32(capBytes),
		"possible_cpus": uint32(cpus),
		"wakeup_bytes":  uint64(min(ringInfo.MaxEntries/8, 256<<10)),
	} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("setting %s: %w (regenerate the BPF object with go generate)", name, err)
		}
	}

	s := &Sensor{}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	// The maps first, with the ring buffer replaced by the syscall
	// sensor's; then the programs, fexit where possible, kprobes for the
	// rest (see loader).
	mapsOnly := spec.Copy()
	mapsOnly.Programs = nil
	s.coll, err = ebpf.NewCollectionWithOptions(mapsOnly, ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{"events": cfg.Ring}, Cache: features.BTF()})
	if err != nil {
		return nil, fmt.Errorf("creating the kernel-side sensor's maps: %w", err)
	}
	replace := map[string]*ebpf.Map{"events": cfg.Ring}
	for name, m := range s.coll.Maps {
		if name != "events" {
			replace[name] = m
		}
	}
	// Before any hook runs: bpfmon's maps must be filtered from the first
	// record on.
	if err := s.protect(cfg.SelfMaps); err != nil {
		return nil, err
	}

	syms, err := readKallsyms()
	if err != nil {
		syms = nil // kprobes then cannot be placed; fexit needs no kallsyms
	}
	kernelBTF, btfErr := features.KernelSpec()
	kprobeErr := features.Kprobes()

	ld := &loader{spec: spec, opts: ebpf.CollectionOptions{MapReplacements: replace, Cache: features.BTF()}}
	s.Hooks = make([]HookStatus, len(hooks))
	for i, h := range hooks {
		s.Hooks[i] = HookStatus{Function: h.fn, Covers: h.covers}
	}
	attached := make([]*ebpf.Program, len(hooks))
	if mode != ModeKprobe {
		want := map[int]string{}
		for i, h := range hooks {
			if prog, err := checkFexitTarget(kernelBTF, btfErr, h); err != nil {
				s.Hooks[i].FexitError = err.Error()
			} else {
				want[i] = prog
			}
		}
		s.attach(ld, want, attached, func(i int, p *ebpf.Program) (link.Link, error) {
			return link.AttachTracing(link.TracingOptions{Program: p})
		}, func(i int, kind, reason string) {
			if kind != "" && hooks[i].progs {
				kind = "fentry"
			}
			s.Hooks[i].Kind, s.Hooks[i].FexitError = kind, reason
		}, "fexit")
	}
	if mode != ModeFexit {
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
			return link.Kprobe(hooks[i].fn, p, nil)
		}, func(i int, kind, reason string) {
			s.Hooks[i].Kind, s.Hooks[i].KprobeError = kind, reason
		}, "kprobe")
	}
	var selfProgs []uint32
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
		s.progs = append(s.progs, p)
	}
	if writeHooks == 0 {
		return nil, &UnavailableError{Hooks: s.Hooks, Reason: s.summarizeFailures()}
	}
	for _, p := range s.progs {
		if info, err := p.Info(); err == nil {
			if id, ok := info.ID(); ok {
				selfProgs = append(selfProgs, uint32(id))
			}
		}
	}

	s.dec, err = newDecoder(decoderConfig{
		selfTGID:     self,
		selfPrograms: append(slices.Clone(cfg.SelfPrograms), selfProgs...),
		capture:      capBytes,
		kallsyms:     syms,
		stats:        s.coll.Maps["kstats"],
		writeProgs:   s.writeProgs,
		loadProgs:    s.loadProgs,
		trackLoads:   s.tracksLoads(),
		hooked:       s.hookedFunctions(),
	})
	if err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// checkFexitTarget verifies, from the kernel's BTF, that fn exists and has
// the parameters the fexit program reads: the return value's slot follows
// them, and a changed signature would make the program read the wrong one.
// It returns the program that fits.
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
		s.links = append(s.links, l)
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

// protect fills self_maps with bpfmon's maps and freezes the sensor's
// maps against writes through bpf(2): no process may blind the filter,
// clear the counters or scribble on the scratch records. The programs
// still write what they own.
func (s *Sensor) protect(selfMaps []uint32) error {
	ids := append(slices.Clone(selfMaps), s.MapIDs()...)
	filter := s.coll.Maps["self_maps"]
	for _, id := range ids {
		if err := filter.Put(id, uint8(1)); err != nil {
			return fmt.Errorf("filling the self-map filter: %w", err)
		}
	}
	for name, m := range s.coll.Maps {
		if name == "events" || name == ".rodata" {
			continue
		}
		if err := m.Freeze(); err != nil {
			return fmt.Errorf("freezing the kernel-side sensor's %s map: %w", name, err)
		}
	}
	return nil
}

// MapIDs lists the sensor's own maps (the ring buffer is the syscall
// sensor's).
func (s *Sensor) MapIDs() []uint32 { return bpfsyscall.MapIDs(s.coll.Maps, "events") }

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

// Features describes the sensor, or why starting it failed (err from
// New), for `bpfmon features`.
func Features(s *Sensor, err error) features.KernelSensor {
	var hs []HookStatus
	var ue *UnavailableError
	switch {
	case s != nil:
		hs = s.Hooks
	case errors.As(err, &ue):
		hs = ue.Hooks
	}
	var k features.KernelSensor
	for _, h := range hs {
		k.Functions = append(k.Functions, features.FunctionHook{Function: h.Function, Covers: h.Covers, Kind: h.Kind, Reason: h.Reason()})
	}
	if s == nil {
		k.Err = err
		return k
	}
	k.Kind = s.Kind()
	k.TracksLoads = s.tracksLoads()
	for _, h := range s.Hooks {
		if h.Function == "htab_map_update_elem" {
			k.KernelCopy = h.Kind == "fexit"
		}
	}
	return k
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

// Owns implements bpfsyscall.Extension: the kinds of bpf/include/event.h
// from REC_KWRITE up to the LSM sensor's.
func (s *Sensor) Owns(kind uint32) bool { return kind >= recKwrite && kind < 32 }

// Decode implements bpfsyscall.Extension.
func (s *Sensor) Decode(raw []byte, calls bpfsyscall.Calls, emit func(*event.Event) error) error {
	return s.dec.Decode(raw, calls, emit)
}

// Tick implements bpfsyscall.Extension.
func (s *Sensor) Tick(emit func(*event.Event) error) error { return s.dec.Tick(emit) }

// Lost is the number of writes reported lost so far.
func (s *Sensor) Lost() uint64 { return s.dec.Lost() }

// Detach removes the hooks; records already written remain to be read.
func (s *Sensor) Detach() {
	for _, l := range s.links {
		l.Close()
	}
	s.links = nil
}

// Close detaches and frees everything.
func (s *Sensor) Close() error {
	s.Detach()
	for _, p := range s.progs {
		p.Close()
	}
	s.progs = nil
	if s.coll != nil {
		s.coll.Close()
		s.coll = nil
	}
	return nil
}
