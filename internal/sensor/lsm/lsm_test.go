package lsm

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/cgroups"
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/features"
	"github.com/bpfmon/bpfmon/internal/sensor/bpfsyscall"
	"github.com/bpfmon/bpfmon/internal/sensor/record"
	"github.com/bpfmon/bpfmon/internal/sensor/sensortest"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

const childEnv = "BPFMON_LSM_CHILD"

// TestMain lets the test binary, copied to another path (another
// executable, so not an owner), act as the foreign process: it reads
// commands from stdin and answers each with "ok" or the errno.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		child()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child commands:
//
//	open ID      keep a writable fd to map ID (BPF_MAP_GET_FD_BY_ID)
//	openro ID    the same, read-only (BPF_F_RDONLY)
//	update ID    write key 1 = 2 through the kept fd
//	mmap ID      map the kept fd shared and writable
//	recv         receive an fd over SCM_RIGHTS on fd 3: "ok", or "nofd"
//	linkupdate P put a program of its own behind the link pinned at P
//	linkdetach P detach the link pinned at P
//	progdetach C ID     detach program ID from cgroup C (BPF_PROG_DETACH)
//	progreplace C ID    put a program of its own in ID's place on cgroup C
//	                    (BPF_PROG_ATTACH with BPF_F_REPLACE)
func child() {
	fds := map[string]int{}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		var err error
		switch f[0] {
		case "open", "openro":
			id, _ := strconv.Atoi(f[1])
			flags := uint32(0)
			if f[0] == "openro" {
				flags = unix.BPF_F_RDONLY
			}
			var fd int
			fd, err = getFD(uint32(id), flags)
			if err == nil && f[0] == "open" {
				fds[f[1]] = fd
			}
		case "update":
			m, e := ebpf.NewMapFromFD(fds[f[1]])
			if e == nil {
				fd2, _ := unix.Dup(fds[f[1]])
				fds[f[1]] = fd2 // NewMapFromFD owns the first
				err = m.Update(uint32(1), uint64(2), 0)
			} else {
				err = e
			}
		case "mmap":
			_, err = unix.Mmap(fds[f[1]], 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		case "linkupdate", "linkdetach":
			err = linkOp(f[0], f[1])
		case "progdetach", "progreplace":
			err = progOp(f[0], f[1], f[2])
		case "recv":
			buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
			_, oobn, _, _, rerr := unix.Recvmsg(3, buf, oob, 0)
			err = rerr
			if err == nil {
				if msgs, _ := unix.ParseSocketControlMessage(oob[:oobn]); len(msgs) == 0 {
					fmt.Println("nofd")
					continue
				}
			}
		}
		var errno unix.Errno
		switch {
		case err == nil:
			fmt.Println("ok")
		case errors.As(err, &errno):
			fmt.Println(errno.Error())
		default:
			fmt.Println(err)
		}
	}
}

// getFD is BPF_MAP_GET_FD_BY_ID with open flags, which the library does
// not take.
func getFD(id, flags uint32) (int, error) {
	attr := make([]byte, 16)
	*(*uint32)(ptr(attr)) = id
	*(*uint32)(ptr(attr[8:])) = flags
	r, _, e := unix.Syscall(unix.SYS_BPF, unix.BPF_MAP_GET_FD_BY_ID, uintptr(ptr(attr)), uintptr(len(attr)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

func ptr(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }

// foreign is a running child at another path.
type foreign struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startForeign(t *testing.T, extra ...*os.File) *foreign {
	t.Helper()
	f := &foreign{cmd: exec.Command(testutil.ForeignExecutable(t, "foreign.test"), "-test.run=^$")}
	f.cmd.Env = append(os.Environ(), childEnv+"=1")
	var err error
	f.cmd.ExtraFiles = extra
	f.cmd.Stderr = os.Stderr
	if f.in, err = f.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := f.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	f.out = bufio.NewScanner(out)
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.in.Close(); f.cmd.Wait() })
	return f
}

// do sends a command and returns the answer.
func (f *foreign) do(t *testing.T, cmd string) string {
	t.Helper()
	fmt.Fprintln(f.in, cmd)
	if !f.out.Scan() {
		t.Fatalf("foreign %q: no answer", cmd)
	}
	return f.out.Text()
}

// start runs the syscall sensor with the LSM sensor on it, in build b.
// bpfmon's own process is always allowed; here that is nobody (the test
// process must be an owner to write).
func start(t *testing.T, b Build) (*Sensor, *testutil.Events) {
	t.Helper()
	testutil.RequireRoot(t)
	needBuild(t, b)
	en := NewBuild(b)
	r := sensortest.Start(t, sensortest.Options{Describe: func(ev *event.Event) string {
		return fmt.Sprintf("%s %+v %+v %+v", ev.Type, ev.Process, ev.Map, ev.Extra)
	}}, bpfsyscall.New(bpfsyscall.Config{}), en)
	if en.Build != b {
		t.Fatalf("build %q started, want %q", en.Build, b)
	}
	return en, &r.Events
}

// needBuild skips where build b cannot run, or fails where the kernel is
// declared to run it.
func needBuild(t testing.TB, b Build) {
	t.Helper()
	if b == BuildFmodRet {
		testutil.Need(t, testutil.FmodRet, FmodRet(), "enforcement's fmod_ret build; make vmtest runs this test on kernels with BPF trampolines")
		return
	}
	testutil.Need(t, testutil.BPFLSM, features.BPFLSM(), "enforcement; make vmtest runs this test on kernels booted with lsm=...,bpf")
}

// TestBuildChoice: --enforce runs bpf-lsm where bpf is an active LSM,
// and fmod_ret where it is not and trampolines work, saying why not
// bpf-lsm; features says which.
func TestBuildChoice(t *testing.T) {
	testutil.RequireRoot(t)
	want, lsmErr := BuildLSM, features.BPFLSM()
	if lsmErr != nil || testutil.Declared(testutil.FmodRet) && !testutil.Declared(testutil.BPFLSM) {
		want = BuildFmodRet
	}
	needBuild(t, want)
	en := New()
	sensortest.Start(t, sensortest.Options{}, bpfsyscall.New(bpfsyscall.Config{}), en)
	if en.Build != want {
		t.Fatalf("build %q chosen (not chosen: %v), want %q", en.Build, en.Fallback, want)
	}
	if err := en.Arm(); err != nil {
		t.Fatal(err)
	}
	f := en.Features(nil)[0]
	if !f.Available || !strings.Contains(f.Detail, "build "+string(want)) {
		t.Errorf("features: %+v, want build %s", f, want)
	}
	if want == BuildFmodRet && (en.Fallback == nil || !strings.Contains(en.Fallback.Error(), "bpf-lsm: "+lsmErr.Error()) || !strings.Contains(f.Detail, lsmErr.Error())) {
		t.Errorf("fmod_ret chosen without bpf-lsm's reason (%v): fallback %v, features %q", lsmErr, en.Fallback, f.Detail)
	}
	if want == BuildLSM && en.Fallback != nil {
		t.Errorf("bpf-lsm chosen with a fallback reason: %v", en.Fallback)
	}
}

// TestEnforce runs the refusals in each build.
func TestEnforce(t *testing.T) {
	for _, b := range builds {
		t.Run(string(b), func(t *testing.T) { testEnforce(t, b) })
	}
}

func self(t testing.TB) event.Identity {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		t.Fatal(err)
	}
	path, err := cgroups.ProcessCgroup(uint32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	r := cgroups.NewResolver()
	cg, err := r.ID(path)
	switch {
	case err != nil && r.Root() == "" && path == "/":
		cg = 1 // no cgroup2 mount: every process is in the root, id 1
	case err != nil:
		t.Fatalf("cgroup %s: %v", path, err)
	}
	return event.Identity{ExeIno: st.Ino, CgroupID: cg}
}

// testEnforce: a non-owner is refused every way to write a protected map
// (a bpf(2) update through an fd it already held, a new writable fd, an fd
// passed over SCM_RIGHTS, a writable shared mapping), each refusal is
// reported with its hook; reading stays possible; the owner's writes and
// everyone's writes to other maps go through; a process made an owner for
// every map (a policy owner) may write.
func testEnforce(t *testing.T, b Build) {
	en, evs := start(t, b)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "lsm_prot", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 512, Flags: unix.BPF_F_MMAPABLE})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	other, err := ebpf.NewMap(&ebpf.MapSpec{Name: "lsm_other", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	id, otherID := testutil.MapID(t, m), testutil.MapID(t, other)
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sp[0])
	peer := os.NewFile(uintptr(sp[1]), "peer")
	defer peer.Close()

	f := startForeign(t, peer)
	ids, oids := strconv.Itoa(int(id)), strconv.Itoa(int(otherID))
	for _, c := range []string{"open " + ids, "open " + oids} {
		if got := f.do(t, c); got != "ok" {
			t.Fatalf("before enforcement, %s: %s", c, got)
		}
	}
	if err := en.Protect(id); err != nil {
		t.Fatal(err)
	}
	if err := en.AddOwner(id, self(t)); err != nil {
		t.Fatal(err)
	}
	if err := en.Arm(); err != nil {
		t.Fatalf("attaching: %v", err)
	}
	t.Logf("hooks: %v", en.Hooks)

	eperm := unix.EPERM.Error()
	for cmd, want := range map[string]string{
		"update " + ids:  eperm, // a writable fd held from before
		"mmap " + ids:    eperm,
		"open " + ids:    eperm, // a new writable fd
		"openro " + ids:  "ok",  // reading is not refused
		"update " + oids: "ok",
	} {
		if got := f.do(t, cmd); got != want {
			t.Errorf("foreign %s: %s, want %s", cmd, got, want)
		}
	}
	rights := unix.UnixRights(m.FD())
	if err := unix.Sendmsg(sp[0], []byte{0}, rights, nil, 0); err != nil {
		t.Fatal(err)
	}
	if got := f.do(t, "recv"); got != "nofd" {
		t.Errorf("foreign received a writable fd over SCM_RIGHTS: %s", got)
	}
	// The owner writes and maps its map.
	if err := m.Update(uint32(1), uint64(1), 0); err != nil {
		t.Errorf("the owner's update: %v", err)
	}
	if b, err := unix.Mmap(m.FD(), 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		t.Errorf("the owner's mmap: %v", err)
	} else {
		unix.Munmap(b)
	}

	pid := uint32(f.cmd.Process.Pid)
	for _, hook := range []string{"bpf", "mmap_file", "bpf_map", "file_receive"} {
		ev := evs.Wait(t, testutil.Timeout(5*time.Second), "access_denied "+hook, func(ev *event.Event) bool {
			return ev.Type == event.AccessDenied && ev.Extra != nil && ev.Extra.Hook == hook
		})
		if ev.Process == nil || ev.Process.PID != pid || ev.Map == nil || ev.Map.ID != id || ev.Map.Name != "lsm_prot" || ev.Source != event.SourceLSM ||
			!ev.HasResult || ev.Result != -int64(unix.EPERM) || ev.Process.Exe == "" {
			t.Errorf("%s refusal: %+v process %+v map %+v", hook, ev, ev.Process, ev.Map)
		}
		if hook == "bpf" && ev.Extra.Cmd != string(event.MapUpdate) {
			t.Errorf("bpf refusal of %q, want %q", ev.Extra.Cmd, event.MapUpdate)
		}
	}
	// The refused bpf(2) update, as the syscall sensor saw it.
	evs.Wait(t, testutil.Timeout(5*time.Second), "the refused update", func(ev *event.Event) bool {
		return ev.Type == event.MapUpdate && ev.Process != nil && ev.Process.PID == pid && ev.Map != nil && ev.Map.ID == id && ev.Result == -int64(unix.EPERM)
	})
	evs.None(t, "a refusal of the owner or of another map", func(ev *event.Event) bool {
		return ev.Type == event.AccessDenied && (ev.Process.PID != pid || ev.Map.ID != id)
	})
	// Four refusals, one per hook, each counted and each reported.
	reported := evs.All(func(ev *event.Event) bool { return ev.Type == event.AccessDenied })
	if denied, err := en.Denied(); err != nil || denied != 4 || len(reported) != 4 || en.Stats().Lost != 0 {
		t.Errorf("stats: %d refused, %d reported, %d lost, %v; want 4, 4, 0", denied, len(reported), en.Stats().Lost, err)
	}

	// An owner of every map, by executable in any cgroup: the policy's.
	var st unix.Stat_t
	if err := unix.Stat(f.cmd.Path, &st); err != nil {
		t.Fatal(err)
	}
	if err := en.AddOwner(0, event.Identity{ExeIno: st.Ino}); err != nil {
		t.Fatal(err)
	}
	if got := f.do(t, "update "+ids); got != "ok" {
		t.Errorf("a policy owner's update: %s", got)
	}
}

// TestLayoutMatchesObject checks that the object speaks the record
// protocol, that the Go record type matches its BTF, and that every hook's
// programs are in it.
func TestLayoutMatchesObject(t *testing.T) {
	for _, load := range []func() (*ebpf.CollectionSpec, error){loadLsm, loadLsmlegacy} {
		checkObject(t, load)
	}
}

func checkObject(t *testing.T, load func() (*ebpf.CollectionSpec, error)) {
	spec, err := load()
	if err != nil {
		t.Fatal(err)
	}
	if err := record.CheckObject(spec); err != nil {
		t.Error(err)
	}
	if err := record.CheckType(spec, "deny_rec", reflect.TypeFor[lsmDenyRec]()); err != nil {
		t.Error(err)
	}
	for _, h := range hooks {
		for _, b := range builds {
			for _, p := range h.progs(b) {
				if spec.Programs[p] == nil {
					t.Errorf("hook %s: %s program %s not in the object", h.name, b, p)
				}
			}
		}
	}
}
