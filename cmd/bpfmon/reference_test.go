package main

import (
	"bytes"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/bpfmon/bpfmon/internal/docgen"
)

// updateDocs makes TestReference rewrite the generated pages: `make docs`.
var updateDocs = flag.Bool("update-docs", false, "rewrite docs/reference/ and docs/bpfmon.8 from the code (make docs)")

// root is the repository's root, from this package's directory.
const root = "../.."

// referenceInput collects what only this package knows: the commands, as
// the usage lists them, each with its real flag set, and the exit codes,
// as main.go declares them.
func referenceInput(t *testing.T) docgen.Input {
	t.Helper()
	var in docgen.Input
	line := regexp.MustCompile(`^  bpfmon ([a-z]+)( \[flags\])?\s+(.+)$`)
	for _, l := range strings.Split(usage, "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		c := docgen.Command{Name: m[1], Summary: m[3], NoFlags: m[2] == ""}
		if !c.NoFlags {
			var fs *flag.FlagSet
			inspectFlags = func(f *flag.FlagSet) { fs = f }
			run([]string{c.Name}, io.Discard, io.Discard)
			inspectFlags = nil
			if fs == nil {
				t.Fatalf("bpfmon %s parsed no flags: does it call parse?", c.Name)
			}
			var u bytes.Buffer
			fs.SetOutput(&u)
			fs.Usage()
			c.Usage, _, _ = strings.Cut(u.String(), "\n\nFlags:\n")
			c.Usage = strings.TrimPrefix(c.Usage, "Usage: ")
			c.Flags = docgen.FlagsOf(fs)
		}
		in.Commands = append(in.Commands, c)
	}
	if len(in.Commands) < 5 {
		t.Fatalf("found %d commands in the usage: its format changed?", len(in.Commands))
	}
	in.ExitCodes = exitCodes(t)
	return in
}

// exitCodes reads the exit* constants of main.go, with their comments.
func exitCodes(t *testing.T) []docgen.ExitCode {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "main.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	var codes []docgen.ExitCode
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			v := s.(*ast.ValueSpec)
			if len(v.Names) != 1 || !strings.HasPrefix(v.Names[0].Name, "exit") || len(v.Values) != 1 {
				continue
			}
			lit, ok := v.Values[0].(*ast.BasicLit)
			if !ok {
				t.Fatalf("%s is not a number", v.Names[0].Name)
			}
			n, _ := strconv.Atoi(lit.Value)
			doc := strings.TrimSpace(v.Doc.Text() + " " + v.Comment.Text())
			doc = strings.TrimPrefix(doc, v.Names[0].Name+": ")
			if doc == "" {
				t.Errorf("%s has no comment to document it", v.Names[0].Name)
			}
			codes = append(codes, docgen.ExitCode{Code: n, Name: v.Names[0].Name, Doc: strings.TrimSuffix(strings.Join(strings.Fields(doc), " "), ".")})
		}
	}
	slices.SortFunc(codes, func(a, b docgen.ExitCode) int { return a.Code - b.Code })
	return codes
}

// TestReference: the generated pages in docs/ are what the code says
// today. With -update-docs (make docs) it rewrites them instead.
func TestReference(t *testing.T) {
	files := docgen.Files(referenceInput(t))
	for path, want := range files {
		full := filepath.Join(root, path)
		if *updateDocs {
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(full)
		if err != nil {
			t.Errorf("%v: run make docs", err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: it is generated from the code; run make docs and commit it\n%s", path, firstDiff(got, want))
		}
	}
	// A page the generator no longer writes (a renamed one) goes.
	entries, err := os.ReadDir(filepath.Join(root, "docs/reference"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, ok := files["docs/reference/"+e.Name()]; !ok {
			t.Errorf("docs/reference/%s is not generated: remove it, or generate it (internal/docgen)", e.Name())
		}
	}
}

// firstDiff shows the first line where got and want differ.
func firstDiff(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return "line " + strconv.Itoa(i+1) + ":\n  committed: " + gl + "\n  generated: " + wl
		}
	}
	return ""
}

// TestReferenceListsEveryFlag: every flag `bpfmon COMMAND --help` prints
// is in the committed CLI reference and the man page.
func TestReferenceListsEveryFlag(t *testing.T) {
	cli, err := os.ReadFile(filepath.Join(root, "docs/reference/cli.md"))
	if err != nil {
		t.Fatal(err)
	}
	man, err := os.ReadFile(filepath.Join(root, "docs/bpfmon.8"))
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"watch", "maps", "features", "mapwriter"} {
		var out bytes.Buffer
		if code := run([]string{cmd, "--help"}, &out, io.Discard); code != exitOK {
			t.Fatalf("bpfmon %s --help: exit %d", cmd, code)
		}
		flags := regexp.MustCompile(`(?m)^  --([a-z0-9-]+)`).FindAllStringSubmatch(out.String(), -1)
		if len(flags) == 0 {
			t.Fatalf("bpfmon %s --help lists no flags:\n%s", cmd, out.String())
		}
		_, section, _ := strings.Cut(string(cli), "\n## bpfmon "+cmd+"\n")
		section, _, _ = strings.Cut(section, "\n## ")
		for _, f := range flags {
			if !regexp.MustCompile("(?m)^\\| `--" + regexp.QuoteMeta(f[1]) + "[ `]").MatchString(section) {
				t.Errorf("bpfmon %s --%s is not in docs/reference/cli.md's section for it", cmd, f[1])
			}
			if !bytes.Contains(man, []byte(`\fB\-\-`+strings.ReplaceAll(f[1], "-", `\-`)+`\fR`)) {
				t.Errorf("bpfmon %s --%s is not in docs/bpfmon.8", cmd, f[1])
			}
		}
	}
}
