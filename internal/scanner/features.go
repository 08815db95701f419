package scanner

import (
	"errors"
	"os"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/features"
)

// Features describe the content scanner on this kernel: how it reads maps.
func Features() []features.Feature {
	fs := []features.Feature{{Name: "content_scanner", Available: true, Detail: "reads every readable map each --scan-interval"}}
	if err := probeBatch(); err != nil {
		fs = append(fs, features.Feature{Name: "batch_reads", Detail: "BPF_MAP_LOOKUP_BATCH: " + err.Error(), Fallback: "GET_NEXT_KEY and LOOKUP, one element at a time"})
	} else {
		fs = append(fs, features.Feature{Name: "batch_reads", Available: true, Detail: "BPF_MAP_LOOKUP_BATCH"})
	}
	if err := probeMmap(); err != nil {
		fs = append(fs, features.Feature{Name: "mmap_reads", Detail: "mmap of a BPF_F_MMAPABLE array: " + err.Error(), Fallback: "batch reads"})
	} else {
		fs = append(fs, features.Feature{Name: "mmap_reads", Available: true, Detail: "BPF_F_MMAPABLE arrays are read through a read-only mapping"})
	}
	return fs
}

func probeBatch() error {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 2})
	if err != nil {
		return err
	}
	defer m.Close()
	m.Put(uint32(1), uint32(1))
	var cursor ebpf.MapBatchCursor
	keys, values := make([]uint32, 2), make([]uint32, 2)
	_, err = m.BatchLookup(&cursor, keys, values, nil)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	return nil
}

func probeMmap() error {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1, Flags: unix.BPF_F_MMAPABLE})
	if err != nil {
		return err
	}
	defer m.Close()
	b, err := unix.Mmap(m.FD(), 0, os.Getpagesize(), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return err
	}
	return unix.Munmap(b)
}
