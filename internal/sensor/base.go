package sensor

import (
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/bpfmon/bpfmon/internal/sensor/record"
)

// Base is what a sensor loads and attaches, with the lifecycle methods
// every sensor had written alike: embedded in a sensor, it gives Detach,
// Close, ProgramIDs, MapIDs and Stats. The sensor's Start fills it (Load,
// Freeze, Attach in loader.go) and, failing, leaves it as Close leaves
// it.
type Base struct {
	Coll  *ebpf.Collection // the loaded objects; nil before Start and after Close
	Progs []*ebpf.Program  // the sensor's programs, attached or to be
	Links []link.Link      // their attachments
	// Shared names the maps of Coll that are not the sensor's (the ring,
	// another sensor's), filled by Prepare.
	Shared []string
	// Loss counts the sensor's lost records (env.Ring.CountLost).
	Loss *record.Loss
}

// ProgramIDs implements Sensor: the ids of Progs.
func (b *Base) ProgramIDs() []uint32 { return ProgramIDs(b.Progs...) }

// MapIDs implements Sensor: the ids of Coll's maps but the shared ones.
func (b *Base) MapIDs() []uint32 { return MapIDs(b.Coll, b.Shared...) }

// Stats implements Sensor: the records reported lost.
func (b *Base) Stats() Stats {
	if b.Loss == nil {
		return Stats{}
	}
	return Stats{Lost: b.Loss.Reported()}
}

// Detach implements Sensor: it closes the links, so the programs run no
// more; what they recorded remains to be read.
func (b *Base) Detach() {
	for _, l := range b.Links {
		l.Close()
	}
	b.Links = nil
}

// Close implements Sensor: it detaches, then frees the programs (those
// taken out of their collection too) and maps.
func (b *Base) Close() error {
	b.Detach()
	for _, p := range b.Progs {
		p.Close()
	}
	b.Progs = nil
	if b.Coll != nil {
		b.Coll.Close()
		b.Coll = nil
	}
	return nil
}
