package features

import (
	"errors"
	"os"
	"strings"

	"github.com/cilium/ebpf/btf"

	"github.com/bpfmon/bpfmon/internal/bpfsys"
)

// CrossView says which views of the BPF objects this kernel gives the
// inventory's cross-view check (maps missing from bpf(2)'s listing, as a
// rootkit on the bpf syscall hides them), and whether the helpers a
// program calls can be read (prog_load's risky helpers).
func CrossView() []Feature {
	views := Feature{Name: "hidden_object_views", Available: true,
		Detail: "bpf(2)'s listing (GET_NEXT_ID, GET_FD_BY_ID) is compared with /proc/*/fdinfo map_id (at start, in bpfmon maps, every 5 minutes in watch), bpffs pins and programs' map ids (every refresh) and the syscall sensor's map_create records (watch)"}
	if spec, err := btf.LoadKernelSpec(); err != nil {
		views.Detail += "; bpf_map/bpf_prog iterators: unknown (no kernel BTF: " + err.Error() + ")"
	} else if hasFunc(spec, "bpf_iter_bpf_map") {
		views.Detail += "; the kernel has bpf_map and bpf_prog iterators, which this build does not use yet"
	} else {
		views.Detail += "; the kernel has no bpf_map iterator (before 5.8)"
	}
	helpers := Feature{Name: "rewrite_helpers", Available: true,
		Detail: "prog_load and the inventory name the programs that call bpf_probe_write_user, bpf_override_return or bpf_send_signal, from their translated instructions"}
	if err := bpfsys.PrepareHelpers(); err != nil {
		helpers.Available = false
		helpers.Detail = "the helpers a program calls cannot be read: " + err.Error()
		if !errors.Is(err, bpfsys.ErrHelpersUnknown) {
			helpers.Detail = "reading /proc/kallsyms: " + err.Error()
		}
		helpers.Fallback = "prog_load says risky_unknown; BPF_PROG_TYPE_SYSCALL programs are still named by type"
	}
	if b, err := os.ReadFile("/sys/kernel/security/lockdown"); err == nil &&
		(strings.Contains(string(b), "[integrity]") || strings.Contains(string(b), "[confidentiality]")) {
		helpers.Detail += "; this kernel's lockdown refuses bpf_probe_write_user to every program"
	}
	return []Feature{views, helpers}
}

func hasFunc(spec *btf.Spec, name string) bool {
	var fn *btf.Func
	return spec != nil && spec.TypeByName(name, &fn) == nil
}
