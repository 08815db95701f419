package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/bpfmon/bpfmon/internal/features"
	"github.com/bpfmon/bpfmon/internal/sensor/bpfsyscall"
	"github.com/bpfmon/bpfmon/internal/sensor/kernelwrite"
	"github.com/bpfmon/bpfmon/internal/sensor/lsm"
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
	var p sensorProbe
	defer p.close()
	r := features.Probe(features.Sensors{Syscall: p.syscall, Kernel: p.kernel, Enforce: p.enforce})
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

// sensorProbe loads the sensors as watch would, notes what loaded and why
// not, and removes them.
type sensorProbe struct {
	sys *bpfsyscall.Sensor
}

func (p *sensorProbe) syscall() (string, error, error) {
	s, err := bpfsyscall.New(bpfsyscall.Config{})
	if err != nil {
		return "", nil, err
	}
	p.sys = s
	return s.Hook, s.HookFallback, nil
}

// kernel loads the kernel-side sensor on the syscall sensor's ring buffer.
func (p *sensorProbe) kernel() features.KernelSensor {
	if p.sys == nil {
		return features.KernelSensor{Err: errors.New("not probed: it writes into the syscall sensor's ring buffer, which did not load")}
	}
	kw, err := kernelwrite.New(kernelwrite.Config{Ring: p.sys.Ring(), SelfMaps: p.sys.MapIDs(), SelfPrograms: p.sys.ProgramIDs()})
	if kw != nil {
		defer kw.Close()
	}
	return kernelwrite.Features(kw, err)
}

// enforce loads and attaches the enforcement programs, protecting
// nothing (they then refuse nothing), and removes them.
func (p *sensorProbe) enforce() error {
	if p.sys == nil {
		return errors.New("not probed: its refusals go into the syscall sensor's ring buffer, which did not load")
	}
	en, err := lsm.New(lsm.Config{Ring: p.sys.Ring(), Calib: p.sys.Calib()})
	if err != nil {
		return err
	}
	defer en.Close()
	return en.Attach()
}

func (p *sensorProbe) close() {
	if p.sys != nil {
		p.sys.Close()
	}
}
