package bpfsys

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"strconv"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Risky names what lets a program change what user space reads or what the
// kernel returns, the tools of a rootkit that hides BPF objects: the
// helpers it calls, and the one program type that makes bpf(2) calls
// itself.
const (
	RiskyProbeWriteUser   = "bpf_probe_write_user"   // writes the memory of the current process (a syscall's arguments, bpf_attr)
	RiskyOverrideReturn   = "bpf_override_return"    // makes a kprobed kernel function return what the program says
	RiskySendSignal       = "bpf_send_signal"        // signals the current process
	RiskySendSignalThread = "bpf_send_signal_thread" // signals the current thread
	RiskySyscallProgram   = "prog_type_syscall"      // BPF_PROG_TYPE_SYSCALL: bpf(2) commands from inside the kernel
)

// riskyHelpers are the helpers RiskyHelpers looks for, by kernel symbol.
var riskyHelpers = []string{RiskyProbeWriteUser, RiskyOverrideReturn, RiskySendSignal, RiskySendSignalThread}

// ErrHelpersUnknown: the helpers a program calls cannot be told apart. The
// kernel hides helper addresses in translated instructions, and symbol
// addresses in /proc/kallsyms, from a reader without CAP_SYSLOG or under
// kernel.kptr_restrict=2.
var ErrHelpersUnknown = errors.New("the kernel hides helper addresses (kernel.kptr_restrict=2, or no CAP_SYSLOG): the helpers a program calls are unknown")

// helperAddrs are, once read from /proc/kallsyms, the call base the
// verifier computes helper calls from and each risky helper's address.
var helperAddrs = sync.OnceValues(func() (kallsyms, error) {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		return kallsyms{}, err
	}
	defer f.Close()
	return parseKallsyms(f)
})

type kallsyms struct {
	base    uint64
	helpers map[uint64]string
}

// parseKallsyms finds __bpf_call_base and the risky helpers in /proc/kallsyms
// text ("ffffffff81234560 t bpf_probe_write_user").
func parseKallsyms(r interface{ Read([]byte) (int, error) }) (kallsyms, error) {
	k := kallsyms{helpers: map[uint64]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, []byte(" bpf_")) && !bytes.Contains(line, []byte(" __bpf_call_base")) {
			continue
		}
		f := bytes.Fields(line)
		if len(f) < 3 || len(f) > 3 { // module symbols ("[mod]") are never helpers
			continue
		}
		addr, err := strconv.ParseUint(string(f[0]), 16, 64)
		if err != nil || addr == 0 {
			continue
		}
		name := string(f[2])
		if name == "__bpf_call_base" {
			k.base = addr
			continue
		}
		for _, h := range riskyHelpers {
			if name == h {
				k.helpers[addr] = h
			}
		}
	}
	if err := sc.Err(); err != nil {
		return k, err
	}
	if k.base == 0 {
		return k, ErrHelpersUnknown
	}
	return k, nil
}

// PrepareHelpers reads /proc/kallsyms now rather than at the first
// program: a watch calls it at start, off the event path.
func PrepareHelpers() error {
	_, err := helperAddrs()
	return err
}

// bpfInsnSize is sizeof(struct bpf_insn).
const bpfInsnSize = 8

// RiskyHelpersByID is RiskyHelpers of program id, opened by id.
func RiskyHelpersByID(id uint32) ([]string, error) {
	fd, err := ProgFDByID(id)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	return RiskyHelpers(fd)
}

// RiskyHelpers returns which of the Risky* the program behind fd has: the
// helpers it calls, read from its translated instructions
// (bpf_prog_info.xlated_prog_insns), in the order of riskyHelpers, and
// RiskySyscallProgram for its type. Nil: none. The helpers are matched by
// address (the verifier replaces a helper's number with its offset from
// __bpf_call_base), so a kernel that hides addresses gives the type only,
// with ErrHelpersUnknown.
func RiskyHelpers(fd int) ([]string, error) {
	var info ProgInfo
	if err := ObjInfo(fd, unsafe.Pointer(&info), uint32(unsafe.Sizeof(info))); err != nil {
		return nil, err
	}
	var out []string
	if info.Type == ProgTypeSyscall {
		out = append(out, RiskySyscallProgram)
	}
	k, kerr := helperAddrs()
	if kerr != nil {
		return out, ErrHelpersUnknown
	}
	n := info.XlatedProgLen
	if n == 0 || n > 1<<24 {
		return out, nil // no instructions for us (not root): nothing to read
	}
	insns := make([]byte, n)
	info = ProgInfo{XlatedProgLen: n, XlatedProgInsns: unsafe.Pointer(&insns[0])}
	if err := ObjInfo(fd, unsafe.Pointer(&info), uint32(unsafe.Sizeof(info))); err != nil {
		return out, err
	}
	insns = insns[:min(n, info.XlatedProgLen)]
	found := 0
	for i := 0; i+bpfInsnSize <= len(insns); i += bpfInsnSize {
		// code 0x85 is BPF_JMP|BPF_CALL; src_reg 0 a helper (1 is a
		// bpf-to-bpf call, 2 a kfunc). The immediate at offset 4.
		if insns[i] != 0x85 || insns[i+1]>>4 != 0 {
			continue
		}
		imm := int32(binary.NativeEndian.Uint32(insns[i+4:]))
		if imm == 0 {
			return out, ErrHelpersUnknown // zeroed: addresses hidden
		}
		if h, ok := k.helpers[k.base+uint64(int64(imm))]; ok {
			for j, r := range riskyHelpers {
				if r == h {
					found |= 1 << j
				}
			}
		}
	}
	for j, r := range riskyHelpers {
		if found&(1<<j) != 0 {
			out = append(out, r)
		}
	}
	return out, nil
}
