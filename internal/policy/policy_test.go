package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

const examplePath = "../../contrib/policy.example.yaml"

func TestExample(t *testing.T) {
	p, err := Load(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Source = examplePath
	want.Protect = []Selector{
		{Kind: SelectID, Value: "42", ID: 42, Line: 19},
		{Kind: SelectName, Value: "tracee_events", Line: 22},
		{Kind: SelectPin, Value: "/sys/fs/bpf/tetragon/policy_conf", Line: 24, Immutable: true},
		{Kind: SelectProgram, Value: "tracee_entry", Line: 28},
		{Kind: SelectProgramID, Value: "17", ID: 17, Line: 30},
	}
	want.Owners = []Owner{
		{Exe: "/usr/bin/tracee", Cgroup: "/system.slice/tracee.service", Line: 37},
		{Exe: "/usr/local/bin/agent-config-tool", Line: 44},
		{PodNamespace: "kube-system", PodPrefix: "cilium-", Line: 53},
	}
	want.Rules[RuleForeignHandle] = Rule{Name: RuleForeignHandle, Severity: SeverityLow, Enabled: true}
	want.Rules[RuleUnexplainedChange] = Rule{Name: RuleUnexplainedChange, Severity: SeverityHigh, Enabled: false}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("example policy:\n got %+v\nwant %+v", p, want)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name, in string
		check    func(*Policy) bool
	}{
		{"minimal", "version: 1\n", func(p *Policy) bool {
			d := Default()
			d.Source = "t.yaml"
			return reflect.DeepEqual(p, d)
		}},
		{"quoted version and explicit document", "---\nversion: '1'\n...\n", func(p *Policy) bool { return p.AlertRate == 10 }},
		{"empty lists", "version: 1\nprotect: []\nowners: []\nrules: {}\nalerts: {}\n", func(p *Policy) bool {
			return len(p.Protect) == 0 && len(p.Owners) == 0 && p.AlertBurst == 20
		}},
		{"immutable, given twice: immutable wins", "version: 1\nprotect:\n  - id: 5\n    immutable: true\n  - name: x\n    immutable: false\n  - id: 5\n", func(p *Policy) bool {
			return reflect.DeepEqual(p.Protect, []Selector{
				{Kind: SelectID, Value: "5", ID: 5, Line: 3, Immutable: true},
				{Kind: SelectName, Value: "x", Line: 5},
			})
		}},
		{"immutable after a plain entry", "version: 1\nprotect:\n  - id: 5\n  - immutable: true\n    id: 5\n", func(p *Policy) bool {
			return len(p.Protect) == 1 && p.Protect[0].Immutable
		}},
		{"id as string, leading zero, cleaned pin", "version: 1\nprotect:\n  - id: \"042\"\n  - pin: /sys/fs/bpf//a/../b/\n", func(p *Policy) bool {
			return reflect.DeepEqual(p.Protect, []Selector{
				{Kind: SelectID, Value: "42", ID: 42, Line: 3},
				{Kind: SelectPin, Value: "/sys/fs/bpf/b", Line: 4},
			})
		}},
		{"duplicate selectors kept once", "version: 1\nprotect:\n  - id: 1\n  - id: 01\n", func(p *Policy) bool {
			return len(p.Protect) == 1
		}},
		{"name with colon, 15 bytes", "version: 1\nprotect:\n  - name: 'a:b'\n  - name: abcdefghijklmno\n", func(p *Policy) bool {
			return len(p.Protect) == 2 && p.Protect[0].Value == "a:b"
		}},
		{"aliases", "version: 1\nowners:\n  - &o {exe: /bin/x//y}\n  - *o\n", func(p *Policy) bool {
			return len(p.Owners) == 2 && p.Owners[1].Exe == "/bin/x/y"
		}},
		{"pod owners", "version: 1\nowners:\n  - pod_namespace: kube-system\n  - {pod_namespace: cilium, pod_name_prefix: cilium-, exe: /usr/bin/cilium-agent}\n", func(p *Policy) bool {
			return reflect.DeepEqual(p.Owners, []Owner{
				{PodNamespace: "kube-system", Line: 3},
				{PodNamespace: "cilium", PodPrefix: "cilium-", Exe: "/usr/bin/cilium-agent", Line: 4},
			})
		}},
		{"rules and alerts", "version: 1\nrules:\n  write-denied: {severity: critical, enabled: false}\n  events-lost: {enabled: True}\nalerts: {rate: 1, burst: 100000}\n", func(p *Policy) bool {
			_, on := p.Enabled(RuleWriteDenied)
			r, lost := p.Enabled(RuleEventsLost)
			return !on && p.Rules[RuleWriteDenied].Severity == SeverityCritical && lost && r.Severity == SeverityMedium &&
				p.AlertRate == 1 && p.AlertBurst == 100000
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("t.yaml", []byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(p) {
				t.Errorf("unexpected policy %+v", p)
			}
		})
	}
}

// errorCases are also the fuzz test's seeds.
var errorCases = []struct {
	name, in string
	want     string // prefix of the error
	also     string // in the error too
}{
	{"unknown top-level key", "version: 1\nprotcet:\n  - id: 1\n",
		`t.yaml:2:1: unknown key "protcet"; want version, protect, owners, rules or alerts`, ""},
	{"unknown protect kind", "version: 1\nprotect:\n  - nmae: x\n",
		`t.yaml:3:5: unknown protect key "nmae"; want id, name, pin, program, program_id or immutable`, ""},
	{"dashed kind in file", "version: 1\nprotect:\n  - program-id: 3\n",
		`t.yaml:3:5: unknown protect key "program-id"`, ""},
	{"immutable alone", "version: 1\nprotect:\n  - immutable: true\n",
		`t.yaml:3:5: a protect entry with immutable needs the map too`, "`id: 42`"},
	{"immutable not a bool", "version: 1\nprotect:\n  - id: 1\n    immutable: yes\n",
		`t.yaml:4:16: immutable is true or false, got "yes"`, ""},
	{"immutable quoted", "version: 1\nprotect:\n  - id: 1\n    immutable: \"true\"\n",
		`t.yaml:4:16: immutable is true or false`, ""},
	{"two keys in one protect entry", "version: 1\nprotect:\n  - id: 1\n    name: x\n",
		`t.yaml:4:5: a protect entry has one key, but this one has id and name`, "own `- ` line"},
	{"protect entry not a mapping", "version: 1\nprotect:\n  - 42\n",
		`t.yaml:3:5: a protect entry is one KIND: VALUE pair`, `got 42`},
	{"empty protect entry", "version: 1\nprotect:\n  - {}\n",
		`t.yaml:3:5: empty protect entry`, ""},
	{"protect not a list", "version: 1\nprotect:\n  id: 1\n",
		`t.yaml:3:3: protect must be a list of maps to guard`, "got a mapping"},
	{"id 0", "version: 1\nprotect:\n  - id: 0\n",
		`t.yaml:3:9: id 0 is not a map id; ids start at 1`, ""},
	{"id -1", "version: 1\nprotect:\n  - id: -1\n",
		`t.yaml:3:9: id -1 is negative`, ""},
	{"id 4294967296", "version: 1\nprotect:\n  - id: 4294967296\n",
		`t.yaml:3:9: id 4294967296 is too large; map ids are at most 4294967295`, ""},
	{"id abc", "version: 1\nprotect:\n  - id: \"abc\"\n",
		`t.yaml:3:9: id "abc" is not a whole number`, "bpftool map list"},
	{"id float", "version: 1\nprotect:\n  - id: 4.0\n",
		`t.yaml:3:9: id "4.0" is not a whole number`, ""},
	{"id hex", "version: 1\nprotect:\n  - program_id: 0x10\n",
		`t.yaml:3:17: program_id "0x10" is not a whole number`, "bpftool prog list"},
	{"id empty", "version: 1\nprotect:\n  - id:\n",
		`t.yaml:3:5: id has no value`, ""},
	{"id a list", "version: 1\nprotect:\n  - id: [1]\n",
		`t.yaml:3:9: id takes a single value, got a list`, ""},
	{"name of 16 bytes", "version: 1\nprotect:\n  - name: abcdefghijklmnop\n",
		`t.yaml:3:11: map name "abcdefghijklmnop" is 16 bytes`, `could never match; use "abcdefghijklmno"`},
	{"name with newline", "version: 1\nprotect:\n  - name: \"a\\nb\"\n",
		`t.yaml:3:11: name contains a NUL or line break`, ""},
	{"relative pin", "version: 1\nprotect:\n  - pin: tetragon/x\n",
		`t.yaml:3:10: pin path "tetragon/x" is not absolute`, "/sys/fs/bpf/NAME"},
	{"empty program", "version: 1\nprotect:\n  - program: ''\n",
		`t.yaml:3:14: empty program name`, ""},
	{"owner without exe", "version: 1\nowners:\n  - cgroup: /x\n",
		`t.yaml:3:5: owner has no exe`, ""},
	{"relative exe", "version: 1\nowners:\n  - exe: bin/tracee\n",
		`t.yaml:3:10: exe "bin/tracee" is not an absolute path`, "/proc/PID/exe"},
	{"cgroup not starting with /", "version: 1\nowners:\n  - exe: /usr/bin/tracee\n    cgroup: system.slice/tracee.service\n",
		`t.yaml:4:13: cgroup "system.slice/tracee.service" does not start with "/"`, `after "0::"`},
	{"unknown owner key", "version: 1\nowners:\n  - exe: /x\n    uid: 0\n",
		`t.yaml:4:5: unknown owner key "uid"; want exe, cgroup, pod_namespace or pod_name_prefix`, ""},
	{"pod prefix without namespace", "version: 1\nowners:\n  - pod_name_prefix: cilium-\n",
		`t.yaml:3:5: owner has no exe and no pod_namespace`, ""},
	{"pod prefix with exe, without namespace", "version: 1\nowners:\n  - {exe: /x, pod_name_prefix: cilium-}\n",
		`t.yaml:3:5: owner has pod_name_prefix but no pod_namespace`, "add `pod_namespace: NAMESPACE`"},
	{"pod namespace with cgroup", "version: 1\nowners:\n  - {exe: /x, cgroup: /a, pod_namespace: a}\n",
		`t.yaml:3:5: owner has both cgroup and pod_namespace`, ""},
	{"pod namespace upper case", "version: 1\nowners:\n  - pod_namespace: Kube-System\n",
		`t.yaml:3:20: pod_namespace "Kube-System" is not a Kubernetes namespace name`, "such as kube-system"},
	{"pod namespace too long", "version: 1\nowners:\n  - pod_namespace: " + strings.Repeat("a", 64) + "\n",
		`t.yaml:3:20: pod_namespace "` + strings.Repeat("a", 64) + `" is not a Kubernetes namespace name`, ""},
	{"pod namespace ending in -", "version: 1\nowners:\n  - pod_namespace: kube-\n",
		`t.yaml:3:20: pod_namespace "kube-" is not`, ""},
	{"empty pod namespace", "version: 1\nowners:\n  - pod_namespace: ''\n",
		`t.yaml:3:20: empty pod_namespace`, ""},
	{"pod namespace a list", "version: 1\nowners:\n  - pod_namespace: [a]\n",
		`t.yaml:3:20: pod_namespace takes a single value, got a list`, ""},
	{"pod prefix with a slash", "version: 1\nowners:\n  - {pod_namespace: a, pod_name_prefix: a/b}\n",
		`t.yaml:3:41: pod_name_prefix "a/b" cannot start a pod name`, ""},
	{"unknown rule", "version: 1\nrules:\n  foreign-writes: {severity: low}\n",
		`t.yaml:3:3: unknown rule "foreign-writes"; want foreign-handle, foreign-write, self-access, foreign-program, foreign-mmap, unexplained-change, events-lost, write-denied, immutable-change, holder-while-down, monitor-gap, owner-impersonation, hidden-object, rewriting-program or program-detached`, ""},
	{"bad severity", "version: 1\nrules:\n  foreign-write: {severity: urgent}\n",
		`t.yaml:3:29: unknown severity "urgent"; want low, medium, high or critical`, ""},
	{"enabled not a bool", "version: 1\nrules:\n  foreign-write:\n    enabled: \"no\"\n",
		`t.yaml:4:14: enabled must be true or false, got "no"`, ""},
	{"enabled tagged but not a bool", "version: 1\nrules:\n  foreign-write: {enabled: !!bool yes}\n",
		`t.yaml:3:28: enabled must be true or false, got yes`, ""},
	{"rule without settings", "version: 1\nrules:\n  foreign-write:\n",
		`t.yaml:3:3: rule foreign-write has no settings`, ""},
	{"unknown rule setting", "version: 1\nrules:\n  foreign-write: {level: low}\n",
		`t.yaml:3:19: unknown rule setting "level"; want severity or enabled`, ""},
	{"rate 0", "version: 1\nalerts:\n  rate: 0\n",
		`t.yaml:3:9: alerts.rate must be a whole number from 1 to 100000, got 0`, ""},
	{"burst too large", "version: 1\nalerts:\n  burst: 100001\n",
		`t.yaml:3:10: alerts.burst must be a whole number from 1 to 100000, got 100001`, ""},
	{"alerts empty", "version: 1\nalerts:\n",
		`t.yaml:2:1: alerts has no value`, ""},
	{"duplicate top-level key", "version: 1\nprotect: []\nprotect:\n  - id: 1\n",
		`t.yaml:3:1: duplicate key "protect", first at line 2; remove one`, ""},
	{"duplicate owner key", "version: 1\nowners:\n  - {exe: /a, exe: /b}\n",
		`t.yaml:3:15: duplicate owner key "exe", first at line 3`, ""},
	{"missing version", "protect:\n  - id: 1\n",
		"t.yaml:1:1: missing `version: 1`", ""},
	{"version 2", "version: 2\nfuture: key\n",
		`t.yaml:1:10: unsupported policy version 2; this bpfmon knows only version 1`, ""},
	{"version empty", "\n\nversion:\n",
		"t.yaml:3:1: version has no value; want `version: 1`", ""},
	{"not a mapping", "- version: 1\n",
		"t.yaml:1:1: a policy is a mapping of keys starting with `version: 1`, got a list", ""},
	// The library's line here is the line of the unclosed "[" less one: its
	// lines are kept as they are, not offered as positions.
	{"yaml syntax error", "version: 1\nprotect:\n  - id: [1\n",
		`t.yaml: invalid YAML: line 2: did not find expected ',' or ']'`, ""},
	{"tab indent", "version: 1\nowners:\n\t- exe: /x\n",
		`t.yaml: invalid YAML: line 3: found character that cannot start any token`, ""},
	{"unknown anchor", "version: 1\nprotect: *p\n",
		`t.yaml: invalid YAML: unknown anchor 'p' referenced`, ""},
	{"empty file", "",
		"t.yaml: empty policy: want at least `version: 1`", ""},
	{"only comments", "# nothing\n\n   # here\n",
		"t.yaml: empty policy: want at least `version: 1`", ""},
	{"only a document marker", "--- # nothing\n",
		"t.yaml: empty policy: want at least `version: 1`", ""},
	{"only null", "~\n",
		"t.yaml: empty policy: want at least `version: 1`", ""},
	{"second YAML document", "version: 1\n---\nversion: 1\n",
		`t.yaml:2:1: a second YAML document starts here; a policy file holds one document`, ""},
	{"empty second document", "version: 1\n---\n",
		`t.yaml:2:1: a second YAML document`, ""},
	{"too large", "version: 1\n" + strings.Repeat("#", 1<<20),
		`t.yaml: policy is larger than 1 MiB`, ""},
}

func TestParseErrors(t *testing.T) {
	for _, tt := range errorCases {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("t.yaml", []byte(tt.in))
			if err == nil {
				t.Fatalf("no error; policy %+v", p)
			}
			if p != nil {
				t.Errorf("policy %+v returned with the error", p)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, tt.want) || !strings.Contains(msg, tt.also) {
				t.Errorf("error\n  %s\nwant it to start with\n  %s\nand contain %q", msg, tt.want, tt.also)
			}
			if strings.HasSuffix(msg, ".") || strings.Contains(msg, "\n") {
				t.Errorf("error %q ends with a period or has a newline", msg)
			}
		})
	}
}

// A large policy parses in linear time, and a long value is shortened in
// its error.
func TestLarge(t *testing.T) {
	var b strings.Builder
	b.WriteString("version: 1\nprotect:\n")
	const n = 60000
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "  - id: %d\n", i)
	}
	p, err := Parse("t.yaml", []byte(b.String()))
	if err != nil || len(p.Protect) != n {
		t.Fatalf("Parse = %v; want %d selectors", err, n)
	}

	_, err = Parse("t.yaml", []byte("version: 1\nprotect:\n  - pin: "+strings.Repeat("x", 100000)+"\n"))
	if err == nil || len(err.Error()) > 300 || !strings.Contains(err.Error(), `xxx"... is not absolute`) {
		t.Errorf("error for a long value: %.500v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.yaml")
	_, err := Load(missing)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want fs.ErrNotExist", err)
	}
	if err == nil || !strings.HasPrefix(err.Error(), missing+": ") || strings.Count(err.Error(), missing) != 1 {
		t.Errorf("Load(missing) = %v, want it to name the path once", err)
	}

	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte("version: 1\n"+strings.Repeat("#", 1<<20)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.HasPrefix(err.Error(), big+": policy is larger than 1 MiB") {
		t.Errorf("Load(big) = %v", err)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("version: 1\nrules:\n  nope: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); err == nil || !strings.HasPrefix(err.Error(), bad+":3:3: unknown rule") {
		t.Errorf("Load(bad) = %v", err)
	}

	if _, err := Load(dir); err == nil || !strings.HasPrefix(err.Error(), dir+": cannot read policy") {
		t.Errorf("Load(dir) = %v", err)
	}
}

func TestParseSelector(t *testing.T) {
	good := []struct {
		in   string
		want Selector
		str  string // String(), when not in
	}{
		{"id:42", Selector{Kind: SelectID, Value: "42", ID: 42}, ""},
		{"id:042", Selector{Kind: SelectID, Value: "42", ID: 42}, "id:42"},
		{"id:4294967295", Selector{Kind: SelectID, Value: "4294967295", ID: 4294967295}, ""},
		{"name:tracee_events", Selector{Kind: SelectName, Value: "tracee_events"}, ""},
		{"name:a:b", Selector{Kind: SelectName, Value: "a:b"}, ""},
		{"name:abcdefghijklmno", Selector{Kind: SelectName, Value: "abcdefghijklmno"}, ""},
		{"pin:/sys/fs/bpf/x", Selector{Kind: SelectPin, Value: "/sys/fs/bpf/x"}, ""},
		{"pin:/sys/fs/bpf//x/./y/", Selector{Kind: SelectPin, Value: "/sys/fs/bpf/x/y"}, "pin:/sys/fs/bpf/x/y"},
		{"program:foo", Selector{Kind: SelectProgram, Value: "foo"}, ""},
		{"program:a_very_long_function_name_from_btf", Selector{Kind: SelectProgram, Value: "a_very_long_function_name_from_btf"}, ""},
		{"program_id:7", Selector{Kind: SelectProgramID, Value: "7", ID: 7}, ""},
		{"program-id:5", Selector{Kind: SelectProgramID, Value: "5", ID: 5}, "program_id:5"},
	}
	for _, tt := range good {
		got, err := ParseSelector(tt.in)
		if err != nil {
			t.Errorf("ParseSelector(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseSelector(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		str := tt.str
		if str == "" {
			str = tt.in
		}
		if got.String() != str {
			t.Errorf("ParseSelector(%q).String() = %q, want %q", tt.in, got.String(), str)
		}
		if again, err := ParseSelector(got.String()); err != nil || again != got {
			t.Errorf("ParseSelector(%q) = %+v, %v; does not round-trip %+v", got.String(), again, err, got)
		}
	}

	const kinds = "want id:ID, name:NAME, pin:PATH, program:NAME or program_id:ID"
	bad := []struct{ in, want string }{
		{"nmae:x", `invalid --protect "nmae:x": unknown kind "nmae"; ` + kinds},
		{"42", `invalid --protect "42": missing ":"; ` + kinds},
		{"", `invalid --protect "": missing ":"`},
		{":x", `invalid --protect ":x": unknown kind ""`},
		{"ID:1", `invalid --protect "ID:1": unknown kind "ID"`},
		{"id:", `invalid --protect "id:": id "" is not a whole number`},
		{"id:0", `invalid --protect "id:0": id 0 is not a map id; ids start at 1`},
		{"id:-1", `invalid --protect "id:-1": id -1 is negative`},
		{"id:+1", `invalid --protect "id:+1": id "+1" is not a whole number`},
		{"id: 1", `invalid --protect "id: 1": id " 1" is not a whole number`},
		{"id:4294967296", `invalid --protect "id:4294967296": id 4294967296 is too large`},
		{"id:99999999999999999999999", `invalid --protect "id:99999999999999999999999": id 99999999999999999999999 is too large`},
		{"program_id:x", `invalid --protect "program_id:x": program_id "x" is not a whole number; want a program id`},
		{"name:", `invalid --protect "name:": empty map name`},
		{"name:abcdefghijklmnop", `invalid --protect "name:abcdefghijklmnop": map name "abcdefghijklmnop" is 16 bytes, but the kernel keeps only the first 15 bytes`},
		{"name:a\x00b", `invalid --protect "name:a\x00b": name contains a NUL or line break`},
		{"program:a\nb", `invalid --protect "program:a\nb": program contains a NUL or line break`},
		{"pin:x/y", `invalid --protect "pin:x/y": pin path "x/y" is not absolute`},
		{"pin:", `invalid --protect "pin:": pin path "" is not absolute`},
		{"program:", `invalid --protect "program:": empty program name`},
	}
	for _, tt := range bad {
		got, err := ParseSelector(tt.in)
		if err == nil {
			t.Errorf("ParseSelector(%q) = %+v, want an error", tt.in, got)
			continue
		}
		if !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("ParseSelector(%q) error\n  %v\nwant it to start with\n  %s", tt.in, err, tt.want)
		}
	}
}

func TestAddProtect(t *testing.T) {
	p, err := Parse("t.yaml", []byte("version: 1\nprotect:\n  - id: 42\n"))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := ParseSelector("id:42")
	b, _ := ParseSelector("name:x")
	p.AddProtect(a, b, b)
	want := []Selector{{Kind: SelectID, Value: "42", ID: 42, Line: 3}, b}
	if !reflect.DeepEqual(p.Protect, want) {
		t.Errorf("Protect = %+v, want %+v", p.Protect, want)
	}
}

// readmePath is the reference page whose rules table documents each
// rule's default severity (generated from Rules by make docs, and held
// current by cmd/bpfmon's TestReference).
const readmePath = "../../docs/reference/alerts.md"

// readmeSeverities returns the rules table of the alert rules reference:
// rule name to default severity, in its order.
func readmeSeverities(t *testing.T) (names []string, sev map[string]string) {
	t.Helper()
	data, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	start := slices.Index(lines, "| rule | severity | matches |")
	if start < 0 || start+1 >= len(lines) || lines[start+1] != "| --- | --- | --- |" {
		t.Fatalf("%s: no rules table (| rule | severity | matches |)", readmePath)
	}
	sev = map[string]string{}
	for i := start + 2; i < len(lines) && strings.HasPrefix(lines[i], "|"); i++ {
		cells := strings.Split(lines[i], "|")
		if len(cells) < 4 {
			t.Fatalf("%s:%d: not a row of the rules table: %q", readmePath, i+1, lines[i])
		}
		name := strings.TrimSpace(cells[1])
		if len(name) < 3 || name[0] != '`' || name[len(name)-1] != '`' {
			t.Fatalf("%s:%d: rule %q is not `quoted`", readmePath, i+1, name)
		}
		name = name[1 : len(name)-1]
		if _, dup := sev[name]; dup {
			t.Errorf("%s:%d: rule %s listed twice", readmePath, i+1, name)
		}
		sev[name] = strings.TrimSpace(cells[2])
		names = append(names, name)
	}
	return names, sev
}

func TestDefault(t *testing.T) {
	p := Default()
	if p.AlertRate != 10 || p.AlertBurst != 20 || p.Source != "" || len(p.Protect) != 0 || len(p.Owners) != 0 {
		t.Errorf("Default() = %+v", p)
	}
	// The fourteen rules, each once: one per Rule* name.
	wantNames := []string{RuleForeignHandle, RuleForeignWrite, RuleSelfAccess, RuleForeignProgram,
		RuleForeignMmap, RuleUnexplainedChange, RuleEventsLost, RuleWriteDenied, RuleImmutableChange,
		RuleHolderWhileDown, RuleMonitorGap, RuleOwnerImpersonation, RuleHiddenObject, RuleRewritingProgram, RuleProgramDetached}
	var names []string
	for _, ri := range Rules {
		names = append(names, ri.Name)
	}
	if !slices.Equal(names, wantNames) || len(wantNames) != 15 {
		t.Errorf("Rules are %q, want the 15 %q", names, wantNames)
	}
	if len(p.Rules) != 15 {
		t.Errorf("Default() has %d rules, want 15", len(p.Rules))
	}
	// Every rule's default severity is the reference's, and one of Severities.
	readme, sev := readmeSeverities(t)
	if len(readme) != 15 {
		t.Errorf("%s lists %d rules %q, want the 15", readmePath, len(readme), readme)
	}
	for _, name := range readme {
		if !slices.Contains(names, name) {
			t.Errorf("%s lists rule %q, which is not in Rules", readmePath, name)
		}
	}
	for _, ri := range Rules {
		want, ok := sev[ri.Name]
		if !ok {
			t.Errorf("rule %s is not in the rules table of %s", ri.Name, readmePath)
			continue
		}
		if !slices.Contains(Severities, want) {
			t.Errorf("%s gives rule %s severity %q, not one of %q", readmePath, ri.Name, want, Severities)
		}
		r, ok := p.Enabled(ri.Name)
		if !ok || r != (Rule{Name: ri.Name, Severity: want, Enabled: true}) {
			t.Errorf("Default().Enabled(%q) = %+v, %v; want enabled with severity %q (%s)", ri.Name, r, ok, want, readmePath)
		}
		if ri.Severity != want {
			t.Errorf("Rules gives %s severity %q, %s %q", ri.Name, ri.Severity, readmePath, want)
		}
		if strings.TrimSpace(ri.Description) == "" {
			t.Errorf("rule %s has no description", ri.Name)
		}
	}
	if _, ok := p.Enabled("no-such-rule"); ok {
		t.Error("Enabled(no-such-rule) = true")
	}
	// Default hands out its own map: changing one policy leaves the next alone.
	p.Rules[RuleForeignWrite] = Rule{}
	if _, ok := Default().Enabled(RuleForeignWrite); !ok {
		t.Error("Default() shares its rules map")
	}
}

func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile(examplePath); err == nil {
		f.Add(data)
	}
	for _, tt := range errorCases {
		if len(tt.in) < 4096 {
			f.Add([]byte(tt.in))
		}
	}
	f.Add([]byte("version: 1\nx: &a [*a]\nprotect: &p [*p]\n"))
	f.Add([]byte("version: 1\nowners: [&o {exe: /a}, *o]\nrules: {foreign-write: &r {enabled: false}, events-lost: *r}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("f.yaml", data)
		if (p == nil) == (err == nil) {
			t.Fatalf("Parse = %v, %v: want exactly one", p, err)
		}
		if err != nil {
			if msg := err.Error(); !strings.HasPrefix(msg, "f.yaml") || len(msg) > 1024 || strings.ContainsAny(msg, "\n\x00") {
				t.Fatalf("error %q does not start with the name, is too long or has a newline or NUL", msg)
			}
			return
		}
		// What Parse accepts must be as valid as what ParseSelector accepts.
		for _, s := range p.Protect {
			if again, err := ParseSelector(s.String()); err != nil || again.Kind != s.Kind || again.Value != s.Value || again.ID != s.ID {
				t.Fatalf("selector %+v from the file: ParseSelector(%q) = %+v, %v", s, s.String(), again, err)
			}
		}
		if len(p.Rules) != len(Rules) || p.AlertRate < 1 || p.AlertBurst < 1 {
			t.Fatalf("bad policy %+v", p)
		}
	})
}
