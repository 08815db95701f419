// Package netattach is bpfmon's netattach sensor: who took a program off
// a packet path over netlink, where no bpf(2) call is made.
//
// `ip link set dev X xdpgeneric off` detaches an XDP firewall with one
// RTM_SETLINK message, `tc filter del dev X ingress` a tc classifier with
// one RTM_DELTFILTER: the syscall sensor sees neither, and the attachment
// scan (internal/alert) sees only the result, within a refresh, without
// the process. The programs (bpf/netattach.c) hook the kernel functions
// those messages reach, dev_change_xdp_fd and tc_del_tfilter, with fexit
// trampolines, else kprobes, and record the caller (its process identity:
// tgid, start time, executable inode and device, cgroup), the device (its
// index and network namespace), what was asked, the result and, for XDP,
// the program of each mode after the call. The alert engine names the
// protected program taken off from its last inventory.
//
// A third hook, on bpf_link_release (fentry, else a kprobe), sees the
// close of a bpf_link's file that holds the link's last reference (no
// pin, no other file): the link is freed and its program detached, by
// the closing process, which a link_release event names with the link's
// id, type and program.
//
// The hooks fire only when a process changes a device's XDP program or
// deletes a tc filter: nothing on the packet path nor on any other call.
package netattach

import (
	"errors"
	"fmt"
	"strconv"
	"unsafe"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/features"
	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/sensor"
	"github.com/bpfmon/bpfmon/internal/sensor/record"
	"github.com/bpfmon/bpfmon/internal/tracefs"
)

// Name is the sensor's name in logs, errors and the set.
const Name = "netattach"

// Sensor holds the programs.
type Sensor struct {
	sensor.Base        // the collection, programs and links; Detach, Close, ProgramIDs, MapIDs, Stats
	build       string // which hooks, in words
	kprobesOnly bool   // tests: the kprobe build, whatever the kernel allows
}

// New returns the sensor, not started.
func New() *Sensor { return &Sensor{} }

// Name implements sensor.Sensor.
func (s *Sensor) Name() string { return Name }

// The kernel functions hooked: the netlink XDP path (rtnetlink's IFLA_XDP,
// 5.9 and later through dev_xdp_attach) and the tc filter delete
// (RTM_DELTFILTER's handler, in the core).
const (
	fnXDP   = "dev_change_xdp_fd"
	fnTCDel = "tc_del_tfilter"
	fnLink  = "bpf_link_release"
)

// The two builds: fexit sees the arguments and the result at once; the
// kprobe build keeps the arguments by thread until the kretprobe.
var (
	fexitHooks = []sensor.Hook{
		{Prog: "na_fx_xdp", How: sensor.Tracing, Target: fnXDP},
		{Prog: "na_fx_tc_del", How: sensor.Tracing, Target: fnTCDel},
		{Prog: "na_fe_link_rel", How: sensor.Tracing, Target: fnLink},
	}
	kprobeHooks = []sensor.Hook{
		{Prog: "na_kp_xdp", How: sensor.Kprobe, Target: fnXDP},
		{Prog: "na_kr_xdp", How: sensor.Kretprobe, Target: fnXDP},
		{Prog: "na_kp_tc_del", How: sensor.Kprobe, Target: fnTCDel},
		{Prog: "na_kr_tc_del", How: sensor.Kretprobe, Target: fnTCDel},
		{Prog: "na_kp_link_rel", How: sensor.Kprobe, Target: fnLink},
	}
)

// Start loads and attaches the fexit build, else the kprobe build
// (sensor.Sensor).
func (s *Sensor) Start(env *sensor.Env) error {
	errFexit := errors.New("not tried")
	if !s.kprobesOnly {
		errFexit = s.start(env, fexitHooks)
	}
	if errFexit == nil {
		s.build = "fexit on " + fnXDP + ", " + fnTCDel + " and fentry on " + fnLink
	} else if err := s.startKprobes(env); err != nil {
		return fmt.Errorf("%w: fexit: %v; kprobe: %v", sensor.ErrUnavailable, errFexit, err)
	} else {
		s.build = "kprobes on " + fnXDP + ", " + fnTCDel + " and " + fnLink + " (fexit: " + errFexit.Error() + ")"
	}
	if err := env.Ring.Handle(record.KindNetAttach, s.decode); err != nil {
		s.Close()
		return err
	}
	s.Loss = env.Ring.CountLost(event.SourceNetAttach, s.lost)
	env.Log.Info("watching netlink XDP changes and tc filter deletes", "sensor", Name, "hooks", s.build)
	return nil
}

// startKprobes starts the kprobe build: cilium/ebpf falls back to
// tracefs's kprobe_events where the kernel has no kprobe PMU, so tracefs
// is mounted first.
func (s *Sensor) startKprobes(env *sensor.Env) error {
	if err := features.Kprobes(); err != nil {
		return err
	}
	if err := tracefs.Mount(); err != nil {
		return err
	}
	return s.start(env, kprobeHooks)
}

// start loads the object with hooks' programs only (sensor.Base's
// loader: the shared ring, the BTF cache), freezes the sensor's maps and
// attaches the programs, leaving nothing behind on failure.
func (s *Sensor) start(env *sensor.Env, hooks []sensor.Hook) error {
	err := s.Load(env, sensor.Object{Name: Name, Spec: loadNetattach, Programs: sensor.Programs(hooks),
		Constants: []sensor.Constant{{Name: "self_tgid", Value: env.Self.TGID}}})
	if err == nil {
		err = s.Freeze()
	}
	if err == nil {
		err = s.Attach(hooks, nil)
	}
	if err != nil {
		s.Close()
		return err
	}
	return nil
}

func (s *Sensor) lost() (uint64, error) {
	if s.Coll == nil {
		return 0, nil // closed: what it lost was counted before
	}
	return sensor.Counter(s.Coll.Maps[netattachMapNastats], uint32(netattachNetattachStatNASTAT_LOST))
}

// Features implements sensor.Sensor.
func (s *Sensor) Features(startErr error) []features.Feature {
	f := features.Feature{Name: "netlink_attach_attribution", Available: startErr == nil,
		Detail:   "XDP changes over netlink (ip link set dev X xdp off) and tc filter deletes (tc filter del) are seen as they happen, naming the process",
		Fallback: "the attachment scan still finds a protected program taken off an interface, within one inventory refresh, naming no process"}
	switch {
	case errors.Is(startErr, sensor.ErrNotStarted):
		f.Available, f.Detail = false, "not started"
	case startErr != nil:
		f.Detail = startErr.Error()
	case s.build != "":
		f.Detail += "; hooks: " + s.build
	}
	return []features.Feature{f}
}

const recSize = int(unsafe.Sizeof(netattachNetattachRec{}))

// XDP_FLAGS_* of the request's mode (linux/if_link.h).
const (
	xdpFlagsSKB = 1 << 1
	xdpFlagsDRV = 1 << 2
	xdpFlagsHW  = 1 << 3
)

// XDPModes names the XDP modes in the kernel's order (enum
// bpf_xdp_mode), as the inventory names them.
var XDPModes = [3]string{"skb", "drv", "hw"}

// Parents of a clsact (or ingress) qdisc's filters.
const (
	tcParentIngress = 0xFFFFFFF2
	tcParentEgress  = 0xFFFFFFF3
	tcIngressQdisc  = 0xFFFF0000 // the ingress qdisc (ffff:), whose filters are ingress
)

// decode turns a netattach record into an xdp_set or tc_filter_del event.
func (s *Sensor) decode(raw []byte, d *record.Decoder, emit record.Emit) error {
	if err := record.Check(raw, recSize, "netattach"); err != nil {
		return err
	}
	r := (*netattachNetattachRec)(unsafe.Pointer(&raw[0]))
	a := &event.Attach{Ifindex: r.Ifindex, NetNS: uint64(r.Netns)}
	ev := &event.Event{Time: d.Time(r.Hdr.Ktime), Source: event.SourceNetAttach, Process: &event.Process{},
		HasResult: true, Result: int64(r.Ret), Extra: &event.Extra{Attach: a}}
	d.Process(ev.Process, raw)
	switch netattachNetattachKind(r.Nkind) {
	case netattachNetattachKindNA_XDP:
		ev.Type, a.Kind, a.ModeProgs = event.XDPSet, "xdp", r.Progs
		ev.Flags, ev.HasFlags, ev.FD, ev.HasFD = uint64(r.Flags), true, r.Fd, true
		switch {
		case r.Flags&xdpFlagsSKB != 0:
			a.Mode = "skb"
		case r.Flags&xdpFlagsDRV != 0:
			a.Mode = "drv"
		case r.Flags&xdpFlagsHW != 0:
			a.Mode = "hw"
		}
	case netattachNetattachKindNA_LINK_REL:
		ev.Type, a.Kind, a.LinkID, a.LinkType = event.LinkRelease, "link", r.LinkId, inventory.LinkTypeName(r.LinkType)
		a.NetNS = 0 // bpf_link_release returns 0: Result is that
		a.Point = "link " + strconv.FormatUint(uint64(r.LinkId), 10) + " (" + a.LinkType + ")"
		ev.Prog = &event.Prog{ID: r.LinkProg}
	case netattachNetattachKindNA_TC_DEL:
		ev.Type, a.Kind, a.Priority = event.TCFilterDel, "tc", uint16(r.Info>>16)
		a.Direction = Direction(r.Parent)
	default:
		return fmt.Errorf("%w: netattach record of unknown kind %d", record.ErrMalformed, r.Nkind)
	}
	return emit(ev)
}

// Direction names a filter's parent as the inventory does: ingress and
// egress for a clsact (or ingress) qdisc's, the parent in hex else.
func Direction(parent uint32) string {
	switch parent {
	case tcParentIngress, tcIngressQdisc:
		return "ingress"
	case tcParentEgress:
		return "egress"
	}
	return "parent " + strconv.FormatUint(uint64(parent), 16)
}
