// Package docgen writes bpfmon's reference pages (docs/reference/) and
// its man page (docs/bpfmon.8) from the tables in the code: the commands'
// flag sets, the output's fields (internal/output), the event types
// (internal/event), the alert rules (internal/policy), the metrics
// (internal/metrics) and the exit codes.
//
// It exists so that the reference cannot drift from the code: a page
// written by hand goes stale the day a flag or a field is added, and
// nothing notices. The generator is cmd/bpfmon's TestReference, which
// alone can reach the commands' flag sets (package main); `make docs`
// (or `go generate ./cmd/bpfmon`) runs it with -update-docs, and without
// it the test fails when a committed page differs from what the code
// says. This package only renders: it imports the leaves whose tables it
// reads, and nothing imports it but tests.
package docgen

import (
	"bytes"
	"flag"
	"fmt"
	"slices"
	"strings"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/metrics"
	"github.com/bpfmon/bpfmon/internal/output"
	"github.com/bpfmon/bpfmon/internal/policy"
)

// Flag is one flag of a command.
type Flag struct {
	Name    string
	Arg     string // the argument's name ("FILE"); "" for a boolean flag
	Usage   string
	Default string // "" when there is none worth saying
}

// Command is one bpfmon command.
type Command struct {
	Name    string
	Summary string // one line, from bpfmon's usage
	// Usage is what `bpfmon NAME --help` prints before its flags: the
	// synopsis, then what the command does.
	Usage string
	Flags []Flag
	// NoFlags: the command takes no flags at all (version).
	NoFlags bool
}

// ExitCode is one of bpfmon's exit codes.
type ExitCode struct {
	Code int
	Name string // the constant in cmd/bpfmon
	Doc  string
}

// Input is what the pages are generated from that only cmd/bpfmon knows.
type Input struct {
	Commands  []Command
	ExitCodes []ExitCode
}

// FlagsOf lists fs's flags as `bpfmon CMD --help` shows them (the same
// rules as cmd/bpfmon's usageFunc).
func FlagsOf(fs *flag.FlagSet) []Flag {
	var flags []Flag
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		fl := Flag{Name: f.Name, Arg: arg, Usage: usage}
		if d := f.DefValue; d != "" && d != "0" && d != "[]" && d != "false" {
			fl.Default = d
		}
		flags = append(flags, fl)
	})
	return flags
}

// Header starts every generated Markdown page.
const Header = "<!-- Generated from the code by `make docs` (cmd/bpfmon/reference_test.go, internal/docgen): do not edit. -->\n\n"

// Files renders every generated file, by path from the repository's root.
func Files(in Input) map[string][]byte {
	return map[string][]byte{
		"docs/reference/cli.md":     CLI(in),
		"docs/reference/events.md":  Events(),
		"docs/reference/alerts.md":  Alerts(),
		"docs/reference/metrics.md": Metrics(),
		"docs/bpfmon.8":             Man(in),
	}
}

// cell makes s safe in a Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

// code quotes s as Markdown code, with a longer fence where s holds a
// backquote.
func code(s string) string {
	if strings.Contains(s, "`") {
		return "`` " + s + " ``"
	}
	return "`" + s + "`"
}

// CLI renders docs/reference/cli.md: every command, its flags, and the
// exit codes.
func CLI(in Input) []byte {
	var b bytes.Buffer
	b.WriteString(Header)
	b.WriteString("# Command-line reference\n\n")
	b.WriteString("Every command and flag of `bpfmon`, as `bpfmon COMMAND --help` prints them. Flags are written `--name` " +
		"(`-name` is accepted too); a flag's value follows it after a space or `=`. The man page, [bpfmon(8)](../bpfmon.8), " +
		"is generated from the same flag sets.\n\n")
	b.WriteString("| command | what it does |\n| --- | --- |\n")
	for _, c := range in.Commands {
		fmt.Fprintf(&b, "| [`bpfmon %s`](#bpfmon-%s) | %s |\n", c.Name, c.Name, cell(c.Summary))
	}
	for _, c := range in.Commands {
		fmt.Fprintf(&b, "\n## bpfmon %s\n\n", c.Name)
		if c.Usage != "" {
			fmt.Fprintf(&b, "```\n%s\n```\n\n", strings.TrimSpace(c.Usage))
		} else {
			fmt.Fprintf(&b, "```\nbpfmon %s\n```\n\n%s.\n\n", c.Name, upper(c.Summary))
		}
		if c.NoFlags {
			b.WriteString("It takes no flags.\n")
			continue
		}
		b.WriteString("| flag | default | meaning |\n| --- | --- | --- |\n")
		for _, f := range c.Flags {
			name := "--" + f.Name
			if f.Arg != "" {
				name += " " + f.Arg
			}
			def := ""
			if f.Default != "" {
				def = code(f.Default)
			}
			fmt.Fprintf(&b, "| %s | %s | %s |\n", code(name), def, cell(f.Usage))
		}
	}
	b.WriteString("\n## Exit codes\n\n| code | meaning |\n| --- | --- |\n")
	for _, e := range in.ExitCodes {
		fmt.Fprintf(&b, "| %d | %s |\n", e.Code, cell(e.Doc))
	}
	return b.Bytes()
}

func upper(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// typeList writes ts as Markdown code, or "every event" for nil, or
// "every event but ..." where that is shorter.
func typeList(ts []event.Type) string {
	if ts == nil {
		return "every event"
	}
	var in, out []string
	for _, t := range event.Types {
		if slices.Contains(ts, t) {
			in = append(in, "`"+string(t)+"`")
		} else {
			out = append(out, "`"+string(t)+"`")
		}
	}
	if len(out) < len(in) && len(out) > 0 {
		return "every event but " + strings.Join(out, ", ")
	}
	return strings.Join(in, ", ")
}

// Events renders docs/reference/events.md: the event types, the fields
// each carries, and every field's JSON key, text form and meaning.
func Events() []byte {
	var b bytes.Buffer
	b.WriteString(Header)
	b.WriteString("# Events and fields reference\n\n")
	b.WriteString("`bpfmon watch` writes one event per line: with `--format json` one JSON object, with `--format text` " +
		"one line for people. A field is absent when it does not apply. The JSON keys and their order are a stable interface. " +
		"What the events mean, with examples, is in [events.md](../events.md).\n\n")
	b.WriteString("## Event types\n\n")
	b.WriteString("| event | source | reported for | writes the map | gives a handle | notes |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, d := range output.EventDocs {
		info := d.Type.Info()
		fmt.Fprintf(&b, "| [`%s`](#%s) | %s | %s | %s | %s | %s |\n", d.Type, anchor(string(d.Type)),
			"`"+strings.Join(info.Sources, "`, `")+"`", cell(d.Command), yes(info.Modifies), yes(info.Handle), cell(d.Doc))
	}
	b.WriteString("\n\"Writes the map\": a stranger's successful call is tampering (`foreign-write`); \"gives a handle\": " +
		"the caller gets a new fd to the map (`foreign-handle`).\n")
	b.WriteString("\n## Fields\n\n")
	b.WriteString("Members of `alert`, `process`, `map`, `prog` and `lineage` are written as paths (`map.id` is the `id` " +
		"of the `map` object). \"Text\" is how `--format text` shows the field; blank: not shown.\n\n")
	b.WriteString("| JSON key | text | carried by | meaning |\n| --- | --- | --- | --- |\n")
	for _, f := range output.Fields {
		text := ""
		if f.Text != "" {
			word, more, _ := strings.Cut(f.Text, " ")
			text = code(word)
			if more != "" {
				text += " " + more
			}
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", f.JSON, cell(text), typeList(f.Events), cell(f.Doc))
	}
	b.WriteString("\n## Fields by event\n")
	for _, d := range output.EventDocs {
		fmt.Fprintf(&b, "\n### %s\n\n", d.Type)
		var keys []string
		for _, f := range output.FieldsOf(d.Type) {
			keys = append(keys, "`"+f.JSON+"`")
		}
		b.WriteString(strings.Join(keys, ", ") + "\n")
	}
	return b.Bytes()
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return ""
}

// anchor is the id GitHub gives a heading of text.
func anchor(text string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r > 0x7f:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Alerts renders docs/reference/alerts.md: the rules and their default
// severities.
func Alerts() []byte {
	var b bytes.Buffer
	b.WriteString(Header)
	b.WriteString("# Alert rules reference\n\n")
	fmt.Fprintf(&b, "The built-in tamper rules and their default severities (%s, lowest first). A policy file can give a rule "+
		"another severity or disable it; how owners are decided and what each rule weighs is in [alerts.md](../alerts.md).\n\n",
		"`"+strings.Join(policy.Severities, "`, `")+"`")
	b.WriteString("| rule | severity | matches |\n| --- | --- | --- |\n")
	for _, r := range policy.Rules {
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", r.Name, r.Severity, cell(r.Description))
	}
	return b.Bytes()
}

// Metrics renders docs/reference/metrics.md.
func Metrics() []byte {
	var b bytes.Buffer
	b.WriteString(Header)
	b.WriteString("# Metrics reference\n\n")
	b.WriteString("What `bpfmon watch --metrics-addr HOST:PORT` serves on `/metrics`, besides the Go runtime's and the " +
		"process's own (`go_*`, `process_*`, from client_golang). What each is for, and how to scrape them, is in " +
		"[deployment.md](../deployment.md#metrics---metrics-addr).\n\n")
	b.WriteString("| metric | type | labels | help |\n| --- | --- | --- | --- |\n")
	for _, d := range metrics.Reference() {
		labels := ""
		if len(d.Labels) > 0 {
			labels = "`" + strings.Join(d.Labels, "`, `") + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", d.Name, d.Type, labels, cell(d.Help))
	}
	return b.Bytes()
}
