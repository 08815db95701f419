// Command funclen lists the functions longer than a bound (120 lines by
// default) in the tree's Go code, tests and generated files aside: the
// rule "no function over 120 lines" of CONTRIBUTING.md, measured the same
// way each time (`make funclen`). It exits 0 whatever it finds: it is a
// list to read, not a gate.
//
// Usage: go run ./internal/devtools/funclen [-max N] [dir]
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// generated is the marker of generated Go files (go.dev/s/generatedcode).
var generated = regexp.MustCompile(`(?m)^// Code generated .* DO NOT EDIT\.$`)

type fn struct {
	pos   string
	name  string
	lines int
}

func main() {
	max := flag.Int("max", 120, "list functions longer than `N` lines")
	flag.Parse()
	root := "."
	if flag.NArg() > 0 {
		root = flag.Arg(0)
	}
	fns, err := scan(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "funclen:", err)
		os.Exit(1)
	}
	sort.Slice(fns, func(i, j int) bool {
		if fns[i].lines != fns[j].lines {
			return fns[i].lines > fns[j].lines
		}
		return fns[i].pos < fns[j].pos
	})
	over := 0
	w := bufio.NewWriter(os.Stdout)
	for _, f := range fns {
		if f.lines > *max {
			over++
			fmt.Fprintf(w, "%5d  %-40s %s\n", f.lines, f.name, f.pos)
		}
	}
	fmt.Fprintf(w, "%d functions over %d lines (of %d; tests and generated code aside)\n", over, *max, len(fns))
	w.Flush()
}

// scan returns every function and method (function literals count as
// part of the function they stand in) in the non-test, non-generated Go
// files below root.
func scan(root string) ([]fn, error) {
	var fns []fn
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "testdata" || n == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if generated.Match(src[:bytes.Index(append(src, '\n'), []byte("\npackage "))+1]) {
			return nil
		}
		f, err := parser.ParseFile(fset, path, src, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			d, ok := decl.(*ast.FuncDecl)
			if !ok || d.Body == nil {
				continue
			}
			start, end := fset.Position(d.Pos()), fset.Position(d.End())
			fns = append(fns, fn{
				pos:   fmt.Sprintf("%s:%d", path, start.Line),
				name:  funcName(d),
				lines: end.Line - start.Line + 1,
			})
		}
		return nil
	})
	return fns, err
}

func funcName(d *ast.FuncDecl) string {
	if d.Recv == nil || len(d.Recv.List) == 0 {
		return d.Name.Name
	}
	t := d.Recv.List[0].Type
	ptr := ""
	if s, ok := t.(*ast.StarExpr); ok {
		t, ptr = s.X, "*"
	}
	switch x := t.(type) {
	case *ast.IndexExpr:
		t = x.X
	case *ast.IndexListExpr:
		t = x.X
	}
	if id, ok := t.(*ast.Ident); ok {
		return "(" + ptr + id.Name + ")." + d.Name.Name
	}
	return d.Name.Name
}
