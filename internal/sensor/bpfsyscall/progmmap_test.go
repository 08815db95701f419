package bpfsyscall

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// TestProgLoad: a program load is reported with the program the kernel
// loaded (id, name, tag, type) and the maps it uses, read in the kernel
// from the new fd; a load the verifier refuses, with its result.
func TestProgLoad(t *testing.T) {
	c := startSensor(t, Config{})
	m1, id1 := newMap(t, arraySpec)
	m2, id2 := newMap(t, hashSpec)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "t_uses_two", Type: ebpf.SocketFilter, License: "GPL", Instructions: asm.Instructions{
		asm.LoadMapPtr(asm.R1, m1.FD()),
		asm.LoadMapPtr(asm.R1, m2.FD()),
		asm.Mov.Imm(asm.R0, 0),
		asm.Return(),
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := info.ID()

	ev := c.wait(t, "prog_load", func(ev *event.Event) bool {
		return ev.Type == event.ProgLoad && ev.Prog != nil && ev.Prog.ID == uint32(pid)
	})
	checkProc(t, ev, os.Getpid())
	if ev.Prog.Name != "t_uses_two" || ev.Prog.Tag != info.Tag || ev.Prog.Type != uint32(ebpf.SocketFilter) {
		t.Errorf("prog %+v, want name t_uses_two tag %s type %d", *ev.Prog, info.Tag, ebpf.SocketFilter)
	}
	if !ev.HasResult || ev.Result < 0 || !ev.HasFD || int64(ev.FD) != ev.Result {
		t.Errorf("result %v/%d fd %v/%d", ev.HasResult, ev.Result, ev.HasFD, ev.FD)
	}
	if want := []uint32{uint32(id1), uint32(id2)}; ev.Extra == nil || !slices.Equal(ev.Extra.ProgMaps, want) || ev.Extra.ProgMapCount != 2 {
		t.Errorf("prog_maps %+v, want %v", ev.Extra, want)
	}

	// The verifier refuses a program without an exit: reported with the
	// error and the type asked for, no program.
	if _, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "t_refused", Type: ebpf.SocketFilter, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0)}}); err == nil {
		t.Fatal("a program without exit loaded")
	}
	bad := c.wait(t, "refused prog_load", func(ev *event.Event) bool {
		return ev.Type == event.ProgLoad && ev.HasResult && ev.Result < 0 && ev.Process != nil && ev.Process.PID == uint32(os.Getpid())
	})
	if bad.Prog == nil || bad.Prog.ID != 0 || bad.Prog.Type != uint32(ebpf.SocketFilter) || bad.Extra != nil || bad.HasFD {
		t.Errorf("refused load: %s prog %+v extra %+v", describe(bad), bad.Prog, bad.Extra)
	}
}

var mmapSpec = ebpf.MapSpec{Name: "t_mmap", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 512, Flags: unix.BPF_F_MMAPABLE}

// TestMapMmap: mmap(2) of a map fd is reported with the map, fd, prot,
// flags and the address, from this process and through each 32-bit entry
// (mmap2 and old_mmap from a 32-bit process, mmap2 by int $0x80 from a
// 64-bit one); mmaps of other files are not.
func TestMapMmap(t *testing.T) {
	c := startSensor(t, Config{})
	m, id := newMap(t, mmapSpec)
	f, err := os.CreateTemp(t.TempDir(), "plain")
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(4096)
	if b, err := unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ, unix.MAP_SHARED); err == nil {
		unix.Munmap(b)
	} else {
		t.Fatal(err)
	}
	b, err := unix.Mmap(m.FD(), 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(b)

	ev := c.wait(t, "map_mmap", onMap(event.MapMmap, id))
	checkProc(t, ev, os.Getpid())
	if ev.Extra == nil || !ev.Extra.HasProt || ev.Extra.Prot != unix.PROT_READ|unix.PROT_WRITE || !ev.HasFlags || ev.Flags&unix.MAP_SHARED == 0 ||
		!ev.HasFD || ev.FD != int32(m.FD()) || ev.Compat {
		t.Errorf("map_mmap: %s extra %+v flags %#x compat %v", describe(ev), ev.Extra, ev.Flags, ev.Compat)
	}
	if addr := int64(uintptr(unsafePtr(b))); !ev.HasResult || ev.Result != addr {
		t.Errorf("map_mmap result %v/%#x, want the address %#x", ev.HasResult, ev.Result, addr)
	}
	c.sensorIdle(t)
	own := c.Set.OwnMaps() // the ring buffer, which its reader maps
	c.none(t, "mmap of a plain file", func(ev *event.Event) bool {
		return ev.Type == event.MapMmap && ev.Process.PID == uint32(os.Getpid()) && ev.Map.ID != uint32(id) && !slices.Contains(own, ev.Map.ID)
	})

	src := "testdata/mmapmap.c"
	bin32 := testutil.CC(t, src, testutil.CompatFlag)
	bin64 := testutil.CC(t, src)
	type mmapCase struct{ name, bin, mode, arg string }
	cases := []mmapCase{
		{"mmap2 from a 32-bit process", bin32, "libc", strconv.Itoa(int(id))},
		// Its first call: the executable's path is sent with it.
		{"inherited fd, no bpf(2) call before", bin64, "libc", "fd3"},
	}
	if runtime.GOARCH == "amd64" {
		cases = append(cases,
			mmapCase{"old_mmap from a 32-bit process", bin32, "old", strconv.Itoa(int(id))},
			mmapCase{"mmap2 by int 0x80 from 64-bit", bin64, "int80", strconv.Itoa(int(id))})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd := command(tc.bin, tc.mode, tc.arg)
			cmd.ExtraFiles = []*os.File{testutil.DupFile(t, m.FD(), "map")}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v: %s", tc.bin, err, out)
			}
			var fd, addr int64
			if _, err := fmt.Sscanf(string(out), "fd=%d addr=%d", &fd, &addr); err != nil || fd < 0 || addr <= 0 {
				t.Fatalf("output %q: %v", out, err)
			}
			ev := c.wait(t, "map_mmap", func(ev *event.Event) bool {
				return onMap(event.MapMmap, id)(ev) && ev.Process.PID == uint32(cmd.Process.Pid)
			})
			if ev.Compat != (tc.bin == bin32 || tc.mode == "int80") || ev.FD != int32(fd) || ev.Extra == nil || ev.Extra.Prot != unix.PROT_READ|unix.PROT_WRITE || ev.Result != addr || ev.Process.Exe != tc.bin {
				t.Errorf("%s: compat %v fd %d (want %d) extra %+v result %#x (want %#x) exe %q", describe(ev), ev.Compat, ev.FD, fd, ev.Extra, ev.Result, addr, ev.Process.Exe)
			}
		})
	}
}
