package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/bpfmon/bpfmon/internal/bpfsys"
)

func TestParseFdinfo(t *testing.T) {
	in := "pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t1057\nmap_type:\t1\nkey_size:\t4\nvalue_size:\t8\n" +
		"max_entries:\t16\nmap_flags:\t0x0\nmap_extra:\t0x0\nmemlock:\t1536\nmap_id:\t87\nfrozen:\t1\n"
	got := parseFdinfo([]byte(in))
	want := fdinfo{flags: 0o2000002, mapID: 87, hasMapID: true, memlock: 1536, frozen: true}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	// A program's fdinfo: its id, no map id.
	prog := "pos:\t0\nflags:\t02000000\nmnt_id:\t16\nino:\t1057\nprog_type:\t1\nprog_jited:\t1\nprog_tag:\t0123456789abcdef\nmemlock:\t4096\nprog_id:\t5\n"
	if got, want := parseFdinfo([]byte(prog)), (fdinfo{flags: 0o2000000, memlock: 4096, progID: 5, hasProgID: true}); got != want {
		t.Errorf("a program's fdinfo: got %+v, want %+v", got, want)
	}
	// Garbage: no map or program id, no panic.
	for _, s := range []string{"", ":", "map_id:", "map_id:\tx\n", "prog_id:\t-1\n",
		"map_id:\t99999999999\n", "prog_id:\t4294967296\n", "flags:\t9\n\n\n:::"} {
		if f := parseFdinfo([]byte(s)); f.hasMapID || f.hasProgID {
			t.Errorf("%q: got map id %d, program id %d", s, f.mapID, f.progID)
		}
	}
}

func TestParseMountinfo(t *testing.T) {
	in := "22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw\n" +
		"35 22 0:30 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:15 - bpf bpf rw,mode=700\n" +
		"36 22 0:30 / /sys/fs/bpf rw master:2 shared:9 - bpf bpf rw\n" + // stacked on itself
		"90 1 0:30 /sub /mnt/sub\\040dir rw - bpf none rw\n" +
		"91 1 0:44 / /mnt/other\\134x\\012 rw - bpf bpf rw\n" +
		"garbage line - bpf\n" +
		"1 2 3 4 5 6 - bpf\n"
	got := parseMountinfo([]byte(in))
	want := []bpfMount{
		{"0:30", "/", "/sys/fs/bpf"},
		{"0:30", "/", "/sys/fs/bpf"},
		{"0:30", "/sub", "/mnt/sub dir"},
		{"0:44", "/", "/mnt/other\\x\n"},
		{"3", "4", "5"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	devs := map[string]string{"/sys/fs/bpf": "0:30", "/mnt/sub dir": "0:30", "/mnt/other\\x\n": "0:99" /* hidden */}
	picked := pickMounts([]bpfMount{want[2], want[0], want[1], want[3]}, func(p string) (string, error) {
		if d, ok := devs[p]; ok {
			return d, nil
		}
		return "", errors.New("no")
	})
	if w := []bpfMount{want[0]}; !slices.Equal(picked, w) {
		t.Errorf("pickMounts: got %q, want %q", picked, w)
	}
}

// FuzzParsers holds the /proc parsers to their contracts on arbitrary
// text, beyond not panicking:
//
//   - parseFdinfo reports each field as the last line for it that parses
//     (checked against a line-by-line reading of the input), and what it
//     reports, rendered back in the kernel's format, parses to the same;
//     rendered after the input, it wins over whatever the input said.
//   - parseMountinfo reports only lines whose filesystem type is bpf, in
//     order, and a mount it reports, written back as the kernel writes it
//     (octal escapes for space, tab, newline and backslash, nothing else),
//     parses to the same mount; so does a mount of any path the kernel
//     writes.
//   - unescapeMountinfo undoes the kernel's escaping of any string, and
//     never lengthens its input.
//   - bpfsys.CString is the bytes before the first NUL.
func FuzzParsers(f *testing.F) {
	f.Add([]byte("map_id:\t1\nflags:\t02\n"))
	f.Add([]byte("35 22 0:30 / /sys/fs/bpf rw - bpf bpf rw\n"))
	f.Add([]byte("1 2 3 4 \\0 6 - bpf\n1 2 3 4 \\777x 6 - bpf"))
	f.Fuzz(func(t *testing.T, b []byte) {
		in := append([]byte(nil), b...)
		checkFdinfo(t, b)
		checkMountinfo(t, b)
		if u := unescapeMountinfo(b); len(u) > len(b) || (!bytes.Contains(b, []byte{'\\'}) && u != string(b)) {
			t.Fatalf("unescape(%q) = %q", b, u)
		}
		if u := unescapeMountinfo([]byte(escapeMountinfo(string(b)))); u != string(b) {
			t.Fatalf("unescape(escape(%q)) = %q", b, u)
		}
		s := bpfsys.CString(b)
		if !bytes.HasPrefix(b, []byte(s)) || strings.IndexByte(s, 0) >= 0 || (len(s) < len(b) && b[len(s)] != 0) {
			t.Fatalf("CString(%q) = %q", b, s)
		}
		if !bytes.Equal(b, in) {
			t.Fatalf("a parser changed its input: %q, was %q", b, in)
		}
	})
}

// checkFdinfo checks parseFdinfo(b) against its contract.
func checkFdinfo(t *testing.T, b []byte) {
	t.Helper()
	got := parseFdinfo(b)
	// The model: each line is "key:value", the value trimmed; the last
	// line of a field that parses is its value.
	var want fdinfo
	for _, line := range strings.Split(string(b), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		switch key {
		case "flags":
			if v, err := strconv.ParseUint(val, 8, 64); err == nil {
				want.flags = v
			}
		case "map_id":
			if v, err := strconv.ParseUint(val, 10, 32); err == nil {
				want.mapID, want.hasMapID = uint32(v), true
			}
		case "prog_id":
			if v, err := strconv.ParseUint(val, 10, 32); err == nil {
				want.progID, want.hasProgID = uint32(v), true
			}
		case "memlock":
			if v, err := strconv.ParseUint(val, 10, 64); err == nil {
				want.memlock = v
			}
		case "frozen":
			if val == "0" || val == "1" {
				want.frozen = val == "1"
			}
		}
	}
	if got != want {
		t.Fatalf("parseFdinfo(%q) = %+v, the lines say %+v", b, got, want)
	}
	// Rendered as the kernel does (fs/proc/fd.c, kernel/bpf/syscall.c).
	r := renderFdinfo(got)
	if back := parseFdinfo([]byte(r)); back != got {
		t.Fatalf("parseFdinfo(%q) = %+v; rendered %q, parsed back %+v", b, got, r, back)
	}
	// A whole fdinfo after the input overrides every field it has.
	if over := parseFdinfo(append(append(append([]byte(nil), b...), '\n'), r...)); got.hasMapID && over != got {
		t.Fatalf("%q then its own rendering: %+v, want %+v", b, over, got)
	}
}

// renderFdinfo writes f as a map's fdinfo; without a map id, with no
// map_id line (a parse may find memlock or frozen and no map id).
func renderFdinfo(f fdinfo) string {
	frozen := 0
	if f.frozen {
		frozen = 1
	}
	s := fmt.Sprintf("pos:\t0\nflags:\t0%o\nmnt_id:\t16\nino:\t1057\nmap_type:\t1\nkey_size:\t4\nvalue_size:\t8\nmax_entries:\t16\n"+
		"map_flags:\t0x0\nmap_extra:\t0x0\nmemlock:\t%d\n", f.flags, f.memlock)
	if f.hasMapID {
		s += fmt.Sprintf("map_id:\t%d\n", f.mapID)
	}
	if f.hasProgID { // not a map's, but the model's: a parse may find both
		s += fmt.Sprintf("prog_id:\t%d\n", f.progID)
	}
	return s + fmt.Sprintf("frozen:\t%d\n", frozen)
}

// checkMountinfo checks parseMountinfo(b) against its contract.
func checkMountinfo(t *testing.T, b []byte) {
	t.Helper()
	got := parseMountinfo(b)
	if n := bytes.Count(b, []byte("bpf")); len(got) > n {
		t.Fatalf("parseMountinfo(%q): %d mounts from %d lines naming bpf", b, len(got), n)
	}
	for _, m := range got {
		if m.dev == "" || strings.ContainsAny(m.dev, " \n") || !strings.Contains(string(b), m.dev) {
			t.Fatalf("parseMountinfo(%q): device %q is not a field of the input", b, m.dev)
		}
	}
	// Written back as the kernel writes mountinfo (show_mountinfo in
	// fs/proc_namespace.c: fields separated by one space, paths escaped
	// by seq_path_root with " \t\n\\").
	var text strings.Builder
	for i, m := range got {
		fmt.Fprintf(&text, "%d 1 %s %s %s rw,relatime shared:%d - bpf bpf rw\n", 30+i, m.dev, escapeMountinfo(m.root), escapeMountinfo(m.point), i)
	}
	if back := parseMountinfo([]byte(text.String())); !slices.Equal(back, got) {
		t.Fatalf("parseMountinfo(%q) = %q; written back %q, parsed %q", b, got, text.String(), back)
	}
	// Any path, mounted and written by the kernel, is read back as it is.
	m := bpfMount{"0:30", "/" + string(b), "/sys/fs/bpf/" + string(b)}
	line := fmt.Sprintf("36 22 %s %s %s rw,nosuid - bpf bpf rw,mode=700\n", m.dev, escapeMountinfo(m.root), escapeMountinfo(m.point))
	if back := parseMountinfo([]byte(line)); !slices.Equal(back, []bpfMount{m}) {
		t.Fatalf("mountinfo line %q parsed as %q, want %q", line, back, m)
	}
}

// escapeMountinfo escapes s as the kernel's mangle_path does for
// mountinfo: space, tab, newline and backslash as three octal digits.
func escapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\n', '\\':
			fmt.Fprintf(&b, "\\%03o", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
