// Package policy says which BPF maps bpfmon guards and how loudly it
// alerts when someone tampers with them. A policy names the protected maps
// (by id, name, pin path or the programs that use them), the processes
// allowed to write them (owners), the severity of each built-in detection
// rule and the alert rate limit.
//
// Selectors only ever add protection. A map's name is chosen by whoever
// creates the map, so an attacker can name a map anything: a name may
// select a map to protect, but nothing in a policy exempts a map or a
// process from the rules, or an attacker could claim that exemption by
// choosing the name.
//
// A policy comes from a YAML file (bpfmon watch --policy FILE) and from
// repeated --protect KIND:VALUE flags (ParseSelector). The file holds one
// document:
//
//	version: 1                  # required; only 1 is known
//	protect:                    # maps to guard; each entry one selector key
//	  - id: 42                  # a map's global id (bpftool map list)
//	  - name: tracee_events     # a map's name, at most 15 bytes
//	  - pin: /sys/fs/bpf/tetragon/policy_conf
//	  - program: tracee_entry   # every map used by programs with this name
//	  - program_id: 17          # every map used by the program with this id
//	  - pin: /sys/fs/bpf/agent/config
//	    immutable: true         # never changes once protected: any change alerts
//	owners:                     # processes allowed to write protected maps,
//	  - exe: /usr/bin/tracee    # besides each map's creator and the processes
//	    cgroup: /system.slice/tracee.service  # holding it when bpfmon starts
//	  - pod_namespace: kube-system  # a process in a pod of this namespace, as
//	    pod_name_prefix: cilium-   # the container runtime names its pod
//	rules:                      # optional; override per rule
//	  foreign-handle: {severity: low}
//	  unexplained-change: {enabled: false}
//	alerts:
//	  rate: 10                  # alerts per second per rule, after the burst
//	  burst: 20
//
// Only version is required. Unknown keys, duplicate keys, values of the
// wrong type, empty values and second documents are errors, reported as
// FILE:LINE:COL: so that a typo never silently weakens the policy.
package policy

import (
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Selector kinds.
const (
	SelectID        = "id"         // a map's global id
	SelectName      = "name"       // a map's name (chosen by its creator: selects, never exempts)
	SelectPin       = "pin"        // a path where the map is pinned in a bpffs
	SelectProgram   = "program"    // maps used by programs with this name
	SelectProgramID = "program_id" // maps used by the program with this id
)

// selectorKinds is the order kinds are listed in messages.
var selectorKinds = []string{SelectID, SelectName, SelectPin, SelectProgram, SelectProgramID}

// mapNameLen is how many bytes of a map's name the kernel keeps
// (BPF_OBJ_NAME_LEN less the NUL).
const mapNameLen = 15

// Selector picks protected maps.
type Selector struct {
	Kind  string // one of the Select* constants
	Value string // as written, pins cleaned (for id/program_id the decimal number)
	ID    uint32 // for SelectID and SelectProgramID
	Line  int    // line in the policy file; 0 when from a --protect flag
	// Immutable maps must never change once protected: any change,
	// an owner's included, is an immutable-change alert.
	Immutable bool
}

// String gives the selector in the syntax ParseSelector accepts.
func (s Selector) String() string { return s.Kind + ":" + s.Value }

// ParseSelector parses the --protect flag's KIND:VALUE. Everything after the
// first colon is the value, so names may contain colons. "program-id" is
// accepted for program_id, as flags are usually spelled with dashes.
func ParseSelector(s string) (Selector, error) {
	kind, value, ok := strings.Cut(s, ":")
	if kind == "program-id" {
		kind = SelectProgramID
	}
	if !ok {
		return Selector{}, fmt.Errorf("invalid --protect %s: missing \":\"; want id:ID, name:NAME, pin:PATH, program:NAME or program_id:ID", quote(s))
	}
	sel, err := newSelector(kind, value)
	if err != nil {
		return Selector{}, fmt.Errorf("invalid --protect %s: %v", quote(s), err)
	}
	return sel, nil
}

// newSelector validates a selector for both the flag and the file, so the
// two accept exactly the same values. Its errors name the cause and the fix
// but not where the selector came from: the callers add that.
func newSelector(kind, value string) (Selector, error) {
	if !slices.Contains(selectorKinds, kind) {
		return Selector{}, fmt.Errorf("unknown kind %s; want id:ID, name:NAME, pin:PATH, program:NAME or program_id:ID", quote(kind))
	}
	if badBytes(value) {
		return Selector{}, fmt.Errorf("%s contains a NUL or line break, which no map, program or path has", kind)
	}
	sel := Selector{Kind: kind, Value: value}
	switch kind {
	case SelectID, SelectProgramID:
		id, err := parseID(kind, value)
		if err != nil {
			return Selector{}, err
		}
		// The canonical number, so "042" and "42" are one selector.
		sel.ID, sel.Value = id, strconv.FormatUint(uint64(id), 10)
	case SelectName:
		if value == "" {
			return Selector{}, fmt.Errorf("empty map name; want the name bpftool map list shows")
		}
		if len(value) > mapNameLen {
			return Selector{}, fmt.Errorf("map name %s is %d bytes, but the kernel keeps only the first %d bytes of a map's name, so it could never match; use %q as bpftool map list shows it",
				quote(value), len(value), mapNameLen, value[:mapNameLen])
		}
	case SelectPin:
		if !filepath.IsAbs(value) {
			return Selector{}, fmt.Errorf("pin path %s is not absolute; want the full path in the bpffs, such as /sys/fs/bpf/NAME", quote(value))
		}
		sel.Value = filepath.Clean(value)
	case SelectProgram:
		// No length limit: the kernel keeps 15 bytes of a program's name,
		// but BTF gives the full function name.
		if value == "" {
			return Selector{}, fmt.Errorf("empty program name; want the name bpftool prog list shows")
		}
	}
	return sel, nil
}

// parseID parses a map or program id: a decimal uint32 above 0, since the
// kernel hands out ids from 1.
func parseID(kind, v string) (uint32, error) {
	what, tool := "map", "bpftool map list"
	if kind == SelectProgramID {
		what, tool = "program", "bpftool prog list"
	}
	if len(v) > 1 && v[0] == '-' && digits(v[1:]) {
		return 0, fmt.Errorf("%s %s is negative; %s ids are whole numbers from 1 to 4294967295", kind, clip(v), what)
	}
	if !digits(v) {
		return 0, fmt.Errorf("%s %s is not a whole number; want a %s id from 1 to 4294967295, as %s shows", kind, quote(v), what, tool)
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%s %s is too large; %s ids are at most 4294967295", kind, clip(v), what)
	}
	if n == 0 {
		return 0, fmt.Errorf("%s 0 is not a %s id; ids start at 1", kind, what)
	}
	return uint32(n), nil
}

// digits reports whether s is a non-empty run of ASCII digits. Signs,
// underscores, hex and floats, which YAML or strconv might accept, are not
// ids anyone writes on purpose.
func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// badBytes reports a NUL or line break: no kernel object name or path has
// one, and they would forge lines in bpfmon's text output.
func badBytes(s string) bool { return strings.ContainsAny(s, "\x00\n\r") }

// Owner is a process allowed to write the protected maps: an executable
// (optionally in a cgroup), or a process in a Kubernetes pod namespace
// (optionally of pods whose name starts with PodPrefix, and of an
// executable). The pod is as the container runtime names it for the
// container id in the process's cgroup path, never as the process says.
type Owner struct {
	Exe          string // absolute path of an executable allowed to write the protected maps; "" = any (pod owners only)
	Cgroup       string // cgroup v2 path, as in /proc/PID/cgroup after "0::", e.g. /system.slice/tracee.service; "" = any cgroup
	PodNamespace string // Kubernetes namespace of the process's pod; "" = not a pod owner
	PodPrefix    string // the pod's name starts with it; "" = any pod of PodNamespace
	Line         int
}

// cleanNamespace validates a pod namespace: a DNS-1123 label, as
// Kubernetes requires of namespace names.
func cleanNamespace(ns string) (string, error) {
	if ns == "" {
		return "", fmt.Errorf("empty pod_namespace; want a Kubernetes namespace, such as kube-system")
	}
	if len(ns) > 63 || !dnsChars(ns, false) || ns[0] == '-' || ns[len(ns)-1] == '-' {
		return "", fmt.Errorf("pod_namespace %s is not a Kubernetes namespace name: want at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit, such as kube-system", quote(ns))
	}
	return ns, nil
}

// cleanPodPrefix validates the start of a pod name: a pod's name is a
// DNS-1123 subdomain (lowercase letters, digits, '-' and '.', at most 253).
func cleanPodPrefix(p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("empty pod_name_prefix; remove it to allow every pod of the namespace")
	}
	if len(p) > 253 || !dnsChars(p, true) {
		return "", fmt.Errorf("pod_name_prefix %s cannot start a pod name: want at most 253 lowercase letters, digits, '-' and '.', such as cilium-", quote(p))
	}
	return p, nil
}

// dnsChars reports whether s holds only lowercase letters, digits, '-'
// and, when dots, '.'.
func dnsChars(s string, dots bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || dots && c == '.') {
			return false
		}
	}
	return true
}

// cleanExe validates an owner's executable: the absolute path the kernel
// reports as /proc/PID/exe, which has symlinks resolved.
func cleanExe(exe string) (string, error) {
	switch {
	case exe == "":
		return "", fmt.Errorf("empty exe; want the path /proc/PID/exe shows, such as /usr/bin/tracee")
	case badBytes(exe):
		return "", fmt.Errorf("exe contains a NUL or line break, which no path has")
	case !filepath.IsAbs(exe):
		return "", fmt.Errorf("exe %s is not an absolute path; want the path /proc/PID/exe shows, such as /usr/bin/tracee", quote(exe))
	}
	return filepath.Clean(exe), nil
}

// cleanCgroup validates an owner's cgroup v2 path.
func cleanCgroup(cg string) (string, error) {
	switch {
	case cg == "":
		return "", fmt.Errorf("empty cgroup; remove it to allow any cgroup")
	case badBytes(cg):
		return "", fmt.Errorf("cgroup contains a NUL or line break, which no cgroup has")
	case !strings.HasPrefix(cg, "/"):
		return "", fmt.Errorf("cgroup %s does not start with \"/\"; want the path /proc/PID/cgroup shows after \"0::\", such as /system.slice/tracee.service", quote(cg))
	}
	// Cgroup paths always use "/", whatever the OS.
	return path.Clean(cg), nil
}

// Severities, lowest first.
const (
	SeverityLow      = "low"
	SeverityMedium   = "medium"
	SeverityHigh     = "high"
	SeverityCritical = "critical"
)

// Severities lists the severities, lowest first.
var Severities = []string{SeverityLow, SeverityMedium, SeverityHigh, SeverityCritical}

// RuleInfo is a built-in detection rule.
type RuleInfo struct {
	Name, Severity, Description string
}

// Rule names.
const (
	RuleForeignHandle      = "foreign-handle"
	RuleForeignWrite       = "foreign-write"
	RuleSelfAccess         = "self-access"
	RuleForeignProgram     = "foreign-program"
	RuleForeignMmap        = "foreign-mmap"
	RuleUnexplainedChange  = "unexplained-change"
	RuleEventsLost         = "events-lost"
	RuleWriteDenied        = "write-denied"
	RuleImmutableChange    = "immutable-change"
	RuleHolderWhileDown    = "holder-while-down"
	RuleMonitorGap         = "monitor-gap"
	RuleOwnerImpersonation = "owner-impersonation"
	RuleHiddenObject       = "hidden-object"
	RuleRewritingProgram   = "rewriting-program"
	RuleProgramDetached    = "program-detached"
)

// Rules are the built-in rules with their default severities.
var Rules = []RuleInfo{
	{RuleForeignHandle, SeverityMedium, "a process that is not an owner of a protected map obtained a handle to it (BPF_MAP_GET_FD_BY_ID, BPF_OBJ_GET)"},
	{RuleForeignWrite, SeverityCritical, "a process that is not an owner wrote, deleted or froze a protected map, or a BPF program not loaded by an owner wrote it"},
	{RuleSelfAccess, SeverityCritical, "another process obtained a handle to, or wrote, one of bpfmon's own maps"},
	{RuleForeignProgram, SeverityHigh, "a process that is not an owner loaded a BPF program that uses a protected map"},
	{RuleForeignMmap, SeverityHigh, "a process that is not an owner mmap'ed a protected map"},
	{RuleUnexplainedChange, SeverityHigh, "the content scanner found a change to a protected map that no reported write explains"},
	{RuleEventsLost, SeverityMedium, "events were lost while maps are protected: a write to a protected map may be among them"},
	{RuleWriteDenied, SeverityHigh, "--enforce refused access to a protected map"},
	{RuleImmutableChange, SeverityHigh, "a map the policy says is immutable changed, whoever changed it, an owner included"},
	{RuleHolderWhileDown, SeverityHigh, "at start, a process holds a writable fd to a protected map and is not one of the owners saved at the last stop (or named by the policy): it got the handle while bpfmon was not watching"},
	{RuleMonitorGap, SeverityHigh, "bpfmon's state file says it did not stop cleanly (killed, crashed, power lost): nothing was watched from its last sign of life to the restart; or the state file cannot be trusted (damaged, failing its checksum, writable by another user), so the gap's length and the owners are unknown"},
	{RuleOwnerImpersonation, SeverityHigh, "a process of an owner's executable in its cgroup is not the owner's work: started with loader variables (LD_PRELOAD, ...), moved into the cgroup from another, traced, or its memory written by another process"},
	{RuleHiddenObject, SeverityCritical, "a BPF map or program that bpf(2)'s own listing (GET_NEXT_ID, GET_FD_BY_ID) skips or refuses while other views show it (the kernel's bpf_map / bpf_prog iterators, a process's fd, a bpffs pin, a program's map ids): what a rootkit on the bpf syscall does to hide its maps and programs"},
	{RuleRewritingProgram, SeverityHigh, "a BPF program that can rewrite what user space reads or what the kernel returns (it calls bpf_probe_write_user or bpf_override_return, or is BPF_PROG_TYPE_SYSCALL) was loaded, or was loaded when bpfmon started: the tools of a rootkit on the bpf syscall"},
	{RuleProgramDetached, SeverityCritical, "a protected program (one that uses a protected map) lost an attachment, or another program took its attach point, and no owner of its maps was at work on them since the previous attachment scan: a tool switched off while its maps are left alone"},
}

// Rule is a built-in rule's setting in a policy.
type Rule struct {
	Name     string
	Severity string
	Enabled  bool
}

// Policy is a validated policy.
type Policy struct {
	Protect []Selector
	Owners  []Owner
	// Rules holds every built-in rule by name, defaults applied, then the file's settings.
	Rules map[string]Rule
	// AlertRate is the alerts per second per rule let through after the burst; AlertBurst the burst. Defaults 10 and 20.
	AlertRate  int
	AlertBurst int
	// Source is the file it came from, "" for Default().
	Source string
}

// Default alert rate limit.
const (
	defaultRate  = 10
	defaultBurst = 20
)

// Default is the policy without a file: every rule enabled at its default
// severity, nothing protected by selector, no extra owners, default rates.
func Default() *Policy {
	p := &Policy{Rules: make(map[string]Rule, len(Rules)), AlertRate: defaultRate, AlertBurst: defaultBurst}
	for _, r := range Rules {
		p.Rules[r.Name] = Rule{Name: r.Name, Severity: r.Severity, Enabled: true}
	}
	return p
}

// AddProtect appends selectors (from --protect flags), skipping ones whose
// kind and value are already there, wherever they came from.
func (p *Policy) AddProtect(sel ...Selector) {
	have := make(map[string]bool, len(p.Protect)+len(sel))
	for _, s := range p.Protect {
		have[s.String()] = true
	}
	for _, s := range sel {
		if !have[s.String()] {
			have[s.String()] = true
			p.Protect = append(p.Protect, s)
			continue
		}
		if s.Immutable { // the same maps, given twice: immutable wins
			for i := range p.Protect {
				if p.Protect[i].String() == s.String() {
					p.Protect[i].Immutable = true
				}
			}
		}
	}
}

// Enabled returns the rule if it exists and is enabled.
func (p *Policy) Enabled(rule string) (Rule, bool) {
	r, ok := p.Rules[rule]
	return r, ok && r.Enabled
}

// quote quotes s for a message, shortened: a value can be as long as the
// file, and the message needs only enough of it to recognize.
func quote(s string) string {
	if len(s) > clipLen {
		return strconv.Quote(s[:clipLen]) + "..."
	}
	return strconv.Quote(s)
}

// clip is quote for values known to be printable, such as numbers.
func clip(s string) string {
	if len(s) > clipLen {
		return s[:clipLen] + "..."
	}
	return s
}

const clipLen = 64

// orList joins words as "a, b or c" for messages.
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}
