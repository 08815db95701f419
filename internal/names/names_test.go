package names

import (
	"slices"
	"testing"
)

func TestProgType(t *testing.T) {
	if ProgType(1) != "socket_filter" || ProgType(32) != "netfilter" || ProgType(1000) != "unknown(1000)" {
		t.Errorf("program type names: %q %q %q", ProgType(1), ProgType(32), ProgType(1000))
	}
}

func TestMapType(t *testing.T) {
	for typ, want := range map[uint32]string{
		0: "unspec", 1: "hash", 2: "array", 12: "array_of_maps", 21: "percpu_cgroup_storage",
		27: "ringbuf", 32: "cgrp_storage", 33: "arena", 34: "insn_array",
		35: "unknown(35)", 1 << 31: "unknown(2147483648)",
	} {
		if got := MapType(typ); got != want {
			t.Errorf("MapType(%d) = %q, want %q", typ, got, want)
		}
	}
	for i, name := range mapTypeNames {
		if name == "" {
			t.Errorf("map type %d has no name", i)
		}
	}
}

func TestErrno(t *testing.T) {
	for n, want := range map[int64]string{
		1: "EPERM", 2: "ENOENT", 7: "E2BIG", 11: "EAGAIN", 14: "EFAULT", 22: "EINVAL",
		95: "EOPNOTSUPP", 117: "EUCLEAN", 133: "EHWPOISON", 524: "ENOTSUPP",
		0: "", 41: "", 134: "", 520: "", 1000: "", -1: "",
	} {
		if got := Errno(n); got != want {
			t.Errorf("Errno(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestMapFlags(t *testing.T) {
	if got := MapFlags(0, false); got == nil || len(got) != 0 {
		t.Errorf("no flags: got %#v", got)
	}
	got := MapFlags(1|1<<10|1<<14|1<<31, true)
	want := []string{"no_prealloc", "mmapable", "path_fd", "0x80000000", "frozen"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
