package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"

	"github.com/bpfmon/bpfmon/internal/features"
	"github.com/bpfmon/bpfmon/internal/pods"
	"github.com/bpfmon/bpfmon/internal/scanner"
	"github.com/bpfmon/bpfmon/internal/sensor"
	"github.com/bpfmon/bpfmon/internal/sensor/record"
	"github.com/bpfmon/bpfmon/internal/sensors"
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
	r := probe()
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
	for _, f := range r.Features {
		if len(f.Functions) == 0 {
			continue
		}
		fmt.Fprintf(stdout, "\n%s, by kernel function:\n", f.Name)
		tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "FUNCTION\tHOOK\tCOVERS\tWHY NOT (fexit, or at all)")
		for _, h := range f.Functions {
			kind := h.Kind
			if kind == "" {
				kind = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", h.Function, kind, h.Covers, h.Reason)
		}
		tw.Flush()
	}
	return exitOK
}

// probe starts every sensor as watch would, none of them required, arms
// the enforcement programs (protecting nothing, they refuse nothing),
// reports what each gives or why not, and removes them all.
func probe() features.Report {
	var parts [][]features.Feature
	ring, err := record.NewRing(0)
	if err != nil {
		parts = append(parts, []features.Feature{{Name: "syscall_sensor", Detail: "creating the ring buffer: " + err.Error(),
			Fallback: "none: watch cannot report bpf(2) calls"}})
		return features.NewReport(append(parts, scanner.Features())...)
	}
	defer ring.Close()
	set := sensors.New(sensors.Config{Probe: true})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	set.Start(sensor.NewEnv(ring, 0, quiet)) // optional sensors: never an error
	set.Arm()
	defer set.Close()
	// The pod lookup, as watch does it with the default --cri-socket.
	pr := pods.New(pods.Config{})
	defer pr.Close()
	return features.NewReport(set.Features(), scanner.Features(), features.CrossView(), []features.Feature{pr.Feature()})
}
