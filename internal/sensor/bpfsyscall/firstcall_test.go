package bpfsyscall

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// TestFirstCall: a command carrying a path, a key or a value, made as the
// first call of a new process (fork) or of a new thread, with its bytes in
// a page the caller never touched (testdata/firstcall.c), as a string
// literal of a binary is after fork. The entry program cannot read such a
// page (no page faults in BPF); the kernel faults it in during the call,
// and the exit record reads it again: the event carries the path, key and
// value all the same, in both ABIs.
func TestFirstCall(t *testing.T) {
	c := startSensor(t, Config{})
	m, id := newMap(t, hashSpec)
	dir := testutil.BPFFSPath(t)
	prefix := filepath.Join(dir, "bpfmon_first_"+strconv.Itoa(os.Getpid()))
	pinned := prefix + "_map"
	if err := m.Pin(pinned); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(pinned) })
	ids := strconv.Itoa(int(id))

	type run struct {
		pid       uint32 // the firstcall process: the caller, or its parent
		name      string
		typ       event.Type
		path      string
		key, val  []byte
		wantValue bool
	}
	var runs []run
	for _, abi := range [][]string{nil, {testutil.CompatFlag}} {
		bin := testutil.CC(t, "testdata/firstcall.c", abi...)
		for _, mode := range []string{"fork", "thread"} {
			pin := prefix + "_" + mode + strconv.Itoa(len(abi))
			t.Cleanup(func() { os.Remove(pin) })
			for _, r := range []struct {
				args []string
				run  run
			}{
				{[]string{"get-path", pinned}, run{typ: event.ObjGet, path: pinned}},
				{[]string{"update", ids, "7", "77"}, run{typ: event.MapUpdate, key: le32(7), val: le64(77), wantValue: true}},
				{[]string{"delete", ids, "7"}, run{typ: event.MapDelete, key: le32(7)}},
				{[]string{"update-batch", ids, "8", "88"}, run{typ: event.MapUpdateBatch, key: le32(8), val: le64(88), wantValue: true}},
				{[]string{"pin", ids, pin}, run{typ: event.ObjPin, path: pin}},
			} {
				cmd := command(bin, append([]string{mode}, r.args...)...)
				out, err := cmd.CombinedOutput()
				if err != nil || !bytes.HasPrefix(out, []byte("result=")) || bytes.HasPrefix(out, []byte("result=-")) {
					t.Fatalf("firstcall %s %v (%v): %v: %s", mode, r.args, abi, err, out)
				}
				r.run.pid = uint32(cmd.Process.Pid)
				r.run.name = mode + " " + r.args[0] + " " + map[int]string{0: "64-bit", 1: "32-bit"}[len(abi)]
				runs = append(runs, r.run)
			}
		}
	}
	c.sensorIdle(t)
	evs := c.finish(t)
	for _, r := range runs {
		var got *event.Event
		for _, ev := range evs {
			if ev.Type == r.typ && ev.Process != nil && (ev.Process.PID == r.pid || ev.Process.PPID == r.pid) {
				got = ev
			}
		}
		if got == nil {
			t.Errorf("%s: no %s event", r.name, r.typ)
			continue
		}
		if got.Path != r.path || !bytes.Equal(got.Key, r.key) || got.KeyFault || got.ValueFault ||
			(r.wantValue && !bytes.Equal(got.Value, r.val)) {
			t.Errorf("%s: %s; want path %q key %x value %x", r.name, describe(got), r.path, r.key, r.val)
		}
	}
}
