package metrics

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestReferenceFindsEveryMetric: every bpfmon_ metric name in this
// package's code is in Reference, from which docs/reference/metrics.md
// is generated. A vector without a series at the start is not gathered:
// give it one in New (its labels' known values) or in Reference.
func TestReferenceFindsEveryMetric(t *testing.T) {
	var listed []string
	for _, d := range Reference() {
		listed = append(listed, d.Name)
		if d.Help == "" || d.Type == "" {
			t.Errorf("%s: no help or type: %+v", d.Name, d)
		}
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`"(bpfmon_[a-z_]+)"`).FindAllStringSubmatch(string(src), -1) {
			found++
			if !slices.Contains(listed, m[1]) {
				t.Errorf("%s: metric %s is not in Reference()", f, m[1])
			}
		}
	}
	if found < 10 {
		t.Errorf("found only %d metric names in the code: does the pattern still match?", found)
	}
}
