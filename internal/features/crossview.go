package features

import (
	"errors"
	"os"
	"strings"

	"github.com/cilium/ebpf/btf"

	"github.com/bpfmon/bpfmon/internal/bpfiter"
	"github.com/bpfmon/bpfmon/internal/bpfsys"
)

// CrossView says which views of the BPF objects this kernel gives the
// inventory's cross-view check (maps and programs missing from bpf(2)'s
// listing, as a rootkit on the bpf syscall hides them), and whether the helpers a
// program calls can be read (prog_load's risky helpers).
func CrossView() []Feature {
	views := Feature{Name: "hidden_object_views", Available: true,
		Detail: "bpf(2)'s listing (GET_NEXT_ID, GET_FD_BY_ID) is compared with /proc/*/fdinfo map_id (at start, in bpfmon maps, every 5 minutes in watch), bpffs pins and programs' map ids (every refresh) and the syscall sensor's map_create and prog_load records (watch)"}
	views.Detail += "; " + iteratorViews()
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

// iteratorViews says which of the bpf_map and bpf_prog iterators load and
// attach here: loading them is the only sure test (a kernel may have the
// iterator but refuse tracing programs).
func iteratorViews() string {
	l, err := bpfiter.Open()
	if err != nil {
		why := err.Error()
		if spec, berr := btf.LoadKernelSpec(); berr == nil && !hasFunc(spec, "bpf_iter_bpf_map") {
			why = "the kernel has no bpf_map iterator (before 5.8)"
		}
		return "no bpf_map/bpf_prog iterator view (" + why + "): a map no process holds, pins or a listed program uses, and every hidden program, are not found"
	}
	defer l.Close()
	if !l.HasProgs() {
		return "the bpf_map iterator walks the kernel's maps (every refresh); no bpf_prog iterator (" + l.ProgsErr.Error() + "): hidden programs are not found"
	}
	return "the bpf_map and bpf_prog iterators walk the kernel's maps and programs (every refresh): hidden programs are found too"
}

func hasFunc(spec *btf.Spec, name string) bool {
	var fn *btf.Func
	return spec != nil && spec.TypeByName(name, &fn) == nil
}
