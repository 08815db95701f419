// Package mapwriter is the demo behind 'bpfmon mapwriter': the first thing a
// new user runs, next to 'bpfmon watch', to see bpfmon report events at once
// without writing a BPF program of their own. It rebuilds the demo of the
// 2021 proof of concept.
//
// It creates an array map named "bpfmon_demo" and, every interval, writes it
// in the two ways a map can be written: from user space with the bpf(2)
// command BPF_MAP_UPDATE_ELEM, which bpfmon's syscall sensor reports, and from
// a BPF program with the bpf_map_update_elem helper, which makes no syscall
// and is therefore invisible to syscall hooks. The program (bpf/mapwriter.c)
// is a socket filter run with BPF_PROG_TEST_RUN, so nothing is attached and
// no traffic is touched.
package mapwriter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
)

// DefaultInterval is the time between rounds when Config.Interval is not set.
const DefaultInterval = time.Second

// Keys of the demo map.
const (
	userKey    = 0 // written by user space, with the round number
	programKey = 1 // written by the program, with its run count
)

// Config configures Run.
type Config struct {
	// Interval is the time between rounds; DefaultInterval if not positive.
	Interval time.Duration
	// Count is the number of rounds; 0 runs until the context is done.
	Count int
	// Out receives one line per action; os.Stdout if nil.
	Out io.Writer
}

// Run creates the demo map and program and runs rounds 1, 2, ... one
// Interval apart. Round i writes key 0 = i from user space, runs the program
// once (which sets key 1 to its run count) and reads key 1 back, printing a
// line for each write. It returns nil after Count rounds or once ctx is done,
// and releases the map and program before returning.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Count < 0 {
		return fmt.Errorf("mapwriter: count %d is negative (use 0 to run until interrupted)", cfg.Count)
	}
	out := cfg.Out
	if out == nil {
		out = os.Stdout
	}
	if ctx.Err() != nil {
		return nil
	}

	// Needed only on kernels before 5.11; later ones account BPF memory to
	// the memory cgroup and raising the limit may be refused.
	_ = rlimit.RemoveMemlock()

	var objs mapwriterObjects
	if err := loadMapwriterObjects(&objs, nil); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return fmt.Errorf("loading the demo program: the verifier rejected it: %w", err)
		}
		return fmt.Errorf("loading the demo map and program: %w (are you root, or have CAP_BPF and CAP_NET_ADMIN?)", err)
	}
	defer objs.Close()

	d, err := newDemo(objs.BpfmonDemo, objs.BpfmonDemoWr)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "mapwriter: created map %d %q (array, 4 entries) and loaded program %d %q (socket filter); a round every %v\n",
		d.mapID, d.mapName, d.progID, d.progName, cfg.Interval)

	ticker := time.NewTicker(cfg.Interval)
	defer ticker.Stop()
	for i := 1; cfg.Count == 0 || i <= cfg.Count; i++ {
		if i > 1 {
			select {
			case <-ctx.Done():
				return nil
			case <-ticker.C:
				// Both may be ready, and select picks either: a tick
				// that came with the cancellation must not run a round.
				if ctx.Err() != nil {
					return nil
				}
			}
		}
		if err := d.round(out, uint64(i)); err != nil {
			return err
		}
	}
	return nil
}

type demo struct {
	m        *ebpf.Map
	p        *ebpf.Program
	mapID    ebpf.MapID
	mapName  string
	progID   ebpf.ProgramID
	progName string
	packet   []byte
}

func newDemo(m *ebpf.Map, p *ebpf.Program) (*demo, error) {
	mi, err := m.Info()
	if err != nil {
		return nil, fmt.Errorf("reading the demo map's info: %w (needs kernel 4.13 or later)", err)
	}
	mapID, ok := mi.ID()
	if !ok {
		return nil, errors.New("reading the demo map's info: the kernel reported no map id (needs kernel 4.13 or later)")
	}
	pi, err := p.Info()
	if err != nil {
		return nil, fmt.Errorf("reading the demo program's info: %w (needs kernel 4.13 or later)", err)
	}
	progID, ok := pi.ID()
	if !ok {
		return nil, errors.New("reading the demo program's info: the kernel reported no program id (needs kernel 4.13 or later)")
	}
	return &demo{
		m: m, p: p,
		mapID: mapID, mapName: mi.Name,
		progID: progID, progName: pi.Name,
		// A socket filter test run needs at least an Ethernet header
		// (ETH_HLEN, 14 bytes); the content does not matter.
		packet: make([]byte, 64),
	}, nil
}

func (d *demo) round(out io.Writer, i uint64) error {
	prefix := fmt.Sprintf("mapwriter: map %d %q:", d.mapID, d.mapName)

	if err := d.m.Update(uint32(userKey), i, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("writing key %d of map %d from user space: %w (was the map removed or frozen?)", userKey, d.mapID, err)
	}
	fmt.Fprintf(out, "%s user space wrote key=%d value=%d (bpf MAP_UPDATE_ELEM)\n", prefix, userKey, i)

	ret, err := d.p.Run(&ebpf.RunOptions{Data: d.packet})
	if err != nil {
		return fmt.Errorf("running program %d with BPF_PROG_TEST_RUN: %w (needs kernel 4.12 or later and CAP_BPF)", d.progID, err)
	}
	if ret != 0 {
		return fmt.Errorf("running program %d with BPF_PROG_TEST_RUN: it returned %d, want 0 (is the object file current? run go generate)", d.progID, ret)
	}

	var v uint64
	if err := d.m.Lookup(uint32(programKey), &v); err != nil {
		return fmt.Errorf("reading key %d of map %d back: %w", programKey, d.mapID, err)
	}
	fmt.Fprintf(out, "%s program %d %q wrote key=%d value=%d (bpf_map_update_elem helper; invisible to syscall hooks)\n",
		prefix, d.progID, d.progName, programKey, v)
	return nil
}
