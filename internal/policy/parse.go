package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"go.yaml.in/yaml/v3"
)

// maxSize bounds a policy file: a real one lists maps, owners and rule
// settings, so anything larger is the wrong file.
const maxSize = 1 << 20

// Load reads and validates a policy file.
func Load(path string) (*Policy, error) {
	// Opened without blocking: a named pipe would wait for a writer
	// forever, before anything said why.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fileErr(path, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, fileErr(path, err)
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: cannot read policy: it is %s, not a regular file", path, kind(fi.Mode()))
	}
	// Read through a limit rather than trusting Stat: /proc files and pipes
	// report no size.
	data, err := io.ReadAll(io.LimitReader(f, maxSize+1))
	if err != nil {
		return nil, fileErr(path, err)
	}
	return Parse(path, data)
}

// fileErr reports an os error without repeating the path the os error
// already holds, still wrapping the cause for errors.Is.
func fileErr(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("%s: cannot read policy: %w", path, err)
}

// Parse validates policy text; name is used in error messages in place of
// the path.
func Parse(name string, data []byte) (*Policy, error) {
	if len(data) > maxSize {
		return nil, fmt.Errorf("%s: policy is larger than 1 MiB; a policy lists maps, owners and rule settings: is this the right file?", name)
	}
	root, err := decode(name, data)
	if err != nil {
		return nil, err
	}
	w := walker{name: name}
	return w.policy(root)
}

// decode parses the one YAML document of a policy.
func decode(name string, data []byte) (root *yaml.Node, err error) {
	// The yaml library reports syntax errors by panicking internally and
	// recovering; should a bug let another panic escape, a policy file must
	// still never crash bpfmon.
	defer func() {
		if r := recover(); r != nil {
			root, err = nil, fmt.Errorf("%s: cannot parse YAML: %v", name, r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil, fmt.Errorf("%s: empty policy: want at least `version: 1`", name)
		}
		return nil, syntaxErr(name, err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return nil, fmt.Errorf("%s:%d:%d: a second YAML document starts here; a policy file holds one document: remove it or merge it into the first", name, next.Line, next.Column)
	case err != io.EOF:
		return nil, syntaxErr(name, err)
	}
	// A lone "---" or "~" is a document holding only null.
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || isNull(doc.Content[0]) {
		return nil, fmt.Errorf("%s: empty policy: want at least `version: 1`", name)
	}
	return doc.Content[0], nil
}

// syntaxErr keeps the library's message and its "line N", which is the
// line of the construct being parsed and not always the one at fault (for
// some errors it is one too low), so it is not passed off as a position.
func syntaxErr(name string, err error) error {
	return fmt.Errorf("%s: invalid YAML: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
}

// walker validates the document node by node, so that each error can say
// where it is.
type walker struct{ name string }

func (w walker) errf(n *yaml.Node, format string, args ...any) error {
	return fmt.Errorf("%s:%d:%d: %s", w.name, n.Line, n.Column, fmt.Sprintf(format, args...))
}

var (
	topKeys   = []string{"version", "protect", "owners", "rules", "alerts"}
	ownerKeys = []string{"exe", "cgroup", "pod_namespace", "pod_name_prefix"}
	ruleKeys  = []string{"severity", "enabled"}
	alertKeys = []string{"rate", "burst"}
	ruleNames = func() []string {
		names := make([]string, len(Rules))
		for i, r := range Rules {
			names[i] = r.Name
		}
		return names
	}()
)

// emptyHint is the fix for a top-level key written without a value.
var emptyHint = map[string]string{
	"version": "want `version: 1`",
	"protect": "list the maps to guard, such as `- id: 42`, or remove the key",
	"owners":  "list the owners, such as `- exe: /usr/bin/tracee`, or remove the key",
	"rules":   "give rule settings, such as `foreign-handle: {severity: low}`, or remove the key",
	"alerts":  "give `rate:` or `burst:`, or remove the key",
}

func (w walker) policy(root *yaml.Node) (*Policy, error) {
	root = resolve(root)
	if root.Kind != yaml.MappingNode {
		return nil, w.errf(root, "a policy is a mapping of keys starting with `version: 1`, got %s", describe(root))
	}
	// The version first: a file written for a newer bpfmon should be told
	// so, not that its new keys are unknown.
	var vkey, version *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if k := resolve(root.Content[i]); k.Kind == yaml.ScalarNode && k.Value == "version" {
			vkey, version = k, resolve(root.Content[i+1])
			break
		}
	}
	switch {
	case version == nil:
		return nil, w.errf(root, "missing `version: 1`; add it as the first line")
	case isNull(version):
		return nil, w.errf(vkey, "version has no value; %s", emptyHint["version"])
	case version.Kind != yaml.ScalarNode:
		return nil, w.errf(version, "version must be 1, got %s", describe(version))
	case version.Value != "1":
		return nil, w.errf(version, "unsupported policy version %s; this bpfmon knows only version 1: upgrade bpfmon or write a version 1 policy", describe(version))
	}

	p := Default()
	p.Source = w.name
	err := w.mapping(root, "key", topKeys, func(k, v *yaml.Node) error {
		if isNull(v) {
			return w.errf(k, "%s has no value; %s", k.Value, emptyHint[k.Value])
		}
		switch k.Value {
		case "protect":
			var sels []Selector
			err := w.list(k, v, "a list of maps to guard, such as `- id: 42`", func(e *yaml.Node) error {
				s, err := w.selector(e)
				sels = append(sels, s)
				return err
			})
			if err != nil {
				return err
			}
			p.AddProtect(sels...) // once: it builds its dedup set per call
			return nil
		case "owners":
			return w.list(k, v, "a list of owners, such as `- exe: /usr/bin/tracee`", func(e *yaml.Node) error {
				return w.owner(p, e)
			})
		case "rules":
			return w.rules(p, v)
		case "alerts":
			return w.alerts(p, v)
		}
		return nil // version, checked above
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// selector reads one protect entry: a mapping with exactly one key.
func (w walker) selector(e *yaml.Node) (Selector, error) {
	if e.Kind != yaml.MappingNode {
		return Selector{}, w.errf(e, "a protect entry is one KIND: VALUE pair, such as `id: 42`, got %s", describe(e))
	}
	if len(e.Content) == 0 {
		return Selector{}, w.errf(e, "empty protect entry; want one of %s, such as `id: 42`", orList(selectorKinds))
	}
	var sel Selector
	var immutable *bool
	err := w.mapping(e, "protect key", protectKeys, func(k, v *yaml.Node) error {
		if k.Value == "immutable" {
			if err := w.scalar(k, v); err != nil {
				return err
			}
			b, ok := map[string]bool{"true": true, "false": false}[v.Value]
			if !ok || v.ShortTag() != "!!bool" {
				return w.errf(v, "immutable is true or false, got %s", quote(v.Value))
			}
			immutable = &b
			return nil
		}
		if sel.Kind != "" {
			return w.errf(k, "a protect entry has one key, but this one has %s and %s; give each its own `- ` line", sel.Kind, k.Value)
		}
		if err := w.scalar(k, v); err != nil {
			return err
		}
		s, err := newSelector(k.Value, v.Value)
		if err != nil {
			return w.errf(v, "%v", err)
		}
		sel = s
		sel.Line = k.Line
		return nil
	})
	if err == nil && sel.Kind == "" {
		return sel, w.errf(e, "a protect entry with immutable needs the map too: one of %s, such as `id: 42`", orList(selectorKinds))
	}
	if immutable != nil {
		sel.Immutable = *immutable
	}
	return sel, err
}

// protectKeys are a protect entry's keys: one selector, and immutable.
var protectKeys = append(slices.Clone(selectorKinds), "immutable")

func (w walker) owner(p *Policy, e *yaml.Node) error {
	if e.Kind != yaml.MappingNode {
		return w.errf(e, "an owner is a mapping such as `exe: /usr/bin/tracee`, got %s", describe(e))
	}
	o := Owner{Line: e.Line}
	err := w.mapping(e, "owner key", ownerKeys, func(k, v *yaml.Node) error {
		if err := w.scalar(k, v); err != nil {
			return err
		}
		var err error
		switch k.Value {
		case "exe":
			o.Exe, err = cleanExe(v.Value)
		case "cgroup":
			o.Cgroup, err = cleanCgroup(v.Value)
		case "pod_namespace":
			o.PodNamespace, err = cleanNamespace(v.Value)
		case "pod_name_prefix":
			o.PodPrefix, err = cleanPodPrefix(v.Value)
		}
		if err != nil {
			return w.errf(v, "%v", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	switch {
	case o.Exe == "" && o.PodNamespace == "":
		return w.errf(e, "owner has no exe and no pod_namespace; want `exe: /absolute/path/of/the/executable` or `pod_namespace: NAMESPACE`")
	case o.PodPrefix != "" && o.PodNamespace == "":
		return w.errf(e, "owner has pod_name_prefix but no pod_namespace; add `pod_namespace: NAMESPACE`: pod names are only unique within one")
	case o.Cgroup != "" && o.PodNamespace != "":
		return w.errf(e, "owner has both cgroup and pod_namespace; a pod's cgroup is made per container, so give exe with pod_namespace, or exe with cgroup, in separate owners")
	}
	p.Owners = append(p.Owners, o)
	return nil
}

func (w walker) rules(p *Policy, v *yaml.Node) error {
	if v.Kind != yaml.MappingNode {
		return w.errf(v, "rules is a mapping of rule names to settings, such as `foreign-handle: {severity: low}`, got %s", describe(v))
	}
	return w.mapping(v, "rule", ruleNames, func(k, v *yaml.Node) error {
		r := p.Rules[k.Value]
		if isNull(v) {
			return w.errf(k, "rule %s has no settings; give `{severity: SEVERITY}` or `{enabled: false}`, or remove it", k.Value)
		}
		if v.Kind != yaml.MappingNode {
			return w.errf(v, "rule %s takes a mapping such as `{severity: low}` or `{enabled: false}`, got %s", k.Value, describe(v))
		}
		err := w.mapping(v, "rule setting", ruleKeys, func(sk, sv *yaml.Node) error {
			if err := w.scalar(sk, sv); err != nil {
				return err
			}
			if sk.Value == "severity" {
				if !slices.Contains(Severities, sv.Value) {
					return w.errf(sv, "unknown severity %s; want %s", quote(sv.Value), orList(Severities))
				}
				r.Severity = sv.Value
				return nil
			}
			// Only YAML's own booleans: a quoted "false" or yes/no is
			// more likely a mistake than a choice.
			// The value too: an explicit !!bool tag can be put on anything.
			v := strings.ToLower(sv.Value)
			if sv.ShortTag() != "!!bool" || v != "true" && v != "false" {
				return w.errf(sv, "enabled must be true or false, got %s", describe(sv))
			}
			r.Enabled = v == "true"
			return nil
		})
		p.Rules[k.Value] = r
		return err
	})
}

func (w walker) alerts(p *Policy, v *yaml.Node) error {
	if v.Kind != yaml.MappingNode {
		return w.errf(v, "alerts is a mapping such as `{rate: 10, burst: 20}`, got %s", describe(v))
	}
	return w.mapping(v, "alerts key", alertKeys, func(k, v *yaml.Node) error {
		if err := w.scalar(k, v); err != nil {
			return err
		}
		const lo, hi = 1, 100000
		n, err := strconv.Atoi(v.Value)
		if !digits(v.Value) || err != nil || n < lo || n > hi {
			return w.errf(v, "alerts.%s must be a whole number from %d to %d, got %s", k.Value, lo, hi, describe(v))
		}
		if k.Value == "rate" {
			p.AlertRate = n
		} else {
			p.AlertBurst = n
		}
		return nil
	})
}

// mapping calls fn for each key and value of mapping n, aliases resolved,
// after checking that the key is a string from allowed (named noun in
// errors) and not a repeat: YAML would let the last of two keys win,
// hiding the first.
func (w walker) mapping(n *yaml.Node, noun string, allowed []string, fn func(k, v *yaml.Node) error) error {
	seen := make(map[string]*yaml.Node)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			return w.errf(k, "%s must be a plain word, got %s", noun, describe(k))
		}
		if !slices.Contains(allowed, k.Value) {
			return w.errf(k, "unknown %s %s; want %s", noun, quote(k.Value), orList(allowed))
		}
		if first, ok := seen[k.Value]; ok {
			return w.errf(k, "duplicate %s %s, first at line %d; remove one", noun, quote(k.Value), first.Line)
		}
		seen[k.Value] = k
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

// list calls fn for each entry of sequence v, the value of key; want says
// what the list should hold.
func (w walker) list(key, v *yaml.Node, want string, fn func(e *yaml.Node) error) error {
	if v.Kind != yaml.SequenceNode {
		return w.errf(v, "%s must be %s, got %s", key.Value, want, describe(v))
	}
	for _, e := range v.Content {
		if err := fn(resolve(e)); err != nil {
			return err
		}
	}
	return nil
}

// scalar checks that the value of key is a single non-null value.
func (w walker) scalar(key, v *yaml.Node) error {
	if isNull(v) {
		return w.errf(key, "%s has no value; give one or remove the key", key.Value)
	}
	if v.Kind != yaml.ScalarNode {
		return w.errf(v, "%s takes a single value, got %s", key.Value, describe(v))
	}
	return nil
}

// resolve follows aliases. Anchors cannot be put on aliases, so one step
// suffices; the loop bound only guards against a malformed tree.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; i < 4 && n.Kind == yaml.AliasNode && n.Alias != nil; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what a node is, for "got ..." in messages.
func describe(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case isNull(n):
		return "no value"
	case n.Kind == yaml.ScalarNode:
		// Numbers and booleans bare, as written; anything else quoted.
		switch n.ShortTag() {
		case "!!int", "!!float", "!!bool":
			return clip(n.Value)
		}
		return quote(n.Value)
	}
	return "an alias"
}

// kind names what a file that is not a regular file is.
func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "not a regular file"
}
