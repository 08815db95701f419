package docgen

import (
	"bytes"
	"fmt"
	"strings"
)

// roff escapes s for roff text: backslashes, and a line that would start
// with a control character.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, ".") || strings.HasPrefix(line, "'") {
			line = `\&` + line
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

// paragraphs writes text's paragraphs (separated by blank lines) as roff
// paragraphs.
func paragraphs(b *bytes.Buffer, text string) {
	for i, p := range strings.Split(strings.TrimSpace(text), "\n\n") {
		if i > 0 {
			b.WriteString(".PP\n")
		}
		b.WriteString(roff(strings.Join(strings.Fields(p), " ")) + "\n")
	}
}

// Man renders bpfmon(8) from the same flag sets as the CLI reference.
func Man(in Input) []byte {
	var b bytes.Buffer
	b.WriteString(`.\" Generated from the code by make docs (cmd/bpfmon/reference_test.go, internal/docgen): do not edit.` + "\n")
	b.WriteString(".TH BPFMON 8 \"\" bpfmon \"System Administration\"\n")
	b.WriteString(".SH NAME\nbpfmon \\- report every change to every eBPF map on a Linux host\n")
	b.WriteString(".SH SYNOPSIS\n")
	for _, c := range in.Commands {
		fmt.Fprintf(&b, ".B bpfmon %s\n", c.Name)
		if !c.NoFlags {
			b.WriteString(".RI [ flags ]\n")
		}
		b.WriteString(".br\n")
	}
	b.WriteString(".SH DESCRIPTION\n")
	paragraphs(&b, `bpfmon reports each change to an eBPF map on this host (bpf(2) calls that write a map or obtain a handle
to one, writes by BPF programs where the kernel allows a hook, and changes found by reading map contents) with who made it,
to which map, what was written and the kernel's answer; it counts and reports anything it could not see. It raises tamper
alerts when a process that does not own a protected map touches it, and with --enforce refuses such writes where the kernel
has BPF LSM or BPF trampolines.

It needs root, or CAP_BPF with CAP_PERFMON (or CAP_SYS_ADMIN), and Linux 5.10 or later with BTF.`)
	b.WriteString(".SH COMMANDS\n")
	for _, c := range in.Commands {
		fmt.Fprintf(&b, ".SS bpfmon %s\n", c.Name)
		usage := c.Usage
		if _, rest, ok := strings.Cut(usage, "\n\n"); ok {
			usage = rest // the synopsis is the heading's
		} else {
			usage = upper(c.Summary) + "."
		}
		paragraphs(&b, usage)
		for _, f := range c.Flags {
			b.WriteString(".TP\n")
			fmt.Fprintf(&b, "\\fB\\-\\-%s\\fR", roff(f.Name))
			if f.Arg != "" {
				fmt.Fprintf(&b, " \\fI%s\\fR", roff(f.Arg))
			}
			b.WriteString("\n" + roff(f.Usage))
			if f.Default != "" {
				fmt.Fprintf(&b, " (default %s)", roff(f.Default))
			}
			b.WriteString("\n")
		}
	}
	b.WriteString(".SH EXIT STATUS\n")
	for _, e := range in.ExitCodes {
		fmt.Fprintf(&b, ".TP\n.B %d\n%s\n", e.Code, roff(upper(e.Doc)))
	}
	b.WriteString(".SH FILES\n.TP\n.I /sys/kernel/btf/vmlinux\nthe kernel's BTF, which bpfmon needs\n")
	b.WriteString(".TP\n.I /sys/kernel/tracing\ntracefs, mounted by bpfmon where its lineage sensor needs it and it is not\n")
	b.WriteString(".SH SEE ALSO\n.BR bpftool (8),\n.BR bpf (2).\n.PP\n" +
		"The documentation in the source tree: README.md, docs/ (events, alerts, enforcement, deployment, kernels, limits) " +
		"and docs/reference/ (commands, events and fields, alert rules, metrics).\n")
	return b.Bytes()
}
