package outfile

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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

// planted are what a stranger with write access to the output's
// directory could leave at the path for bpfmon to write into, and what
// each must be refused with.
func planted(t *testing.T, dir string) map[string]string {
	t.Helper()
	target := filepath.Join(t.TempDir(), "root-owned")
	if err := os.WriteFile(target, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	cases[link] = "symbolic link"
	foreign := filepath.Join(dir, "foreign")
	if err := os.WriteFile(foreign, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chmod(foreign, 0o666)
	if err := os.Chown(foreign, 65534, 65534); err != nil {
		t.Skipf("cannot make a file another user's: %v", err)
	}
	cases[foreign] = "owned by uid 65534"
	open := filepath.Join(dir, "world-writable")
	if err := os.WriteFile(open, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o646)
	cases[open] = "lets group or others write"
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cases[fifo] = "a named pipe"
	sub := filepath.Join(dir, "dir")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	cases[sub] = "a directory"
	cases["/dev/null"] = "a device"
	t.Cleanup(func() {
		if b, _ := os.ReadFile(target); string(b) != "precious\n" {
			t.Errorf("the file the link points to was written: %q", b)
		}
	})
	return cases
}

// TestRefusesPlanted: a link, another user's file, a file others may
// write, a named pipe, a directory or a device at the path is refused
// (ErrRefused, naming why), at once, by Check, Open (with and without
// rotation) and Create; the file a link points to is left as it was.
func TestRefusesPlanted(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make another user's file")
	}
	dir := t.TempDir()
	for path, why := range planted(t, dir) {
		start := time.Now()
		errs := map[string]error{"Check": Check(path)}
		for _, size := range []int64{0, MiB} {
			f, err := Open(path, size, 0)
			if err == nil {
				f.Write([]byte("bpfmon's event\n"))
				f.Close()
			}
			errs["Open size "+strconv.FormatInt(size, 10)] = err
		}
		f, err := Create(path, true)
		if err == nil {
			f.Close()
		}
		errs["Create"] = err
		for what, err := range errs {
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), why) || !strings.Contains(err.Error(), path) {
				t.Errorf("%s %s: %v; want refused, naming %q", what, path, err, why)
			}
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s: refusing took %v", path, d)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "foreign")); len(b) > 0 {
		t.Errorf("another user's file was written: %q", b)
	}
}

// TestNewFilesAreOwn: files Open and Create make, and those rotation
// starts, are bpfmon's user's, mode 0600 whatever the umask, and none of
// them is opened through a link planted where a new file is to be.
func TestNewFilesAreOwn(t *testing.T) {
	old := unix.Umask(0)
	defer unix.Umask(old)
	dir := t.TempDir()
	os.Chmod(dir, 0o777) // world-writable, as the attacker wants it
	path := filepath.Join(dir, "events.json")
	f, err := Open(path, MiB, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 * MiB / 1000 {
		if _, err := f.Write(line(i)); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	prof, err := Create(filepath.Join(dir, "profile"), true)
	if err != nil {
		t.Fatal(err)
	}
	prof.Close()
	ents, _ := os.ReadDir(dir)
	if len(ents) < 4 {
		t.Errorf("%d files, want the output, 2 or more rotated and the profile", len(ents))
	}
	for _, e := range ents {
		fi, err := os.Lstat(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 || st.Uid != uint32(os.Geteuid()) {
			t.Errorf("%s: %v, uid %d; want a regular file of uid %d, mode 0600", e.Name(), fi.Mode(), st.Uid, os.Geteuid())
		}
	}
	// A link planted at a new file's name is neither followed nor
	// replaced.
	target := filepath.Join(t.TempDir(), "target")
	os.WriteFile(target, []byte("precious\n"), 0o600)
	tmp := filepath.Join(dir, "ready.tmp")
	os.Symlink(target, tmp)
	if f, err := CreateNew(tmp); err == nil {
		f.Close()
		t.Error("CreateNew opened a link")
	}
	if b, _ := os.ReadFile(target); string(b) != "precious\n" {
		t.Errorf("the link's target was written: %q", b)
	}
}

// TestCopytruncate: logrotate's copytruncate empties the file under
// bpfmon; the next line lands at its start, not after a hole of NUL
// bytes as long as what was there (the file is written with O_APPEND).
func TestCopytruncate(t *testing.T) {
	for _, size := range []int64{0, MiB} {
		path := filepath.Join(t.TempDir(), "events")
		f, err := Open(path, size, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 100 {
			f.Write(line(i))
		}
		if err := os.Truncate(path, 0); err != nil {
			t.Fatal(err)
		}
		f.Write(line(100))
		f.Close()
		b, _ := os.ReadFile(path)
		if !bytes.Equal(b, line(100)) {
			t.Errorf("max-size %d: after copytruncate the file holds %d bytes, %d of them NUL; want the one line written since", size, len(b), bytes.Count(b, []byte{0}))
		}
	}
}
