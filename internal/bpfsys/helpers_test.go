package bpfsys

import (
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// TestRiskyHelpers loads a tracepoint program that calls bpf_send_signal
// and a socket filter that calls only bpf_get_prandom_u32, and reads back
// which risky helpers each calls from its translated instructions.
func TestRiskyHelpers(t *testing.T) {
	load := func(typ ebpf.ProgramType, fn asm.BuiltinFunc) *ebpf.Program {
		t.Helper()
		p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "risky_test", Type: typ, License: "GPL", Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R1, 0),
			fn.Call(),
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		}})
		if err != nil {
			t.Fatalf("loading a %s program calling %s: %v", typ, fn, err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}
	signaller := load(ebpf.TracePoint, asm.FnSendSignal)
	benign := load(ebpf.SocketFilter, asm.FnGetPrandomU32)

	got, err := RiskyHelpers(signaller.FD())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{RiskySendSignal}) {
		t.Errorf("a program calling bpf_send_signal: %q, want [%s]", got, RiskySendSignal)
	}
	got, err = RiskyHelpers(benign.FD())
	if err != nil || got != nil {
		t.Errorf("a program calling bpf_get_prandom_u32: %q, %v; want none", got, err)
	}
	info, _ := signaller.Info()
	id, _ := info.ID()
	if got, err := RiskyHelpersByID(uint32(id)); err != nil || !slices.Equal(got, []string{RiskySendSignal}) {
		t.Errorf("by id: %q, %v", got, err)
	}
}

func TestParseKallsyms(t *testing.T) {
	k, err := parseKallsyms(strings.NewReader("ffffffff81000000 T __bpf_call_base\nffffffff81000100 t bpf_probe_write_user\nffffffff81000200 t bpf_probe_write_user_proto\tx\nffffffffc0000000 t bpf_send_signal\t[evil]\n"))
	if err != nil || k.base != 0xffffffff81000000 || len(k.helpers) != 1 || k.helpers[0xffffffff81000100] != RiskyProbeWriteUser {
		t.Errorf("%+v, %v", k, err)
	}
	if _, err := parseKallsyms(strings.NewReader("0000000000000000 T __bpf_call_base\n")); err != ErrHelpersUnknown {
		t.Errorf("zeroed addresses: %v, want ErrHelpersUnknown", err)
	}
}
