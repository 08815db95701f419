package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/bpfmon/bpfmon/internal/features"
	"github.com/bpfmon/bpfmon/internal/sensor/bpfsyscall"
)

func runFeatures(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("features", flag.ContinueOnError)
	format := fs.String("format", "text", "output format: text, or json (one object)")
	fs.Usage = usageFunc(fs, `Usage: bpfmon features [flags]

Probes what this kernel lets bpfmon see: per sensor and capability, whether
it works here, the exact reason when it does not, and what bpfmon falls back
to. It loads small test programs and maps, and removes them.`)
	if code, stop := parse(fs, args, stdout, stderr); stop {
		return code
	}
	if *format != "text" && *format != "json" {
		fmt.Fprintf(stderr, "bpfmon features: unknown --format %q: want text or json\n", *format)
		return exitUsage
	}
	r := features.Probe(probeSyscallSensor)
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(r); err != nil {
			fmt.Fprintf(stderr, "bpfmon features: %v\n", err)
			return exitError
		}
		return exitOK
	}
	fmt.Fprintf(stdout, "kernel %s\n\n", r.Kernel)
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "FEATURE\tAVAILABLE\tDETAIL")
	for _, f := range r.Features {
		yes := "no"
		if f.Available {
			yes = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Name, yes, f.Detail)
		if f.Fallback != "" && !f.Available {
			fmt.Fprintf(tw, "\t\tfallback: %s\n", f.Fallback)
		}
	}
	tw.Flush()
	return exitOK
}

// probeSyscallSensor loads the syscall sensor, notes which build loaded,
// and removes it.
func probeSyscallSensor() (string, error, error) {
	s, err := bpfsyscall.New(bpfsyscall.Config{})
	if err != nil {
		return "", nil, err
	}
	defer s.Close()
	return s.Hook, s.HookFallback, nil
}
