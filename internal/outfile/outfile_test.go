package outfile

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// line is the n-th test line, 1000 bytes with its newline.
func line(n int) []byte {
	s := fmt.Sprintf("%08d ", n)
	return []byte(s + strings.Repeat("x", 1000-len(s)-1) + "\n")
}

// readAll returns every line of the files in dir, checking each is one
// whole test line, and the files' names.
func readAll(t *testing.T, dir string) (seen map[int]int, files []string) {
	t.Helper()
	seen = map[int]int{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		files = append(files, e.Name())
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			t.Errorf("%s ends inside a line", e.Name())
		}
		for _, l := range bytes.SplitAfter(b, []byte("\n")) {
			if len(l) == 0 {
				continue
			}
			n, err := strconv.Atoi(string(l[:8]))
			if err != nil || !bytes.Equal(l, line(n)) {
				t.Fatalf("%s: a line that is not whole: %q", e.Name(), l[:min(len(l), 40)])
			}
			seen[n]++
		}
	}
	return seen, files
}

// TestRotation: 3 MiB through a file rotated at 1 MiB: every line once,
// whole, in a file no larger than the limit; with a limit on backups,
// only that many are kept.
func TestRotation(t *testing.T) {
	for _, keep := range []int{0, 1} {
		t.Run("keep="+strconv.Itoa(keep), func(t *testing.T) {
			dir := t.TempDir()
			f, err := Open(filepath.Join(dir, "events.json"), MiB, keep)
			if err != nil {
				t.Fatal(err)
			}
			const n = 3 * MiB / 1000
			for i := range n {
				// Several lines per write, as watch flushes them.
				if i%7 == 0 {
					var b []byte
					for j := i; j < min(i+7, n); j++ {
						b = append(b, line(j)...)
					}
					if _, err := f.Write(b); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if keep > 0 {
				// Old backups are removed in the background.
				for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
					if ents, _ := os.ReadDir(dir); len(ents) <= keep+1 {
						break
					}
				}
			}
			seen, files := readAll(t, dir)
			for _, name := range files {
				if fi, _ := os.Stat(filepath.Join(dir, name)); fi.Size() > MiB || fi.Mode().Perm() != 0o600 {
					t.Errorf("%s: %d bytes, mode %v; want at most %d, 0600", name, fi.Size(), fi.Mode().Perm(), MiB)
				}
			}
			if keep == 0 {
				if len(files) < 3 {
					t.Errorf("files %q: want the file and at least 2 rotated ones", files)
				}
				for i := range n {
					if seen[i] != 1 {
						t.Fatalf("line %d written %d times", i, seen[i])
					}
				}
				return
			}
			if len(files) != keep+1 {
				t.Errorf("files %q: want the file and %d rotated", files, keep)
			}
		})
	}
}

// TestReopen: logrotate's way: the file is moved away, Reopen creates it
// anew; what was written before is in the moved file, what after in the
// new one, every line once. Without rotation, Open truncates, Reopen
// appends.
func TestReopen(t *testing.T) {
	for _, size := range []int64{0, MiB} {
		t.Run("max-size="+strconv.FormatInt(size, 10), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "events.json")
			os.WriteFile(path, line(999), 0o600)
			f, err := Open(path, size, 0)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 10 {
				f.Write(line(i))
			}
			if err := os.Rename(path, path+".1"); err != nil {
				t.Fatal(err)
			}
			if err := f.Reopen(); err != nil {
				t.Fatal(err)
			}
			for i := 10; i < 20; i++ {
				f.Write(line(i))
			}
			f.Reopen() // not moved: appended to
			f.Write(line(20))
			f.Close()
			seen, files := readAll(t, dir)
			if len(files) != 2 {
				t.Errorf("files %q, want the moved one and the new one", files)
			}
			for i := range 21 {
				if seen[i] != 1 {
					t.Errorf("line %d written %d times", i, seen[i])
				}
			}
			if want := map[bool]int{true: 0, false: 1}[size == 0]; seen[999] != want {
				t.Errorf("the line there before: %d times, want %d (truncated without rotation, appended to with)", seen[999], want)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "x"), MiB+1, 0); err == nil {
		t.Error("a size not in MiB accepted")
	}
	if _, err := Open(filepath.Join(t.TempDir(), "no", "such", "dir"), MiB, 0); err == nil {
		t.Error("an unwritable path accepted at open")
	}
}
