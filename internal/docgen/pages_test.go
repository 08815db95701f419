package docgen

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/bpfmon/bpfmon/internal/metrics"
	"github.com/bpfmon/bpfmon/internal/output"
	"github.com/bpfmon/bpfmon/internal/policy"
)

// root is the repository's root, from this package's directory.
const root = "../.."

// pages are the hand-written and generated Markdown pages: README.md,
// CONTRIBUTING.md and everything under docs/.
func pages(t *testing.T) []string {
	t.Helper()
	ps := []string{filepath.Join(root, "README.md"), filepath.Join(root, "CONTRIBUTING.md")}
	err := filepath.WalkDir(filepath.Join(root, "docs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".md") {
			ps = append(ps, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

var (
	fence      = regexp.MustCompile("(?ms)^```.*?^```")
	inlineCode = regexp.MustCompile("``[^`]*``|`[^`\n]*`")
	link       = regexp.MustCompile(`\[[^\]]*\]\(([^)\s]+)\)`)
	heading    = regexp.MustCompile(`(?m)^#{1,6} +(.+?) *$`)
)

// prose is a page without its code: links in code blocks and spans are
// not links.
func prose(page string) string {
	return inlineCode.ReplaceAllString(fence.ReplaceAllString(page, ""), "")
}

// anchors are the ids GitHub gives the headings of page.
func anchors(page string) map[string]bool {
	ids := map[string]bool{}
	for _, m := range heading.FindAllStringSubmatch(fence.ReplaceAllString(page, ""), -1) {
		id := anchor(m[1])
		for n := 1; ids[id]; n++ {
			id = fmt.Sprintf("%s-%d", anchor(m[1]), n)
		}
		ids[id] = true
	}
	return ids
}

// TestLinks: every relative link in README.md, CONTRIBUTING.md and docs/
// leads to a file of the repository and, with #anchor into a Markdown
// page, to one of its headings.
func TestLinks(t *testing.T) {
	checked := 0
	for _, p := range pages(t) {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(prose(string(data)), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			checked++
			file, frag, _ := strings.Cut(target, "#")
			dest := p
			if file != "" {
				dest = filepath.Join(filepath.Dir(p), file)
				if _, err := os.Stat(dest); err != nil {
					t.Errorf("%s: link %s: %v", p, target, err)
					continue
				}
			}
			if frag == "" || !strings.HasSuffix(dest, ".md") {
				continue
			}
			d, err := os.ReadFile(dest)
			if err != nil {
				t.Errorf("%s: link %s: %v", p, target, err)
				continue
			}
			if !anchors(string(d))[frag] {
				t.Errorf("%s: link %s: %s has no heading #%s", p, target, dest, frag)
			}
		}
	}
	if checked < 50 {
		t.Errorf("checked only %d links: does the link pattern still match?", checked)
	}
}

// TestAnchor: headings' ids as GitHub makes them.
func TestAnchor(t *testing.T) {
	for in, want := range map[string]string{
		"Metrics: `--metrics-addr`":      "metrics---metrics-addr",
		"CI's time":                      "cis-time",
		"map_update":                     "map_update",
		"The test matrix: `make vmtest`": "the-test-matrix-make-vmtest",
	} {
		if got := anchor(in); got != want {
			t.Errorf("anchor(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestREADME: the front page stays one: short, the run and test
// commands on its first screen (.ci/run runs the test command), no
// dates, and a policy example that bpfmon accepts.
func TestREADME(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	lines := strings.Split(readme, "\n")
	if len(lines) > 201 {
		t.Errorf("README.md has %d lines; the front page keeps to 200: move detail into docs/", len(lines)-1)
	}
	firstScreen := strings.Join(lines[:min(len(lines), 40)], "\n")
	for _, cmd := range []string{"go build ./cmd/bpfmon && ./bpfmon watch", "go test -count=1 ./..."} {
		if !strings.Contains(firstScreen, "```sh\n"+cmd+"\n```") {
			t.Errorf("README.md's first 40 lines have no fenced block of exactly %q", cmd)
		}
	}
	ci, err := os.ReadFile(filepath.Join(root, ".ci/run"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ci), " go test -count=1 ./...\n") {
		t.Errorf(".ci/run does not run the README's test command")
	}
	if d := regexp.MustCompile(`\b20\d\d-\d\d-\d\d\b`).FindString(readme); d != "" {
		t.Errorf("README.md holds a date (%s): dated facts belong in docs/", d)
	}
	if m := regexp.MustCompile(`(?i)this (project's )?machine`).FindString(readme); m != "" {
		t.Errorf("README.md speaks of %q: machine-specific facts belong in docs/", m)
	}
	yaml := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindStringSubmatch(readme)
	if yaml == nil {
		t.Fatal("README.md has no policy example (```yaml)")
	}
	if n := strings.Count(strings.TrimSpace(yaml[1]), "\n") + 1; n != 3 {
		t.Errorf("README.md's policy example has %d lines, not three", n)
	}
	p, err := policy.Parse("README.md", []byte(yaml[1]))
	if err != nil {
		t.Fatalf("README.md's policy example: %v", err)
	}
	if len(p.Protect) != 1 || p.Protect[0].Value != "bpfmon_demo" {
		t.Errorf("README.md's policy example protects %+v, want the demo map", p.Protect)
	}
}

// TestHandWrittenPagesNameEverything: the guides that explain metrics and
// rules, beyond the generated reference, leave none out.
func TestHandWrittenPagesNameEverything(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	deploy := read("docs/deployment.md")
	for _, d := range metrics.Reference() {
		if !strings.Contains(deploy, "`"+d.Name+"`") {
			t.Errorf("docs/deployment.md does not explain metric %s (its table of metrics)", d.Name)
		}
	}
	for _, m := range regexp.MustCompile("`(bpfmon_[a-z_]+)`").FindAllStringSubmatch(deploy, -1) {
		found := false
		for _, d := range metrics.Reference() {
			found = found || d.Name == m[1]
		}
		if !found {
			t.Errorf("docs/deployment.md names metric %s, which bpfmon does not serve", m[1])
		}
	}
	alerts := read("docs/alerts.md")
	for _, r := range policy.Rules {
		if !strings.Contains(alerts, "| `"+r.Name+"` |") {
			t.Errorf("docs/alerts.md's table of rules does not explain %s", r.Name)
		}
	}
}

// TestExamplesDocumented: every JSON event shown in the pages uses only
// keys the events reference documents, for its event type.
func TestExamplesDocumented(t *testing.T) {
	n := 0
	for _, p := range pages(t) {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if !strings.HasPrefix(line, `{"time":`) {
				continue
			}
			n++
			if err := output.CheckDocumented([]byte(line)); err != nil {
				t.Errorf("%s: an example: %v\n%s", p, err, line)
			}
		}
	}
	if n < 5 {
		t.Errorf("found %d JSON examples: does the pattern still match?", n)
	}
}
