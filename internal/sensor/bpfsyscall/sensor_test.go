package bpfsyscall

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/cgroups"
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/procexe"
	"github.com/bpfmon/bpfmon/internal/sensor/record"
	"github.com/bpfmon/bpfmon/internal/sensor/sensortest"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

func unsafePtr(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }

var arraySpec = ebpf.MapSpec{Name: "t_array", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 16}
var hashSpec = ebpf.MapSpec{Name: "t_hash", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 16}

// checkProc asserts the event was made by pid (all threads of it).
func checkProc(t *testing.T, ev *event.Event, pid int) {
	t.Helper()
	if ev.Process == nil || ev.Process.PID != uint32(pid) {
		t.Errorf("%s: process %+v, want pid %d", ev.Type, ev.Process, pid)
	}
}

// checkOwnProcess checks that ev names this test process exactly, as the
// kernel sees it: pid, one of its threads, parent, credentials, comm,
// executable (path and inode) and cgroup v2 id. (Non-zero or non-empty
// would let a decoder that read the wrong offsets pass.)
func checkOwnProcess(t *testing.T, ev *event.Event) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(exe, &st); err != nil {
		t.Fatal(err)
	}
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	cg, err := cgroups.ProcessCgroup(uint32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	cgid, err := cgroups.NewResolver().ID(cg)
	if err != nil {
		t.Fatal(err)
	}
	p := ev.Process
	if p == nil {
		t.Fatalf("%s: no process", ev.Type)
	}
	_, _, dev, err := procexe.Of(uint32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	if p.StartTime == 0 {
		t.Errorf("%s: no start time", ev.Type)
	}
	want := event.Process{PID: uint32(os.Getpid()), TID: p.TID, PPID: uint32(os.Getppid()), UID: uint32(os.Getuid()), GID: uint32(os.Getgid()),
		Comm: strings.TrimSuffix(string(comm), "\n"), Exe: exe, ExeIno: st.Ino, ExeDev: dev, CgroupID: cgid, StartTime: p.StartTime}
	if *p != want {
		t.Errorf("%s: process\n %+v, want\n %+v", ev.Type, *p, want)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", p.TID)); err != nil {
		t.Errorf("%s: tid %d is not a thread of this process: %v", ev.Type, p.TID, err)
	}
}

func checkKV(t *testing.T, ev *event.Event, key, value []byte) {
	t.Helper()
	if !ev.HasKey || !bytes.Equal(ev.Key, key) {
		t.Errorf("%s: key %x, want %x", ev.Type, ev.Key, key)
	}
	if value != nil && (!ev.HasValue || !bytes.Equal(ev.Value, value)) {
		t.Errorf("%s: value %x, want %x", ev.Type, ev.Value, value)
	}
}

func checkResult(t *testing.T, ev *event.Event, want int64) {
	t.Helper()
	if !ev.HasResult || ev.Result != want {
		t.Errorf("%s: result %v/%d, want %d", ev.Type, ev.HasResult, ev.Result, want)
	}
}

func TestOwnFDElementCalls(t *testing.T) {
	c := startSensor(t, Config{})
	m, id := newMap(t, hashSpec)
	if err := m.Update(uint32(3), uint64(0xabcdef), ebpf.UpdateNoExist); err != nil {
		t.Fatal(err)
	}
	if err := m.Delete(uint32(3)); err != nil {
		t.Fatal(err)
	}
	if err := m.Delete(uint32(4)); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Fatalf("delete of a missing key: %v", err)
	}
	if err := m.Update(uint32(5), uint64(0x55), 0); err != nil {
		t.Fatal(err)
	}
	var got uint64
	// A hash's lookup-and-delete came in Linux 5.14: before, the refused
	// call is what is reported.
	ladErr := m.LookupAndDelete(uint32(5), &got)
	if ladErr != nil && !errors.Is(ladErr, ebpf.ErrNotSupported) {
		t.Fatal(ladErr)
	}
	if err := m.Freeze(); err != nil {
		t.Fatal(err)
	}
	pid := os.Getpid()

	create := c.wait(t, "map_create", onMap(event.MapCreate, id))
	checkProc(t, create, pid)
	if create.Map.Name != "t_hash" || create.Map.Type != uint32(ebpf.Hash) || create.Map.KeySize != 4 || create.Map.ValueSize != 8 || create.Map.MaxEntries != 16 {
		t.Errorf("map_create map %+v", create.Map)
	}
	if !create.HasFD || int64(create.FD) != create.Result || create.Result < 0 {
		t.Errorf("map_create fd %d result %d", create.FD, create.Result)
	}
	fd := create.FD

	upd := c.wait(t, "map_update", onMap(event.MapUpdate, id))
	checkProc(t, upd, pid)
	checkKV(t, upd, le32(3), le64(0xabcdef))
	checkResult(t, upd, 0)
	if upd.FD != fd || upd.Flags != uint64(ebpf.UpdateNoExist) || upd.Map.Name != "t_hash" {
		t.Errorf("map_update fd %d flags %d map %+v", upd.FD, upd.Flags, upd.Map)
	}
	checkOwnProcess(t, upd)

	del := c.wait(t, "map_delete ok", func(ev *event.Event) bool {
		return onMap(event.MapDelete, id)(ev) && bytes.Equal(ev.Key, le32(3))
	})
	checkResult(t, del, 0)
	if del.HasValue {
		t.Errorf("map_delete carries a value: %x", del.Value)
	}
	miss := c.wait(t, "map_delete missing", func(ev *event.Event) bool {
		return onMap(event.MapDelete, id)(ev) && bytes.Equal(ev.Key, le32(4))
	})
	checkResult(t, miss, -int64(unix.ENOENT))

	lad := c.wait(t, "map_lookup_and_delete", onMap(event.MapLookupAndDelete, id))
	if ladErr == nil {
		checkKV(t, lad, le32(5), le64(0x55))
		checkResult(t, lad, 0)
	} else if t.Logf("lookup and delete on a hash: %v", ladErr); !bytes.Equal(lad.Key, le32(5)) || lad.Result >= 0 {
		t.Errorf("the refused map_lookup_and_delete: key %x result %d, want key 05000000 and an error", lad.Key, lad.Result)
	}

	fr := c.wait(t, "map_freeze", onMap(event.MapFreeze, id))
	checkResult(t, fr, 0)
	checkProc(t, fr, pid)
}

func TestBatchCalls(t *testing.T) {
	c := startSensor(t, Config{})
	m, id := newMap(t, hashSpec)
	keys := []uint32{1, 2, 3}
	vals := []uint64{10, 20, 30}
	n, err := m.BatchUpdate(keys, vals, nil)
	if err != nil || n != 3 {
		t.Fatalf("batch update: %d, %v", n, err)
	}
	n, err = m.BatchDelete([]uint32{1}, nil)
	if err != nil || n != 1 {
		t.Fatalf("batch delete: %d, %v", n, err)
	}
	var cursor ebpf.MapBatchCursor
	outK := make([]uint32, 8)
	outV := make([]uint64, 8)
	n, err = m.BatchLookupAndDelete(&cursor, outK, outV, nil)
	if n != 2 || (err != nil && !errors.Is(err, ebpf.ErrKeyNotExist)) {
		t.Fatalf("batch lookup and delete: %d, %v", n, err)
	}

	ub := c.wait(t, "map_update_batch", onMap(event.MapUpdateBatch, id))
	checkKV(t, ub, append(append(le32(1), le32(2)...), le32(3)...), append(append(le64(10), le64(20)...), le64(30)...))
	checkResult(t, ub, 0)
	if !ub.HasCount || ub.Count != 3 {
		t.Errorf("map_update_batch count %d", ub.Count)
	}
	db := c.wait(t, "map_delete_batch", onMap(event.MapDeleteBatch, id))
	checkKV(t, db, le32(1), nil)
	if db.Count != 1 {
		t.Errorf("map_delete_batch count %d", db.Count)
	}
	ldb := c.wait(t, "map_lookup_and_delete_batch", onMap(event.MapLookupDeleteBatch, id))
	if ldb.Count != 2 || len(ldb.Key) != 8 || len(ldb.Value) != 16 {
		t.Errorf("map_lookup_and_delete_batch count %d key %x value %x", ldb.Count, ldb.Key, ldb.Value)
	}
	// The kernel returns the remaining elements in hash order; check the
	// pairs, not the order.
	got := map[uint32]uint64{}
	for i := 0; i+4 <= len(ldb.Key) && i*2+8 <= len(ldb.Value); i += 4 {
		got[uint32(ldb.Key[i])] = uint64(ldb.Value[i*2])
	}
	if got[2] != 20 || got[3] != 30 {
		t.Errorf("map_lookup_and_delete_batch pairs %v", got)
	}
}

func TestFailedCreateReportsRequest(t *testing.T) {
	c := startSensor(t, Config{})
	// A hash map with a zero key size is invalid.
	attr := make([]byte, 64)
	copy(attr[0:], le32(uint32(ebpf.Hash)))
	copy(attr[4:], le32(0))
	copy(attr[8:], le32(8))
	copy(attr[12:], le32(4))
	copy(attr[28:], "t_badcreate")
	r, errno := bpf(unix.BPF_MAP_CREATE, attr)
	if errno == 0 {
		unix.Close(int(r))
		t.Fatal("invalid map_create succeeded")
	}
	ev := c.wait(t, "failed map_create", func(ev *event.Event) bool {
		return ev.Type == event.MapCreate && ev.Map != nil && ev.Map.Name == "t_badcreate"
	})
	checkResult(t, ev, -int64(errno))
	if ev.Map.ID != 0 || ev.Map.ValueSize != 8 || ev.Map.MaxEntries != 4 || ev.HasFD {
		t.Errorf("failed map_create map %+v fd %v", ev.Map, ev.HasFD)
	}
}

func TestGetFDByIDInChild(t *testing.T) {
	c := startSensor(t, Config{})
	_, id := newMap(t, arraySpec)
	pid := runChild(t, "byid", strconv.Itoa(int(id)))
	get := c.wait(t, "map_get_fd_by_id", func(ev *event.Event) bool {
		return onMap(event.MapGetFDByID, id)(ev) && ev.Process.PID == uint32(pid)
	})
	if get.Result < 0 || get.FD != int32(get.Result) || get.ReqMapID != uint32(id) || get.Map.Name != "t_array" {
		t.Errorf("map_get_fd_by_id: %s", describe(get))
	}
	upd := c.wait(t, "map_update from child", func(ev *event.Event) bool {
		return onMap(event.MapUpdate, id)(ev) && ev.Process.PID == uint32(pid)
	})
	checkKV(t, upd, le32(childKey["byid"]), le64(childValue))
	checkResult(t, upd, 0)
	if upd.FD != get.FD {
		t.Errorf("update fd %d, get_fd_by_id returned %d", upd.FD, get.FD)
	}
}

func TestGetFDByIDMissing(t *testing.T) {
	c := startSensor(t, Config{})
	attr := make([]byte, 16)
	copy(attr, le32(0xfffffff0))
	if _, errno := bpf(unix.BPF_MAP_GET_FD_BY_ID, attr); errno != unix.ENOENT {
		t.Fatalf("get fd of a missing id: %v", errno)
	}
	ev := c.wait(t, "failed map_get_fd_by_id", func(ev *event.Event) bool {
		return ev.Type == event.MapGetFDByID && ev.ReqMapID == 0xfffffff0
	})
	checkResult(t, ev, -int64(unix.ENOENT))
	if ev.Map == nil || ev.Map.ID != 0xfffffff0 {
		t.Errorf("failed get: map %+v", ev.Map)
	}
}

func TestPinnedPathInChild(t *testing.T) {
	c := startSensor(t, Config{})
	dir := testutil.BPFFSPath(t)
	m, id := newMap(t, arraySpec)
	path := filepath.Join(dir, "bpfmon_test_"+strconv.Itoa(os.Getpid()))
	if err := m.Pin(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(path) })
	pid := runChild(t, "pinned", path)

	pin := c.wait(t, "obj_pin", onMap(event.ObjPin, id))
	checkResult(t, pin, 0)
	if pin.Path != path || !pin.HasFD {
		t.Errorf("obj_pin: %s", describe(pin))
	}
	get := c.wait(t, "obj_get", func(ev *event.Event) bool {
		return onMap(event.ObjGet, id)(ev) && ev.Process.PID == uint32(pid)
	})
	if get.Path != path || get.Result < 0 || get.FD != int32(get.Result) {
		t.Errorf("obj_get: %s", describe(get))
	}
	upd := c.wait(t, "map_update via pinned path", func(ev *event.Event) bool {
		return onMap(event.MapUpdate, id)(ev) && ev.Process.PID == uint32(pid)
	})
	checkKV(t, upd, le32(childKey["pinned"]), le64(childValue))

	// A failed obj_get is reported with its path and error.
	if _, err := ebpf.LoadPinnedMap(path+"_missing", nil); err == nil {
		t.Fatal("loading a missing pin succeeded")
	}
	miss := c.wait(t, "failed obj_get", func(ev *event.Event) bool {
		return ev.Type == event.ObjGet && ev.Path == path+"_missing"
	})
	checkResult(t, miss, -int64(unix.ENOENT))
}

func TestSCMRightsInChild(t *testing.T) {
	c := startSensor(t, Config{})
	m, id := newMap(t, arraySpec)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "mine"), os.NewFile(uintptr(fds[1]), "theirs")
	defer mine.Close()
	defer theirs.Close()
	if err := unix.Sendmsg(fds[0], []byte{0}, unix.UnixRights(m.FD()), nil, 0); err != nil {
		t.Fatal(err)
	}
	pid := runChild(t, "scm", "-", theirs)
	upd := c.wait(t, "map_update via SCM_RIGHTS", func(ev *event.Event) bool {
		return onMap(event.MapUpdate, id)(ev) && ev.Process.PID == uint32(pid)
	})
	checkKV(t, upd, le32(childKey["scm"]), le64(childValue))
	checkResult(t, upd, 0)
}

func TestInheritedDup2FD(t *testing.T) {
	c := startSensor(t, Config{})
	m, id := newMap(t, arraySpec)
	pid := runChild(t, "inherit", "-", testutil.DupFile(t, m.FD(), "map"))
	upd := c.wait(t, "map_update via inherited, dup2'ed fd", func(ev *event.Event) bool {
		return onMap(event.MapUpdate, id)(ev) && ev.Process.PID == uint32(pid)
	})
	checkKV(t, upd, le32(childKey["inherit"]), le64(childValue))
	if upd.FD != 100 {
		t.Errorf("fd %d, want 100 (the dup2 target)", upd.FD)
	}
}

// TestSyscallABIs covers the compat entry from a 32-bit process, on x86 the
// compat entry reached by a 64-bit process with int $0x80, and a 64-bit
// process calling the compat ABI's number for bpf (357 on x86, 386 on
// arm64), which is no syscall natively and must not be reported.
func TestSyscallABIs(t *testing.T) {
	src := "testdata/bpfcall.c"
	bin32 := testutil.CC(t, src, testutil.CompatFlag)
	bin64 := testutil.CC(t, src)
	c := startSensor(t, Config{})
	_, id := newMap(t, arraySpec)

	type abiCase struct {
		name, bin, mode string
		key             uint32
		reported        bool
	}
	cases := []abiCase{
		{"32-bit process", bin32, "libc", 12, true},
		{"64-bit compat nr", bin64, "nrcompat", 14, false},
	}
	if runtime.GOARCH == "amd64" {
		cases = append(cases, abiCase{"int 0x80 from 64-bit", bin64, "int80", 13, true})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd := command(tc.bin, tc.mode, strconv.Itoa(int(id)), strconv.Itoa(int(tc.key)), "0x0102030405060708")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v: %s", tc.bin, err, out)
			}
			var fd, upd, bad int64
			if _, err := fmt.Sscanf(string(out), "fd=%d update=%d badkey=%d", &fd, &upd, &bad); err != nil {
				t.Fatalf("output %q: %v", out, err)
			}
			pid := cmd.Process.Pid
			if !tc.reported {
				if fd != -int64(unix.ENOSYS) {
					t.Fatalf("the compat bpf number from a 64-bit process returned %d, want -ENOSYS", fd)
				}
				c.sensorIdle(t)
				c.none(t, "64-bit call to the compat bpf number", func(ev *event.Event) bool {
					return ev.Process != nil && ev.Process.PID == uint32(pid)
				})
				return
			}
			if fd < 0 || upd != 0 || bad != -int64(unix.EFAULT) {
				t.Fatalf("calls failed: %s", out)
			}
			get := c.wait(t, "compat map_get_fd_by_id", func(ev *event.Event) bool {
				return onMap(event.MapGetFDByID, id)(ev) && ev.Process.PID == uint32(pid)
			})
			checkResult(t, get, fd)
			if !get.Compat {
				t.Errorf("map_get_fd_by_id not marked compat")
			}
			u := c.wait(t, "compat map_update", func(ev *event.Event) bool {
				return onMap(event.MapUpdate, id)(ev) && ev.Process.PID == uint32(pid) && ev.Result == 0
			})
			checkKV(t, u, le32(tc.key), le64(0x0102030405060708))
			if !u.Compat || u.FD != int32(fd) {
				t.Errorf("compat update: compat=%v fd=%d", u.Compat, u.FD)
			}
			b := c.wait(t, "compat bad key", func(ev *event.Event) bool {
				return onMap(event.MapUpdate, id)(ev) && ev.Process.PID == uint32(pid) && ev.Result != 0
			})
			checkResult(t, b, -int64(unix.EFAULT))
			if !b.KeyFault {
				t.Errorf("bad key pointer not flagged: %s", describe(b))
			}
		})
	}
}

func TestBadKeyPointer(t *testing.T) {
	c := startSensor(t, Config{})
	m, id := newMap(t, arraySpec)
	value := le64(1)
	attr := make([]byte, 32)
	copy(attr, le32(uint32(m.FD())))
	copy(attr[8:], le64(1)) // unreadable key address
	copy(attr[16:], le64(uint64(uintptr(unsafePtr(value)))))
	_, errno := bpf(unix.BPF_MAP_UPDATE_ELEM, attr)
	runtime.KeepAlive(value)
	if errno != unix.EFAULT {
		t.Fatalf("update with a bad key pointer: %v", errno)
	}
	ev := c.wait(t, "map_update with bad key", onMap(event.MapUpdate, id))
	checkResult(t, ev, -int64(unix.EFAULT))
	if !ev.KeyFault || len(ev.Key) != 0 {
		t.Errorf("bad key: %s fault=%v", describe(ev), ev.KeyFault)
	}
	if !bytes.Equal(ev.Value, value) {
		t.Errorf("value %x, want %x", ev.Value, value)
	}
}

func TestLargeValues(t *testing.T) {
	c := startSensor(t, Config{})
	for _, size := range []uint32{4096, 8192} {
		m, id := newMap(t, ebpf.MapSpec{Name: "t_big", Type: ebpf.Array, KeySize: 4, ValueSize: size, MaxEntries: 1})
		value := make([]byte, size)
		for i := range value {
			value[i] = byte(i*7 + int(size))
		}
		if err := m.Update(uint32(0), value, 0); err != nil {
			t.Fatal(err)
		}
		ev := c.wait(t, "large update", onMap(event.MapUpdate, id))
		checkResult(t, ev, 0)
		want := value[:min(len(value), record.DefaultCapture)]
		if !bytes.Equal(ev.Value, want) {
			t.Errorf("%d-byte value: captured %d bytes, prefix mismatch", size, len(ev.Value))
		}
		if ev.Truncated != (size > record.DefaultCapture) || ev.ValueTotal != uint64(size) {
			t.Errorf("%d-byte value: truncated=%v total=%d", size, ev.Truncated, ev.ValueTotal)
		}
	}
}

func TestPerCPUValues(t *testing.T) {
	c := startSensor(t, Config{})
	m, id := newMap(t, ebpf.MapSpec{Name: "t_percpu", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	vals := make([]uint32, cpus)
	var want []byte
	for i := range vals {
		vals[i] = uint32(0xa0 + i)
		// Per-CPU values are padded to 8 bytes each in user buffers.
		want = append(want, le64(uint64(vals[i]))...)
	}
	if err := m.Update(uint32(0), vals, 0); err != nil {
		t.Fatal(err)
	}
	ev := c.wait(t, "per-CPU update", onMap(event.MapUpdate, id))
	if !bytes.Equal(ev.Value, want) || ev.ValueTotal != uint64(8*cpus) {
		t.Errorf("per-CPU value %x (total %d), want %x", ev.Value, ev.ValueTotal, want)
	}
}

func TestHostileCommInChild(t *testing.T) {
	c := startSensor(t, Config{})
	_, id := newMap(t, arraySpec)
	pid := runChild(t, "comm", strconv.Itoa(int(id)))
	ev := c.wait(t, "update by hostile comm", func(ev *event.Event) bool {
		return onMap(event.MapUpdate, id)(ev) && ev.Process.PID == uint32(pid)
	})
	want := string(hostileComm[:bytes.IndexByte(hostileComm, 0)])
	if ev.Process.Comm != want {
		t.Errorf("comm %q, want %q", ev.Process.Comm, want)
	}
}

func TestSelfExcluded(t *testing.T) {
	r := sensortest.Start(t, sensortest.Options{ExcludeSelf: true, Deferred: true}, New(forTest(Config{})))
	m, id := newMap(t, arraySpec)
	if err := m.Update(uint32(1), uint64(1), 0); err != nil {
		t.Fatal(err)
	}
	pid := runChild(t, "byid", strconv.Itoa(int(id)))
	evs := r.Finish(t)
	var child bool
	for _, ev := range evs {
		if ev.Process != nil && ev.Process.PID == uint32(os.Getpid()) {
			t.Errorf("own call reported: %s", describe(ev))
		}
		child = child || (ev.Type == event.MapUpdate && ev.Process.PID == uint32(pid))
	}
	if !child {
		t.Errorf("the child's update was not reported (%d events)", len(evs))
	}
}

func TestEventSelection(t *testing.T) {
	c := startSensor(t, Config{Events: []event.Type{event.MapDelete}})
	m, id := newMap(t, arraySpec)
	if err := m.Update(uint32(1), uint64(1), 0); err != nil {
		t.Fatal(err)
	}
	m.Delete(uint32(1)) // arrays refuse deletes; the call is still reported
	del := c.wait(t, "map_delete", onMap(event.MapDelete, id))
	checkResult(t, del, -int64(unix.EINVAL))
	c.none(t, "unselected map_update", onMap(event.MapUpdate, id))
	// Unknown event types are refused where --event is parsed:
	// event.ParseTypes (TestParseTypes), and the command line's tests.
}

// TestLossIsCounted fills a tiny ring buffer before reading it: every call
// must then be either reported or counted as lost, never silently missing.
func TestLossIsCounted(t *testing.T) {
	s := New(forTest(Config{Events: []event.Type{event.MapUpdate}}))
	r := sensortest.Start(t, sensortest.Options{RingBytes: 4096, Deferred: true}, s)
	m, id := newMap(t, arraySpec)
	const calls = 500
	for i := range calls {
		if err := m.Update(uint32(i%16), uint64(i), 0); err != nil {
			t.Fatal(err)
		}
	}
	var reported, lost uint64
	var lostEvents int
	for _, ev := range r.Finish(t) {
		switch {
		case ev.Type == event.Lost:
			lost += ev.Count
			lostEvents++
		case onMap(event.MapUpdate, id)(ev):
			reported++
		}
	}
	if lostEvents == 0 || lost == 0 {
		t.Fatalf("no lost event after overflowing a 4 KiB ring with %d calls (reported %d)", calls, reported)
	}
	// Every call is reported or counted lost. Other processes' updates
	// made meanwhile (tests of other packages run in parallel) are counted
	// in lost too: the loss is the ring's, not one process's.
	if reported+lost < calls || reported > calls {
		t.Errorf("reported %d + lost %d = %d, want at least the %d calls, reported at most them", reported, lost, reported+lost, calls)
	}
	if s.Stats().Lost != lost || r.Ring.Lost() != lost {
		t.Errorf("Stats().Lost = %d, ring's Lost() = %d, lost events said %d", s.Stats().Lost, r.Ring.Lost(), lost)
	}
}

// TestShortLivedProcessExe checks that processes that exit right after their
// call are still reported with the full path of their executable: the path
// is read in the kernel, not from /proc after the fact.
func TestShortLivedProcessExe(t *testing.T) {
	c := startSensor(t, Config{Events: []event.Type{event.MapUpdate}})
	_, id := newMap(t, arraySpec)
	bin := testutil.CC(t, "testdata/bpfcall.c")
	const runs = 20
	pids := map[uint32]bool{}
	for range runs {
		cmd := command(bin, "libc", strconv.Itoa(int(id)), "1", "2")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		pids[uint32(cmd.Process.Pid)] = true
	}
	c.sensorIdle(t)
	var seen int
	for _, ev := range c.finish(t) {
		if ev.Process == nil || !pids[ev.Process.PID] || ev.Type != event.MapUpdate {
			continue
		}
		seen++
		if ev.Process.Exe != bin {
			t.Errorf("pid %d: exe %q, want %q", ev.Process.PID, ev.Process.Exe, bin)
		}
	}
	if seen != 2*runs { // each run makes a good and a bad-key update
		t.Errorf("%d updates from short-lived processes reported, want %d", seen, 2*runs)
	}
}

// TestQueuePop covers lookup-and-delete without a key: a pop from a queue
// reports the value the kernel handed back.
func TestQueuePop(t *testing.T) {
	c := startSensor(t, Config{})
	m, id := newMap(t, ebpf.MapSpec{Name: "t_queue", Type: ebpf.Queue, ValueSize: 8, MaxEntries: 4})
	if err := m.Update(nil, uint64(0xfeed), 0); err != nil {
		t.Fatal(err)
	}
	var v uint64
	if err := m.LookupAndDelete(nil, &v); err != nil || v != 0xfeed {
		t.Fatalf("pop: %v %x", err, v)
	}
	push := c.wait(t, "push", onMap(event.MapUpdate, id))
	if push.HasKey || !bytes.Equal(push.Value, le64(0xfeed)) {
		t.Errorf("push: %s", describe(push))
	}
	pop := c.wait(t, "pop", onMap(event.MapLookupAndDelete, id))
	checkResult(t, pop, 0)
	if pop.HasKey || !bytes.Equal(pop.Value, le64(0xfeed)) {
		t.Errorf("pop: %s", describe(pop))
	}
}

// TestBuilds: the kernel's pick is the fastest build it loads, with the
// reason each faster one did not; and the core scenarios run on each build
// (the whole suite does too, see TestMain). A build this kernel does not
// load is skipped with the kernel's reason.
func TestBuilds(t *testing.T) {
	testutil.RequireRoot(t)
	loads := map[Hook]error{}
	for _, h := range Hooks {
		r, err := sensortest.TryStart(t, sensortest.Options{}, New(Config{Hook: h}))
		loads[h] = err
		if r != nil {
			r.Finish(t)
			r.Set.Close()
		}
	}
	want := HookAuto
	for _, h := range Hooks {
		if loads[h] == nil {
			want = h
			break
		}
	}
	pick := New(Config{}) // the kernel's pick, whatever build the suite runs on
	sensortest.Start(t, sensortest.Options{}, pick)
	if pick.Hook != want {
		t.Errorf("the kernel's pick is %s, want %s, the fastest that loads (%v)", pick.Hook, want, loads)
	}
	for _, h := range Hooks {
		if h == want {
			break
		}
		if pick.HookFallback == nil || !strings.Contains(pick.HookFallback.Error(), string(h)+":") {
			t.Errorf("the fallback does not say why %s did not load: %v", h, pick.HookFallback)
		}
	}
	bin32 := testutil.CC(t, "testdata/bpfcall.c", testutil.CompatFlag)
	for _, hook := range Hooks {
		t.Run(string(hook), func(t *testing.T) {
			testutil.Need(t, hookCapability[hook], loads[hook], "the "+string(hook)+" build does not load")
			c := startSensor(t, Config{Hook: hook})
			if c.sensor.Hook != hook {
				t.Fatalf("hook %s, want %s", c.sensor.Hook, hook)
			}
			m, id := newMap(t, hashSpec)
			if err := m.Update(uint32(21), uint64(0x2121), 0); err != nil {
				t.Fatal(err)
			}
			upd := c.wait(t, "own update", onMap(event.MapUpdate, id))
			checkKV(t, upd, le32(21), le64(0x2121))
			checkResult(t, upd, 0)
			checkOwnProcess(t, upd)

			pid := runChild(t, "byid", strconv.Itoa(int(id)))
			child := c.wait(t, "child update", func(ev *event.Event) bool {
				return onMap(event.MapUpdate, id)(ev) && ev.Process.PID == uint32(pid)
			})
			checkKV(t, child, le32(childKey["byid"]), le64(childValue))

			cmd := command(bin32, "libc", strconv.Itoa(int(id)), "22", "0x22")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			compat := c.wait(t, "32-bit update", func(ev *event.Event) bool {
				return onMap(event.MapUpdate, id)(ev) && ev.Process.PID == uint32(cmd.Process.Pid) && ev.Result == 0
			})
			if !compat.Compat {
				t.Errorf("32-bit update not marked compat")
			}
			checkKV(t, compat, le32(22), le64(0x22))

			n, err := m.BatchUpdate([]uint32{30, 31}, []uint64{1, 2}, nil)
			if err != nil || n != 2 {
				t.Fatalf("batch: %d %v", n, err)
			}
			b := c.wait(t, "batch", onMap(event.MapUpdateBatch, id))
			if b.Count != 2 || b.Result != 0 {
				t.Errorf("batch: %s", describe(b))
			}
		})
	}
}

// hookCapability is what a kernel must have to load each build.
var hookCapability = map[Hook]testutil.Capability{
	HookFentry:        testutil.SyscallFentry,
	HookTPBTF:         testutil.SyscallTPBTF,
	HookRawTracepoint: testutil.SyscallRawTracepoint,
}

// TestOwnMapsFrozen: no process can clear the calls in flight, the
// counters or the calibration through bpf(2), and the ring is not listed
// as the sensor's (every build: see TestMain).
func TestOwnMapsFrozen(t *testing.T) {
	testutil.RequireRoot(t)
	s := New(forTest(Config{}))
	r := sensortest.Start(t, sensortest.Options{}, s)
	r.CheckOwnMaps(t, s)
}
