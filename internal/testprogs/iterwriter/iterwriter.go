package iterwriter

import (
	"fmt"
	"io"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Rewrite loads the iterator, attaches it to m (a map with values of at
// least 8 bytes) and runs it once: every value of m becomes 0xbadbadbad.
// It returns the program's id.
func Rewrite(m *ebpf.Map) (uint32, error) {
	var objs iterwriterObjects
	if err := loadIterwriterObjects(&objs, nil); err != nil {
		return 0, fmt.Errorf("loading the iterator: %w", err)
	}
	defer objs.Close()
	l, err := link.AttachIter(link.IterOptions{Program: objs.Rewrite, Map: m})
	if err != nil {
		return 0, fmt.Errorf("attaching the iterator: %w", err)
	}
	defer l.Close()
	rc, err := l.Open()
	if err != nil {
		return 0, fmt.Errorf("opening the iterator: %w", err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return 0, fmt.Errorf("running the iterator: %w", err)
	}
	info, err := objs.Rewrite.Info()
	if err != nil {
		return 0, err
	}
	id, _ := info.ID()
	return uint32(id), nil
}
