// Live tests of the map-reading layer: real maps of every kind this kernel
// can create, read back through Reader and compared byte for byte. They need
// root; shared helpers for the package's tests are at the top.

package scanner

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	cfeatures "github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/testutil"
)

// needRoot skips the test, with the reason, unless it runs as root: the
// tests create real maps in the running kernel.
// needRoot skips without root, and fails instead in CI (testutil).
func needRoot(tb testing.TB) {
	tb.Helper()
	testutil.RequireRoot(tb)
}

// newTestMap creates a map that is closed when the test ends.
func newTestMap(tb testing.TB, spec *ebpf.MapSpec) *ebpf.Map {
	tb.Helper()
	m, err := ebpf.NewMap(spec)
	if err != nil {
		tb.Fatalf("creating %s map %q: %v", spec.Type, spec.Name, err)
	}
	tb.Cleanup(func() { m.Close() })
	return m
}

func newReader(tb testing.TB, lim *Limiter) *Reader {
	tb.Helper()
	r, err := NewReader(lim)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// readAll reads map id and returns its elements by key, failing the test on
// an error, a duplicate key or a key or value of the wrong length.
func readAll(tb testing.TB, r *Reader, id uint32) (MapInfo, map[string][]byte) {
	tb.Helper()
	got := make(map[string][]byte)
	info, err := r.Read(id, func(k, v []byte) error {
		if _, dup := got[string(k)]; dup {
			return fmt.Errorf("key %x handed to fn twice", k)
		}
		got[string(k)] = bytes.Clone(v)
		return nil
	})
	if err != nil {
		tb.Fatalf("Read(%d): %v", id, err)
	}
	want := r.ValueBytes(info)
	for k, v := range got {
		if len(k) != int(info.KeySize) {
			tb.Fatalf("key %x: %d bytes, want key size %d", k, len(k), info.KeySize)
		}
		if len(v) != want {
			tb.Fatalf("key %x: value of %d bytes, want ValueBytes = %d", k, len(v), want)
		}
	}
	return info, got
}

func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }
func u64(v uint64) []byte { return binary.NativeEndian.AppendUint64(nil, v) }

// checkContents compares what was read with want, naming the first few
// differences.
func checkContents(tb testing.TB, got, want map[string][]byte) {
	tb.Helper()
	bad := 0
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			tb.Errorf("key %x missing", k)
		case !bytes.Equal(g, w):
			tb.Errorf("key %x: value %x, want %x", k, g, w)
		default:
			continue
		}
		if bad++; bad > 5 {
			tb.FailNow()
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			tb.Errorf("unexpected key %x", k)
			if bad++; bad > 5 {
				tb.FailNow()
			}
		}
	}
	if len(got) != len(want) {
		tb.Fatalf("read %d elements, want %d", len(got), len(want))
	}
}

func checkInfo(tb testing.TB, info MapInfo, id uint32, spec *ebpf.MapSpec) {
	tb.Helper()
	if info.ID != id || info.Name != spec.Name || info.Type != spec.Type || info.KeySize != spec.KeySize ||
		info.ValueSize != spec.ValueSize || info.MaxEntries != spec.MaxEntries || info.Flags != spec.Flags {
		tb.Fatalf("info = %+v, want id %d and %+v", info, id, spec)
	}
}

// fillHash creates a hash of n u32 -> u64 elements (value = key*7+1) with
// BatchUpdate.
func fillHash(tb testing.TB, name string, n int) (*ebpf.Map, *ebpf.MapSpec) {
	tb.Helper()
	spec := &ebpf.MapSpec{Name: name, Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: uint32(n)}
	m := newTestMap(tb, spec)
	keys := make([]uint32, n)
	vals := make([]uint64, n)
	for i := range keys {
		keys[i] = uint32(i) * 2654435761 // spread, not just 0..n-1
		vals[i] = uint64(keys[i])*7 + 1
	}
	if n > 0 {
		if c, err := m.BatchUpdate(keys, vals, nil); err != nil || c != n {
			tb.Fatalf("BatchUpdate: %d, %v", c, err)
		}
	}
	return m, spec
}

func hashWant(n int) map[string][]byte {
	want := make(map[string][]byte, n)
	for i := 0; i < n; i++ {
		k := uint32(i) * 2654435761
		want[string(u32(k))] = u64(uint64(k)*7 + 1)
	}
	return want
}

func TestReadHash10k(t *testing.T) {
	needRoot(t)
	const n = 10000
	m, spec := fillHash(t, "scan_hash10k", n)
	id := testutil.MapID(t, m)
	r := newReader(t, nil)
	info, got := readAll(t, r, id)
	checkInfo(t, info, id, spec)
	checkContents(t, got, hashWant(n))
	st := r.Stats()
	if st.BatchReads == 0 || st.SlowReads != 0 || st.MmapReads != 0 {
		t.Fatalf("stats %+v: want the batch path only", st)
	}
	if st.Maps != 1 || st.Elements != n || st.Bytes != n*12 {
		t.Fatalf("stats %+v: want 1 map, %d elements, %d bytes", st, n, n*12)
	}
	if st.BatchReads < n/defaultBatchElems {
		t.Fatalf("%d batch calls for %d elements of at most %d", st.BatchReads, n, defaultBatchElems)
	}
}

// A bucket larger than the batch buffer makes the kernel answer ENOSPC; the
// reader must retry with a bigger buffer and lose nothing.
func TestReadHashENOSPC(t *testing.T) {
	needRoot(t)
	const n = 3000
	m, _ := fillHash(t, "scan_enospc", n)
	r := newReader(t, nil)
	r.batchElems = 1
	_, got := readAll(t, r, testutil.MapID(t, m))
	checkContents(t, got, hashWant(n))
	if r.grows == 0 {
		t.Fatal("no ENOSPC retry with one-element batches over 3000 elements in 4096 buckets")
	}
}

func TestReadArray(t *testing.T) {
	needRoot(t)
	spec := &ebpf.MapSpec{Name: "scan_array", Type: ebpf.Array, KeySize: 4, ValueSize: 12, MaxEntries: 600}
	m := newTestMap(t, spec)
	want := make(map[string][]byte)
	for i := uint32(0); i < spec.MaxEntries; i++ {
		v := make([]byte, 12)
		if i%3 != 0 { // some stay zero, as array elements do
			for j := range v {
				v[j] = byte(i*13 + uint32(j))
			}
			if err := m.Put(i, v); err != nil {
				t.Fatal(err)
			}
		}
		want[string(u32(i))] = v
	}
	id := testutil.MapID(t, m)
	r := newReader(t, nil)
	info, got := readAll(t, r, id)
	checkInfo(t, info, id, spec)
	checkContents(t, got, want)
	if st := r.Stats(); st.BatchReads == 0 || st.SlowReads != 0 {
		t.Fatalf("stats %+v: want the batch path", st)
	}
}

// perCPUWant builds the bpf(2) layout of a per-CPU value: ncpu slots of
// round_up(size, 8) bytes, slot c holding pattern(c), padding zero.
func perCPUWant(ncpu, size int, pattern func(cpu int) []byte) []byte {
	slot := roundUp8(size)
	b := make([]byte, slot*ncpu)
	for c := 0; c < ncpu; c++ {
		copy(b[c*slot:], pattern(c))
	}
	return b
}

func TestReadPerCPUArray(t *testing.T) {
	needRoot(t)
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	spec := &ebpf.MapSpec{Name: "scan_pcpu_arr", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 4, MaxEntries: 50}
	m := newTestMap(t, spec)
	want := make(map[string][]byte)
	for i := uint32(0); i < spec.MaxEntries; i++ {
		per := make([]uint32, ncpu)
		for c := range per {
			per[c] = 0xA0000000 | i<<8 | uint32(c)
		}
		if err := m.Put(i, per); err != nil {
			t.Fatal(err)
		}
		want[string(u32(i))] = perCPUWant(ncpu, 4, func(c int) []byte { return u32(per[c]) })
	}
	id := testutil.MapID(t, m)
	r := newReader(t, nil)
	info, got := readAll(t, r, id)
	checkInfo(t, info, id, spec)
	if vb := r.ValueBytes(info); vb != 8*ncpu {
		t.Fatalf("ValueBytes = %d, want 8 per CPU x %d CPUs", vb, ncpu)
	}
	checkContents(t, got, want)
}

func TestReadPerCPUHash(t *testing.T) {
	needRoot(t)
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	spec := &ebpf.MapSpec{Name: "scan_pcpu_hash", Type: ebpf.PerCPUHash, KeySize: 8, ValueSize: 12, MaxEntries: 1000}
	m := newTestMap(t, spec)
	want := make(map[string][]byte)
	for i := uint64(0); i < 700; i++ {
		per := make([][]byte, ncpu)
		for c := range per {
			per[c] = []byte(fmt.Sprintf("k%04dc%02d-xyz", i, c)[:12])
		}
		if err := m.Put(i*1000003, per); err != nil {
			t.Fatal(err)
		}
		want[string(u64(i*1000003))] = perCPUWant(ncpu, 12, func(c int) []byte { return per[c] })
	}
	id := testutil.MapID(t, m)
	r := newReader(t, nil)
	info, got := readAll(t, r, id)
	checkInfo(t, info, id, spec)
	if vb := r.ValueBytes(info); vb != 16*ncpu {
		t.Fatalf("ValueBytes = %d, want 16 per CPU x %d CPUs", vb, ncpu)
	}
	checkContents(t, got, want)
	if st := r.Stats(); st.BatchReads == 0 {
		t.Fatalf("stats %+v: want the batch path", st)
	}
}

func TestReadLRUHash(t *testing.T) {
	needRoot(t)
	spec := &ebpf.MapSpec{Name: "scan_lru", Type: ebpf.LRUHash, KeySize: 4, ValueSize: 4, MaxEntries: 4096}
	m := newTestMap(t, spec)
	want := make(map[string][]byte)
	for i := uint32(1); i <= 500; i++ {
		if err := m.Put(i, ^i); err != nil {
			t.Fatal(err)
		}
		want[string(u32(i))] = u32(^i)
	}
	id := testutil.MapID(t, m)
	r := newReader(t, nil)
	info, got := readAll(t, r, id)
	checkInfo(t, info, id, spec)
	checkContents(t, got, want)
}

// lpmKey is struct bpf_lpm_trie_key_u8 with 4 bytes of data.
func lpmKey(prefix uint32, a, b, c, d byte) []byte {
	return append(u32(prefix), a, b, c, d)
}

func TestReadLPMTrie(t *testing.T) {
	needRoot(t)
	spec := &ebpf.MapSpec{Name: "scan_lpm", Type: ebpf.LPMTrie, KeySize: 8, ValueSize: 8, MaxEntries: 100, Flags: unix.BPF_F_NO_PREALLOC}
	m := newTestMap(t, spec)
	// Nested prefixes: a lookup is a longest-prefix match, so each value
	// must come from its own exact key.
	keys := [][]byte{
		lpmKey(8, 10, 0, 0, 0),
		lpmKey(16, 10, 1, 0, 0),
		lpmKey(24, 10, 1, 2, 0),
		lpmKey(32, 10, 1, 2, 3),
		lpmKey(0, 0, 0, 0, 0),
		lpmKey(12, 192, 160, 0, 0),
		lpmKey(32, 192, 168, 1, 1),
	}
	want := make(map[string][]byte)
	for i, k := range keys {
		v := u64(uint64(i+1) * 0x0101010101010101)
		if err := m.Put(k, v); err != nil {
			t.Fatal(err)
		}
		want[string(k)] = v
	}
	id := testutil.MapID(t, m)

	// The path the kernel offers (Linux 6.18 has batch lookup for tries;
	// older kernels do not, and the reader falls back).
	r := newReader(t, nil)
	info, got := readAll(t, r, id)
	checkInfo(t, info, id, spec)
	checkContents(t, got, want)
	t.Logf("default path: %+v (batch refused: %v)", r.Stats(), r.noBatch[ebpf.LPMTrie])

	// The get_next_key + lookup path, whose lookups are longest-prefix
	// matches, forced.
	r = newReader(t, nil)
	r.noBatch[ebpf.LPMTrie] = true
	_, got = readAll(t, r, id)
	checkContents(t, got, want)
	if st := r.Stats(); st.SlowReads != uint64(len(keys)) || st.BatchReads != 0 {
		t.Fatalf("stats %+v: want the get_next_key path, %d lookups", st, len(keys))
	}
}

// A devmap has no batch lookup: the first batch call is refused, the reader
// falls back to get_next_key + lookup, skips the empty slots (ENOENT) and
// remembers the type.
func TestReadBatchRefusedFallback(t *testing.T) {
	needRoot(t)
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skipf("skipping: no loopback device for a devmap: %v", err)
	}
	spec := &ebpf.MapSpec{Name: "scan_devmap", Type: ebpf.DevMap, KeySize: 4, ValueSize: 4, MaxEntries: 8}
	m := newTestMap(t, spec)
	want := make(map[string][]byte)
	for _, k := range []uint32{1, 5, 7} {
		if err := m.Put(k, uint32(lo.Index)); err != nil {
			t.Fatal(err)
		}
		want[string(u32(k))] = u32(uint32(lo.Index))
	}
	id := testutil.MapID(t, m)
	r := newReader(t, nil)
	info, got := readAll(t, r, id)
	wantSpec := spec.Copy()
	wantSpec.Flags = unix.BPF_F_RDONLY_PROG // the kernel sets it on devmaps
	checkInfo(t, info, id, wantSpec)
	checkContents(t, got, want)
	st := r.Stats()
	if !r.noBatch[ebpf.DevMap] || st.BatchReads != 0 || st.SlowReads != uint64(spec.MaxEntries) {
		t.Fatalf("stats %+v, batch refused %v: want the fallback, one lookup per slot", st, r.noBatch[ebpf.DevMap])
	}
	_, got = readAll(t, r, id)
	checkContents(t, got, want)
}

func TestReadMmapableArray(t *testing.T) {
	needRoot(t)
	// 12-byte values: the mapping has a 16-byte stride; 1000 of them span
	// several pages.
	spec := &ebpf.MapSpec{Name: "scan_mmap", Type: ebpf.Array, KeySize: 4, ValueSize: 12, MaxEntries: 1000, Flags: unix.BPF_F_MMAPABLE}
	m := newTestMap(t, spec)
	want := make(map[string][]byte)
	for i := uint32(0); i < spec.MaxEntries; i++ {
		v := []byte(fmt.Sprintf("val%09d", i))
		if err := m.Put(i, v); err != nil {
			t.Fatal(err)
		}
		want[string(u32(i))] = v
	}
	id := testutil.MapID(t, m)
	r := newReader(t, nil)
	info, got := readAll(t, r, id)
	checkInfo(t, info, id, spec)
	checkContents(t, got, want)
	st := r.Stats()
	if st.MmapReads != 1 || st.BatchReads != 0 || st.SlowReads != 0 {
		t.Fatalf("stats %+v: want one mmap read and nothing else", st)
	}

	// The reader's mapping is read-only for good: it cannot be made
	// writable.
	ro, err := mmapArray(info, openMap)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Mprotect(ro, unix.PROT_READ|unix.PROT_WRITE); err == nil {
		t.Error("the reader's mapping could be made writable")
	}
	unix.Munmap(ro)

	// A write through a writable mapping of the test's own is seen.
	size := (16*int(spec.MaxEntries) + os.Getpagesize() - 1) &^ (os.Getpagesize() - 1)
	mem, err := unix.Mmap(m.FD(), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	copy(mem[16*777:], "written-mmap")
	copy(mem[16*999:], "last-element")
	want[string(u32(777))] = []byte("written-mmap")
	want[string(u32(999))] = []byte("last-element")
	_, got = readAll(t, r, id)
	checkContents(t, got, want)
	if st := r.Stats(); st.MmapReads != 2 {
		t.Fatalf("stats %+v: want a second mmap read", st)
	}
}

func TestReadHashOfMaps(t *testing.T) {
	needRoot(t)
	innerSpec := &ebpf.MapSpec{Name: "scan_inner", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 2}
	outerSpec := &ebpf.MapSpec{Name: "scan_outer", Type: ebpf.HashOfMaps, KeySize: 4, ValueSize: 4, MaxEntries: 10, InnerMap: innerSpec}
	outer := newTestMap(t, outerSpec)
	want := make(map[string][]byte)
	innerIDs := make(map[uint32]uint32) // inner id -> its element 1
	for k := uint32(100); k < 103; k++ {
		inner := newTestMap(t, innerSpec)
		if err := inner.Put(uint32(1), k*11); err != nil {
			t.Fatal(err)
		}
		if err := outer.Put(k, inner); err != nil {
			t.Fatal(err)
		}
		iid := testutil.MapID(t, inner)
		innerIDs[iid] = k * 11
		want[string(u32(k))] = u32(iid)
	}
	id := testutil.MapID(t, outer)
	r := newReader(t, nil)
	info, got := readAll(t, r, id)
	checkInfo(t, info, id, outerSpec)
	checkContents(t, got, want)
	for iid, v := range innerIDs {
		_, in := readAll(t, r, iid)
		checkContents(t, in, map[string][]byte{string(u32(0)): u32(0), string(u32(1)): u32(v)})
	}
}

func TestReadNotScannable(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		spec   *ebpf.MapSpec
		reason string
	}{
		{&ebpf.MapSpec{Name: "scan_ringbuf", Type: ebpf.RingBuf, MaxEntries: 4096}, "ring buffer: no elements to read"},
		{&ebpf.MapSpec{Name: "scan_queue", Type: ebpf.Queue, ValueSize: 8, MaxEntries: 16}, "queue: reading would pop elements"},
		{&ebpf.MapSpec{Name: "scan_stack", Type: ebpf.Stack, ValueSize: 8, MaxEntries: 16}, "stack: reading would pop elements"},
		{&ebpf.MapSpec{Name: "scan_bloom", Type: ebpf.BloomFilter, ValueSize: 8, MaxEntries: 16}, "bloom filter"},
		{&ebpf.MapSpec{Name: "scan_progarr", Type: ebpf.ProgramArray, KeySize: 4, ValueSize: 4, MaxEntries: 4}, "program array"},
		{&ebpf.MapSpec{Name: "scan_perfarr", Type: ebpf.PerfEventArray, KeySize: 4, ValueSize: 4, MaxEntries: 2}, "perf event array"},
	} {
		t.Run(tc.spec.Name, func(t *testing.T) {
			if err := cfeatures.HaveMapType(tc.spec.Type); errors.Is(err, ebpf.ErrNotSupported) {
				t.Logf("no %s maps on this kernel (%v): nothing to scan", tc.spec.Type, err)
				return
			}
			m := newTestMap(t, tc.spec)
			id := testutil.MapID(t, m)
			r := newReader(t, nil)
			info, err := r.Read(id, func(k, v []byte) error {
				t.Errorf("fn called with %x = %x", k, v)
				return nil
			})
			var ns *NotScannableError
			if !errors.As(err, &ns) {
				t.Fatalf("Read = %v, want a NotScannableError", err)
			}
			if !strings.Contains(ns.Reason, tc.reason) {
				t.Fatalf("reason %q does not say %q", ns.Reason, tc.reason)
			}
			if info.ID != id || info.Type != tc.spec.Type || info.Name != tc.spec.Name || info.Flags != tc.spec.Flags {
				t.Fatalf("info %+v does not describe the map", info)
			}
			t.Logf("%s: %v", tc.spec.Type, err)
			if st := r.Stats(); st != (ReadStats{}) {
				t.Fatalf("stats %+v after reading nothing", st)
			}
		})
	}
}

// BPF_F_WRONLY in map_flags makes a map not scannable. Linux 5.x and later
// keep BPF_F_RDONLY/BPF_F_WRONLY only on the creator's fd, not in the map's
// flags, so such a map is readable by id there: either outcome is checked.
func TestReadWriteOnly(t *testing.T) {
	err := checkScannable(MapInfo{Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 4, Flags: unix.BPF_F_WRONLY})
	var ns *NotScannableError
	if !errors.As(err, &ns) || !strings.Contains(ns.Reason, "write-only map (BPF_F_WRONLY)") {
		t.Fatalf("checkScannable(BPF_F_WRONLY) = %v", err)
	}

	needRoot(t)
	spec := &ebpf.MapSpec{Name: "scan_wronly", Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 4, Flags: unix.BPF_F_WRONLY}
	m := newTestMap(t, spec)
	if err := m.Put(uint32(1), uint32(2)); err != nil {
		t.Fatal(err)
	}
	if _, err := m.LookupBytes(u32(1)); err == nil {
		t.Fatal("the creator's BPF_F_WRONLY fd allowed a lookup")
	}
	r := newReader(t, nil)
	got := make(map[string][]byte)
	info, err := r.Read(testutil.MapID(t, m), func(k, v []byte) error {
		got[string(k)] = bytes.Clone(v)
		return nil
	})
	if info.Flags&unix.BPF_F_WRONLY != 0 {
		if !errors.As(err, &ns) || len(got) != 0 {
			t.Fatalf("map flags %#x: Read = %v, read %d elements; want NotScannableError", info.Flags, err, len(got))
		}
		return
	}
	t.Logf("this kernel does not keep BPF_F_WRONLY in the map's flags (%#x): the map is readable by id", info.Flags)
	if err != nil {
		t.Fatal(err)
	}
	checkContents(t, got, map[string][]byte{string(u32(1)): u32(2)})
}

// A cgroup array's elements are cgroup references the kernel does not return
// to user space (lookup: ENOTSUPP, even for an empty slot): this exercises
// the "try, and report the kernel's refusal" path of types not in the list.
func TestReadRefusedByKernel(t *testing.T) {
	needRoot(t)
	spec := &ebpf.MapSpec{Name: "scan_cgarr", Type: ebpf.CGroupArray, KeySize: 4, ValueSize: 4, MaxEntries: 4}
	m := newTestMap(t, spec)
	r := newReader(t, nil)
	info, err := r.Read(testutil.MapID(t, m), func(k, v []byte) error { return errors.New("fn called") })
	var ns *NotScannableError
	if !errors.As(err, &ns) || !strings.Contains(ns.Reason, "cgroup_array") || !strings.Contains(ns.Reason, "ENOTSUPP") {
		t.Fatalf("Read = %v, want a NotScannableError naming cgroup_array and ENOTSUPP", err)
	}
	if info.Type != ebpf.CGroupArray || info.Name != spec.Name {
		t.Fatalf("info %+v does not describe the map", info)
	}
	t.Log(err)
}

func TestReadVanished(t *testing.T) {
	needRoot(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "scan_gone", Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 4})
	if err != nil {
		t.Fatal(err)
	}
	id := testutil.MapID(t, m)
	m.Close()
	// The kernel frees the map (and its id) asynchronously.
	deadline := time.Now().Add(testutil.Timeout(10 * time.Second))
	for {
		mm, err := ebpf.NewMapFromID(ebpf.MapID(id))
		if err != nil {
			break
		}
		mm.Close()
		if time.Now().After(deadline) {
			t.Fatalf("map %d still exists 10s after its last fd was closed", id)
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := newReader(t, nil)
	info, err := r.Read(id, func(k, v []byte) error { return nil })
	if !errors.Is(err, ErrVanished) {
		t.Fatalf("Read = %v, want ErrVanished", err)
	}
	if info.ID != id {
		t.Fatalf("info.ID = %d, want %d", info.ID, id)
	}
}

func TestReadOneAndZeroEntries(t *testing.T) {
	needRoot(t)
	r := newReader(t, nil)

	one, _ := fillHash(t, "scan_one", 1)
	_, got := readAll(t, r, testutil.MapID(t, one))
	checkContents(t, got, hashWant(1))

	empty := newTestMap(t, &ebpf.MapSpec{Name: "scan_empty", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	_, got = readAll(t, r, testutil.MapID(t, empty))
	checkContents(t, got, map[string][]byte{})

	emptyLPM := newTestMap(t, &ebpf.MapSpec{Name: "scan_empty_lpm", Type: ebpf.LPMTrie, KeySize: 8, ValueSize: 8, MaxEntries: 1, Flags: unix.BPF_F_NO_PREALLOC})
	_, got = readAll(t, r, testutil.MapID(t, emptyLPM))
	checkContents(t, got, map[string][]byte{})

	arr1 := newTestMap(t, &ebpf.MapSpec{Name: "scan_arr1", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err := arr1.Put(uint32(0), uint64(42)); err != nil {
		t.Fatal(err)
	}
	_, got = readAll(t, r, testutil.MapID(t, arr1))
	checkContents(t, got, map[string][]byte{string(u32(0)): u64(42)})

	if st := r.Stats(); st.Maps != 4 || st.Elements != 2 {
		t.Fatalf("stats %+v: want 4 maps, 2 elements", st)
	}
}

func TestReadFnErrorStops(t *testing.T) {
	needRoot(t)
	stop := errors.New("stop here")
	for _, tc := range []struct {
		name   string
		prep   func(*Reader)
		mmaped bool
	}{
		{"batch", func(*Reader) {}, false},
		{"slow", func(r *Reader) { r.noBatch[ebpf.Hash] = true }, false},
		{"mmap", func(*Reader) {}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m *ebpf.Map
			if tc.mmaped {
				m = newTestMap(t, &ebpf.MapSpec{Name: "scan_stop", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1000, Flags: unix.BPF_F_MMAPABLE})
			} else {
				m, _ = fillHash(t, "scan_stop", 1000)
			}
			r := newReader(t, nil)
			tc.prep(r)
			calls := 0
			_, err := r.Read(testutil.MapID(t, m), func(k, v []byte) error {
				if calls++; calls == 10 {
					return stop
				}
				return nil
			})
			if err != stop {
				t.Fatalf("Read = %v, want fn's error itself", err)
			}
			if calls != 10 {
				t.Fatalf("fn called %d times after returning an error on call 10", calls)
			}
			if st := r.Stats(); st.Maps != 0 || st.Elements != 10 {
				t.Fatalf("stats %+v: want 0 maps finished, 10 elements", st)
			}
		})
	}
}

// The slow path on a hash, with the current key deleted under it once:
// get_next_key starts over at the first key, and no key is handed to fn
// twice or lost.
func TestReadSlowRestart(t *testing.T) {
	needRoot(t)
	const n = 500
	m, _ := fillHash(t, "scan_restart", n)
	r := newReader(t, nil)
	r.noBatch[ebpf.Hash] = true
	r.batchElems = 1 // fn runs between lookup and the next get_next_key
	got := make(map[string][]byte)
	var deleted string
	_, err := r.Read(testutil.MapID(t, m), func(k, v []byte) error {
		if _, dup := got[string(k)]; dup {
			return fmt.Errorf("key %x twice", k)
		}
		got[string(k)] = bytes.Clone(v)
		if len(got) == n/2 {
			deleted = string(k)
			return m.Delete(k)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	checkContents(t, got, hashWant(n))
	if st := r.Stats(); st.SlowReads != n || st.BatchReads != 0 {
		t.Fatalf("stats %+v: want %d lookups, no batch", st, n)
	}
	// n get_next_key calls that found a key, one ENOENT at the end, and
	// more than that if the walk started over after the deletion.
	if r.nextKeyCalls <= n+1 {
		t.Fatalf("%d get_next_key calls for %d keys: the walk did not start over after deleting %x", r.nextKeyCalls, n, deleted)
	}
	t.Logf("%d get_next_key calls for %d keys", r.nextKeyCalls, n)
}

// A map that changes under every step never ends its get_next_key walk:
// the cap must turn that into an error instead of a hang.
func TestReadSlowCap(t *testing.T) {
	needRoot(t)
	spec := &ebpf.MapSpec{Name: "scan_churn", Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 64}
	m := newTestMap(t, spec)
	for i := uint32(0); i < 32; i++ {
		if err := m.Put(i, i); err != nil {
			t.Fatal(err)
		}
	}
	r := newReader(t, nil)
	r.noBatch[ebpf.Hash] = true
	r.batchElems = 1
	next := uint32(1000)
	_, err := r.Read(testutil.MapID(t, m), func(k, v []byte) error {
		// Replace the current key by a new one: the walk restarts and
		// always finds something new.
		if err := m.Delete(k); err != nil {
			return err
		}
		next++
		return m.Put(next, next)
	})
	if err == nil || !strings.Contains(err.Error(), "did not end") {
		t.Fatalf("Read = %v, want the walk-cap error", err)
	}
	t.Log(err)
}

// Read opens the map read-only and closes it: during fn, this process holds
// the map through an fd without write access, and afterwards no fd to it.
func TestReadOpensReadOnlyAndCloses(t *testing.T) {
	needRoot(t)
	m, _ := fillHash(t, "scan_rdonly", 10)
	id := testutil.MapID(t, m)
	r := newReader(t, nil)
	before := mapFDs(t, id)
	if len(before) != 1 || before[0] != unix.O_RDWR {
		t.Fatalf("before Read: fds to map %d with access modes %v, want just the test's O_RDWR one", id, before)
	}
	var during []int
	_, err := r.Read(id, func(k, v []byte) error {
		if during == nil {
			during = mapFDs(t, id)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(during) != 2 || during[0]+during[1] != unix.O_RDWR || (during[0] != unix.O_RDONLY && during[1] != unix.O_RDONLY) {
		t.Fatalf("during Read: access modes %v, want the test's O_RDWR and Read's O_RDONLY", during)
	}
	for i := 0; i < 50; i++ {
		if _, err := r.Read(id, func(k, v []byte) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if after := mapFDs(t, id); len(after) != 1 {
		t.Fatalf("after Read: %d fds to map %d, want 1", len(after), id)
	}
}

// mapFDs returns the access mode (O_ACCMODE bits) of each fd of this
// process that refers to map id.
func mapFDs(tb testing.TB, id uint32) []int {
	tb.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Fatal(err)
	}
	var modes []int
	for _, e := range ents {
		link, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil || link != "anon_inode:bpf-map" {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc/self/fdinfo", e.Name()))
		if err != nil {
			continue
		}
		var flags, mapID int64 = -1, -1
		for _, line := range strings.Split(string(data), "\n") {
			k, v, _ := strings.Cut(line, ":")
			v = strings.TrimSpace(v)
			switch k {
			case "flags":
				flags, _ = strconv.ParseInt(v, 8, 64)
			case "map_id":
				mapID, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		if mapID == int64(id) {
			modes = append(modes, int(flags)&unix.O_ACCMODE)
		}
	}
	return modes
}

// Reading a stack-trace map needs no program: an empty one goes through
// the get_next_key path or batch, whichever the kernel offers, and is empty.
func TestReadEmptyStackTrace(t *testing.T) {
	needRoot(t)
	m := newTestMap(t, &ebpf.MapSpec{Name: "scan_stacks", Type: ebpf.StackTrace, KeySize: 4, ValueSize: 8 * 127, MaxEntries: 16})
	r := newReader(t, nil)
	_, got := readAll(t, r, testutil.MapID(t, m))
	checkContents(t, got, map[string][]byte{})
}

// A program array holding a real program is still not read.
func TestReadProgArrayWithProgram(t *testing.T) {
	needRoot(t)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SocketFilter,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	m := newTestMap(t, &ebpf.MapSpec{Name: "scan_tail", Type: ebpf.ProgramArray, KeySize: 4, ValueSize: 4, MaxEntries: 2})
	if err := m.Put(uint32(0), prog); err != nil {
		t.Fatal(err)
	}
	r := newReader(t, nil)
	_, err = r.Read(testutil.MapID(t, m), func(k, v []byte) error { return errors.New("fn called") })
	var ns *NotScannableError
	if !errors.As(err, &ns) {
		t.Fatalf("Read = %v, want NotScannableError", err)
	}
}

// BenchmarkReadHash1M reads a 1,000,000-element hash (u32 key, u64 value)
// per iteration, with batch lookups and no limiter.
func BenchmarkReadHash1M(b *testing.B) {
	needRoot(b)
	const n = 1_000_000
	m, _ := fillHash(b, "scan_bench1m", n)
	id := testutil.MapID(b, m)
	r := newReader(b, nil)
	var sum uint64
	for b.Loop() {
		before := r.Stats().Elements
		if _, err := r.Read(id, func(k, v []byte) error {
			sum += uint64(v[0])
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		if got := r.Stats().Elements - before; got != n {
			b.Fatalf("read %d elements, want %d", got, n)
		}
	}
	st := r.Stats()
	el := b.Elapsed()
	passes := float64(st.Maps)
	b.ReportMetric(float64(el.Nanoseconds())/float64(st.Elements), "ns/element")
	b.ReportMetric(float64(st.Bytes)/1e6/el.Seconds(), "MB/s")
	b.ReportMetric(el.Seconds()*1e3/passes, "ms/pass")
	b.ReportMetric(float64(st.BatchReads)/passes, "batches/pass")
	_ = sum
}
