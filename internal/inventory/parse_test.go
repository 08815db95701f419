package inventory

import (
	"errors"
	"slices"
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
	// A program's fdinfo, and garbage: no map id, no panic.
	for _, s := range []string{"pos:\t0\nflags:\t02000000\nprog_type:\t1\nprog_id:\t5\n", "", ":", "map_id:", "map_id:\tx\n",
		"map_id:\t99999999999\n", "flags:\t9\n\n\n:::"} {
		if f := parseFdinfo([]byte(s)); f.hasMapID {
			t.Errorf("%q: got map id %d", s, f.mapID)
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

func FuzzParsers(f *testing.F) {
	f.Add([]byte("map_id:\t1\nflags:\t02\n"))
	f.Add([]byte("35 22 0:30 / /sys/fs/bpf rw - bpf bpf rw\n"))
	f.Add([]byte("1 2 3 4 \\0 6 - bpf\n1 2 3 4 \\777x 6 - bpf"))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseFdinfo(b)
		parseMountinfo(b)
		unescapeMountinfo(b)
		bpfsys.CString(b)
	})
}
