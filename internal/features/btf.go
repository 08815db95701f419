package features

import (
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
