package metrics

import (
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bpfmon/bpfmon/internal/features"
	"github.com/bpfmon/bpfmon/internal/scanner"
)

// Doc documents one of bpfmon's own metrics.
type Doc struct {
	Name   string
	Type   string // counter, gauge or histogram
	Labels []string
	Help   string
}

// Reference lists bpfmon's own metrics (bpfmon_*), sorted by name, as a
// watch serves them: docs/reference/metrics.md is generated from it
// (internal/docgen). The Go runtime's and the process's (go_*,
// process_*) are client_golang's and not listed.
func Reference() []Doc {
	m := New("")
	m.statsPath = "" // the sysctl's gauge is listed from its description
	m.Rules([]Rule{{"foreign-write", "critical"}})
	m.Started(fixedRing{}, nil, []features.Feature{{Name: "x"}})
	m.ScanPassed(scanner.PassStats{})
	m.PodLabels()
	m.byPod.vec.WithLabelValues("foreign-write", "critical", "", "")
	var docs []Doc
	seen := map[string]bool{}
	mfs, err := m.reg.Gather()
	if err != nil {
		panic(err) // the registry's own metrics: a bug here, not input
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "bpfmon_") {
			continue
		}
		d := Doc{Name: mf.GetName(), Type: strings.ToLower(mf.GetType().String()), Help: mf.GetHelp()}
		if ms := mf.GetMetric(); len(ms) > 0 {
			for _, lp := range ms[0].GetLabel() {
				d.Labels = append(d.Labels, lp.GetName())
			}
		}
		seen[d.Name] = true
		docs = append(docs, d)
	}
	// What a scrape shows only on some hosts (the programs' run time,
	// with the kernel's statistics on): from the descriptions.
	descs := make(chan *prometheus.Desc, 64)
	(*state)(m).Describe(descs)
	close(descs)
	for desc := range descs {
		f := descFields.FindStringSubmatch(desc.String())
		if f == nil || seen[f[1]] {
			continue
		}
		d := Doc{Name: f[1], Type: "gauge", Help: strings.ReplaceAll(f[2], `\"`, `"`)}
		if strings.HasSuffix(d.Name, "_total") {
			d.Type = "counter"
		}
		if f[3] != "" {
			d.Labels = strings.Split(f[3], ",")
		}
		docs = append(docs, d)
	}
	slices.SortFunc(docs, func(a, b Doc) int { return strings.Compare(a.Name, b.Name) })
	return docs
}

var descFields = regexp.MustCompile(`^Desc\{fqName: "([^"]+)", help: "((?:[^"\\]|\\.)*)", .*variableLabels: \{([^}]*)\}\}$`)

// fixedRing is a Ring for Reference.
type fixedRing struct{}

func (fixedRing) Size() uint32  { return 1 }
func (fixedRing) Readable() int { return 0 }
