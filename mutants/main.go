// Command mutants checks that the tests catch the regressions that matter
// (make mutants): it breaks security-critical code one change at a time,
// each a single line, in a copy of the tree (never the checkout itself,
// which others may be building), runs the tests that must catch that
// break, and prints one line per mutant: caught, survived, or stale when
// the code it breaks is no longer there (the list needs updating).
//
// A mutant names its file and an exact snippet of the original, not a line
// number, so that it follows the code through edits. Kernel-side mutants
// (a BPF C file) regenerate that package's objects (go generate: clang)
// in the copy; those whose programs load on this machine's kernel (the
// lineage sensor's tracepoints, the syscall sensor) run here, the others
// (trampolines, BPF LSM) in a VM of the kernel test matrix (vmtest).
//
// Usage: go run ./mutants [--only host|vm] [--run REGEXP] [--list]
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// mutant is one break and the tests that must catch it.
type mutant struct {
	name string // short, unique
	area string // the promise it breaks
	file string // relative to the repository's root
	old  string // exact text of the original, once in file
	new  string // what replaces it
	// gen is the package directory whose BPF objects are generated from
	// file (a C file); "" for Go.
	gen string
	// pkgs and run are the tests that must catch it: go test -run run
	// pkgs (in a VM: vmtest --pkgs pkgs --run run).
	pkgs []string
	run  string
	// vm: the break is in programs this machine's kernel does not load
	// (trampolines, BPF LSM): it runs in a VM of kernel vmKernel.
	vm bool
}

// vmKernel is the kernel the VM mutants run on: it has every capability.
const vmKernel = "6.12"

func main() {
	code, err := run()
	if err != nil {
		fmt.Fprintf(os.Stderr, "mutants: %v\n", err)
	}
	os.Exit(code)
}

func run() (int, error) {
	only := flag.String("only", "", "run only the host part (host) or the VM part (vm); default both")
	sel := flag.String("run", "", "run only the mutants whose name matches this regular expression")
	list := flag.Bool("list", false, "list the mutants and check that each applies, without running tests")
	verbose := flag.Bool("v", false, "print the test output of mutants that were not caught")
	keep := flag.Bool("keep", false, "keep the copy of the tree (its path is printed)")
	kernel := flag.String("kernel", vmKernel, "the kernel (vmtest --kernels) the VM mutants run on")
	baseline := flag.Bool("baseline", true, "run each mutant's tests on the unbroken tree first: a test that fails there catches nothing (error)")
	flag.Parse()
	if *only != "" && *only != "host" && *only != "vm" {
		return 2, fmt.Errorf("--only %q: want host or vm", *only)
	}
	var re *regexp.Regexp
	if *sel != "" {
		var err error
		if re, err = regexp.Compile(*sel); err != nil {
			return 2, fmt.Errorf("--run: %w", err)
		}
	}
	if err := checkList(); err != nil {
		return 2, err
	}
	root, err := repoRoot()
	if err != nil {
		return 2, err
	}
	var todo []mutant
	for _, m := range mutants {
		if (*only == "host" && m.vm) || (*only == "vm" && !m.vm) || (re != nil && !re.MatchString(m.name)) {
			continue
		}
		todo = append(todo, m)
	}
	if len(todo) == 0 {
		return 2, errors.New("no mutant selected")
	}
	if *list {
		bad := 0
		for _, m := range todo {
			where := "host"
			if m.vm {
				where = "vm"
			}
			b, err := os.ReadFile(filepath.Join(root, m.file))
			state := "applies"
			if n := bytes.Count(b, []byte(m.old)); err != nil || n != 1 {
				state, bad = fmt.Sprintf("stale (%d matches)", n), bad+1
			}
			fmt.Printf("%-28s %-4s %-24s %-44s %s\n", m.name, where, m.area, m.file, state)
		}
		if bad > 0 {
			return 1, nil
		}
		return 0, nil
	}

	tmp, err := os.MkdirTemp("", "bpfmon-mutants-")
	if err != nil {
		return 2, err
	}
	if *keep {
		fmt.Fprintf(os.Stderr, "mutants: the copy is %s\n", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	tree := filepath.Join(tmp, "tree")
	if err := copyTree(root, tree); err != nil {
		return 2, err
	}
	counts := map[string]int{}
	start := time.Now()
	// The unbroken tree's result of each set of tests, run once.
	base := map[string]string{}
	for _, m := range todo {
		t0 := time.Now()
		key := fmt.Sprint(m.vm, m.pkgs, m.run)
		if _, done := base[key]; *baseline && !done {
			out, err := runTests(tree, tmp, m, *kernel, "baseline")
			base[key] = ""
			if err != nil {
				base[key] = "the tests fail on the unbroken tree: " + firstLine(failed(out), err.Error())
				if *verbose {
					fmt.Println(indent(string(out)))
				}
			}
		}
		res, detail, out := "error", base[key], ""
		if detail == "" {
			res, detail, out = try(tree, tmp, m, *kernel)
		}
		counts[res]++
		where := "host"
		if m.vm {
			where = "vm " + *kernel
		}
		fmt.Printf("%-9s %-28s %-24s %s (%s; %s) %s\n", res, m.name, m.area, m.file, where, time.Since(t0).Round(time.Second), detail)
		if *verbose && res != "caught" && out != "" {
			fmt.Println(indent(out))
		}
	}
	fmt.Printf("mutants: %d caught, %d survived, %d stale, %d error, in %s\n",
		counts["caught"], counts["survived"], counts["stale"], counts["error"], time.Since(start).Round(time.Second))
	if counts["caught"] != len(todo) {
		return 1, nil
	}
	return 0, nil
}

// checkList refuses a list with two mutants of one name.
func checkList() error {
	seen := map[string]bool{}
	for _, m := range mutants {
		if seen[m.name] {
			return fmt.Errorf("two mutants named %s", m.name)
		}
		seen[m.name] = true
		if m.old == m.new || len(m.pkgs) == 0 || m.run == "" {
			return fmt.Errorf("mutant %s: no change, or no test", m.name)
		}
	}
	return nil
}

// try applies m in tree, runs its tests and restores the tree. It returns
// caught, survived, stale or error, a detail (the failing test, or why),
// and the tests' output.
func try(tree, tmp string, m mutant, kernel string) (string, string, string) {
	path := filepath.Join(tree, m.file)
	orig, err := os.ReadFile(path)
	if err != nil {
		return "stale", "file gone: " + err.Error(), ""
	}
	switch n := bytes.Count(orig, []byte(m.old)); n {
	case 1:
	case 0:
		return "stale", "the original snippet is not in the file: update the mutant", ""
	default:
		return "stale", fmt.Sprintf("the original snippet is in the file %d times: make it unique", n), ""
	}
	if err := os.WriteFile(path, bytes.Replace(orig, []byte(m.old), []byte(m.new), 1), 0o644); err != nil {
		return "error", err.Error(), ""
	}
	defer os.WriteFile(path, orig, 0o644)
	if m.gen != "" {
		restore, err := snapshot(filepath.Join(tree, m.gen))
		if err != nil {
			return "error", err.Error(), ""
		}
		defer restore()
		cmd := exec.Command("go", "generate", "./"+m.gen)
		cmd.Dir = tree
		if out, err := cmd.CombinedOutput(); err != nil {
			return "error", "go generate failed (the mutant does not compile?)", string(out)
		}
	}
	out, err := runTests(tree, tmp, m, kernel, m.name)
	var exit *exec.ExitError
	switch {
	case err == nil:
		if !m.vm && strings.Count(string(out), "[no tests to run]") == len(runRE.FindAll(out, -1)) {
			return "error", "-run " + m.run + " matches no test", string(out)
		}
		if ran := ranTests(out); ran != "" {
			return "survived", ran + " passed", string(out)
		}
		return "survived", "the tests passed", string(out)
	case !errors.As(err, &exit):
		return "error", err.Error(), string(out)
	case bytes.Contains(out, []byte("[build failed]")) || bytes.Contains(out, []byte("[setup failed]")):
		return "error", "the mutant does not build", string(out)
	}
	if f := failed(out); f != "" {
		return "caught", "by " + f, string(out)
	}
	return "error", "the tests failed without a failing test (infrastructure?)", string(out)
}

// runTests runs m's tests in tree.
func runTests(tree, tmp string, m mutant, kernel, label string) ([]byte, error) {
	var cmd *exec.Cmd
	if m.vm {
		cmd = exec.Command("go", "run", "./vmtest", "--host=false", "--kernels", kernel,
			"--pkgs", strings.Join(m.pkgs, ","), "--run", m.run, "--out", filepath.Join(tmp, "vmtest-"+label))
	} else {
		args := []string{"test", "-count=1", "-timeout", "10m", "-run", m.run}
		for _, p := range m.pkgs {
			args = append(args, "./"+p)
		}
		cmd = exec.Command("go", args...)
	}
	cmd.Dir = tree
	return cmd.CombinedOutput()
}

// firstLine is s, or else alt.
func firstLine(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

var (
	failRE = regexp.MustCompile(`(?m)^\s*(?:--- FAIL:|failed:) (\S+)`)
	runRE  = regexp.MustCompile(`(?m)^ok\s+(\S+)`)
)

// failed names the failing tests in go test's (or vmtest's) output.
func failed(out []byte) string {
	var names []string
	seen := map[string]bool{}
	for _, m := range failRE.FindAllSubmatch(out, -1) {
		n := string(m[1])
		if i := strings.IndexByte(n, '/'); i >= 0 && seen[n[:i]] {
			continue // a subtest of one named already
		}
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	if len(names) > 4 {
		names = append(names[:4], "...")
	}
	return strings.Join(names, ", ")
}

func ranTests(out []byte) string {
	var pkgs []string
	for _, m := range runRE.FindAllSubmatch(out, -1) {
		pkgs = append(pkgs, string(m[1]))
	}
	return strings.Join(pkgs, ", ")
}

// snapshot saves the generated BPF objects of a package directory (the
// files bpf2go writes) and returns what puts them back.
func snapshot(dir string) (func(), error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	saved := map[string][]byte{}
	for _, e := range ents {
		if n := e.Name(); strings.HasSuffix(n, "_bpfel.go") || strings.HasSuffix(n, "_bpfel.o") {
			b, err := os.ReadFile(filepath.Join(dir, n))
			if err != nil {
				return nil, err
			}
			saved[n] = b
		}
	}
	return func() {
		for n, b := range saved {
			os.WriteFile(filepath.Join(dir, n), b, 0o644)
		}
	}, nil
}

// repoRoot is the root of the repository this runs in.
func repoRoot() (string, error) {
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return "", fmt.Errorf("not in the repository (git rev-parse): %w", err)
	}
	root := strings.TrimSpace(string(out))
	if b, err := os.ReadFile(filepath.Join(root, "go.mod")); err != nil || !bytes.Contains(b, []byte("module github.com/bpfmon/bpfmon\n")) {
		return "", fmt.Errorf("%s is not bpfmon's repository", root)
	}
	return root, nil
}

// copyTree copies the files git knows of (tracked, and new ones not
// ignored), as they are in the working tree, from root to dst.
func copyTree(root, dst string) error {
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("git ls-files: %w", err)
	}
	for _, rel := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if rel == "" {
			continue
		}
		src := filepath.Join(root, rel)
		fi, err := os.Lstat(src)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted in the working tree
		}
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			l, err := os.Readlink(src)
			if err != nil {
				return err
			}
			if err := os.Symlink(l, to); err != nil {
				return err
			}
			continue
		}
		if err := copyFile(src, to, fi.Mode().Perm()); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > 60 {
		lines = append(lines[:30], append([]string{"\t..."}, lines[len(lines)-30:]...)...)
	}
	return "\t" + strings.Join(lines, "\n\t")
}
