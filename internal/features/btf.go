package features

import (
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// kernelBTF is shared by every program bpfmon loads: decoding the kernel's
// BTF is the largest part of loading (about 0.3 s of CPU here, several
// seconds under emulation), and without a shared cache each load decodes
// it again. ReleaseBTF drops it once loading is done: decoded, it holds
// tens of MiB.
var (
	btfMu     sync.Mutex
	kernelBTF *btf.Cache
)

// BTF is the process's kernel BTF cache, for ebpf.CollectionOptions.Cache.
func BTF() *btf.Cache {
	btfMu.Lock()
	defer btfMu.Unlock()
	if kernelBTF == nil {
		kernelBTF = btf.NewCache()
	}
	return kernelBTF
}

// ReleaseBTF lets the decoded kernel BTF be freed; a later load decodes it
// again.
func ReleaseBTF() {
	btfMu.Lock()
	kernelBTF = nil
	btfMu.Unlock()
}

// KernelSpec is the running kernel's BTF, decoded once.
func KernelSpec() (*btf.Spec, error) { return BTF().Kernel() }

// loadProgram loads one program with the shared cache (ebpf.NewProgram
// would decode the kernel's BTF anew).
func loadProgram(spec *ebpf.ProgramSpec) (*ebpf.Program, error) {
	coll, err := ebpf.NewCollectionWithOptions(&ebpf.CollectionSpec{Programs: map[string]*ebpf.ProgramSpec{"probe": spec}},
		ebpf.CollectionOptions{Cache: BTF()})
	if err != nil {
		return nil, err
	}
	defer coll.Close()
	return coll.DetachProgram("probe"), nil
}

// HaveHelper reports whether the running kernel knows BPF helper name
// (e.g. "task_pt_regs"), by its BPF_FUNC_ value in the kernel's BTF:
// cilium/ebpf cannot probe helpers for tracing programs, and a load that
// calls an unknown helper fails with a verifier log to decode.
func HaveHelper(name string) error {
	spec, err := KernelSpec()
	if err != nil {
		return err
	}
	var ids *btf.Enum
	if err := spec.TypeByName("bpf_func_id", &ids); err != nil {
		return fmt.Errorf("the kernel's BTF has no enum bpf_func_id: %w", err)
	}
	for _, v := range ids.Values {
		if v.Name == "BPF_FUNC_"+name {
			return nil
		}
	}
	return fmt.Errorf("helper bpf_%s: %w", name, ebpf.ErrNotSupported)
}
