package sensor

import (
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Base is what a sensor loads and attaches, with the lifecycle methods
// every sensor had written alike: embedded in a sensor, it gives Detach,
// Close and ProgramIDs. The sensor's Start fills it (and, failing, leaves
// it as Close leaves it).
type Base struct {
	Coll  *ebpf.Collection // the loaded objects; nil before Start and after Close
	Progs []*ebpf.Program  // the sensor's programs, attached or to be
	Links []link.Link      // their attachments
}

// ProgramIDs implements Sensor: the ids of Progs.
func (b *Base) ProgramIDs() []uint32 { return ProgramIDs(b.Progs...) }

// Detach implements Sensor: it closes the links, so the programs run no
// more; what they recorded remains to be read.
func (b *Base) Detach() {
	for _, l := range b.Links {
		l.Close()
	}
	b.Links = nil
}

// Close implements Sensor: it detaches, then frees the programs and maps.
func (b *Base) Close() error {
	b.Detach()
	if b.Coll != nil {
		b.Coll.Close()
		b.Coll = nil
	}
	b.Progs = nil
	return nil
}
