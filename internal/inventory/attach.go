package inventory

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Attachment is one place where a program is attached: what makes it run.
// A program that protects something does so only while attached, so the
// attachments are what an attacker who leaves the maps alone removes.
type Attachment struct {
	// Kind is "xdp" (netlink, per interface), "tc" (a cls_bpf filter,
	// netlink; AttachType its direction, Target its priority), "link" (a
	// bpf_link of any type) or "cgroup" (BPF_PROG_ATTACH to a cgroup,
	// from BPF_PROG_QUERY).
	Kind string `json:"kind"`
	// Point names the attach point, not the program: two scans that
	// find the same Point for another program saw it replaced. Stable
	// across scans while the attachment lasts.
	Point string `json:"point"`
	// LinkID and LinkType, for a bpf_link (an XDP attachment made
	// through a link has both Kind "xdp" and a LinkID).
	LinkID   uint32 `json:"link_id,omitempty"`
	LinkType string `json:"link_type,omitempty"`
	// Interface, Ifindex and NetNS (the network namespace's inode) for
	// XDP and tcx; Mode is XDP's "skb", "drv" or "hw".
	Interface string `json:"interface,omitempty"`
	Ifindex   uint32 `json:"ifindex,omitempty"`
	NetNS     uint64 `json:"netns,omitempty"`
	Mode      string `json:"mode,omitempty"`
	// AttachType is the kernel's attach type, as cilium/ebpf names it
	// ("CGroupInetIngress", "TCXIngress", ...), where the kernel says.
	AttachType string `json:"attach_type,omitempty"`
	// CgroupID (cgroup links and attachments) and Cgroup, its path
	// when known.
	CgroupID uint64 `json:"cgroup_id,omitempty"`
	Cgroup   string `json:"cgroup,omitempty"`
	// Target is the rest of what the kernel says of a link: a
	// tracepoint's name, a trampoline's target BTF id.
	Target string `json:"target,omitempty"`
}

// linkTypes names BPF_LINK_TYPE_*, as bpftool does.
var linkTypes = []string{"unspec", "raw_tracepoint", "tracing", "cgroup", "iter", "netns", "xdp", "perf_event",
	"kprobe_multi", "struct_ops", "netfilter", "tcx", "uprobe_multi", "netkit", "sockmap"}

// LinkTypeName names a BPF_LINK_TYPE_*.
func LinkTypeName(t uint32) string {
	if int(t) < len(linkTypes) {
		return linkTypes[t]
	}
	return "type " + strconv.FormatUint(uint64(t), 10)
}

// Attachments lists every program's attachments the kernel reports, by
// program id: every bpf_link, XDP on every interface of every network
// namespace (netlink), and cgroup attachments of the cgroup v2 root and
// its first level (BPF_PROG_QUERY). The []error says what could not be
// read; what vanished while it read is skipped.
func Attachments() (map[uint32][]Attachment, []error) {
	out := map[uint32][]Attachment{}
	errs := walkLinks(out)
	errs = append(errs, walkXDP(out)...)
	errs = append(errs, walkCgroups(out)...)
	for id := range out {
		slices.SortFunc(out[id], func(a, b Attachment) int { return strings.Compare(a.Point, b.Point) })
		if len(out[id]) > MaxAttachments {
			errs = append(errs, fmt.Errorf("program %d: %d attachments, of which the first %d are kept", id, len(out[id]), MaxAttachments))
			out[id] = out[id][:MaxAttachments:MaxAttachments]
		}
	}
	return out, errs
}

// MaxAttachments bounds the attachments kept per program: whoever can
// attach a program can attach it many times (a cgroup link per cgroup),
// and each is held by every refresh of the map context.
const MaxAttachments = 256

// walkLinks adds every bpf_link.
func walkLinks(out map[uint32][]Attachment) []error {
	var errs []error
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("link %d: %w", it.ID, err))
			}
			continue
		}
		a := Attachment{Kind: "link", LinkID: uint32(info.ID), LinkType: LinkTypeName(uint32(info.Type))}
		switch {
		case info.XDP() != nil:
			a.Kind, a.Ifindex = "xdp", info.XDP().Ifindex
		case info.TCX() != nil:
			a.Ifindex, a.AttachType = info.TCX().Ifindex, ebpf.AttachType(info.TCX().AttachType).String()
		case info.Netkit() != nil:
			a.Ifindex, a.AttachType = info.Netkit().Ifindex, ebpf.AttachType(info.Netkit().AttachType).String()
		case info.Cgroup() != nil:
			a.CgroupID, a.AttachType = info.Cgroup().CgroupId, cgroupAttachName(ebpf.AttachType(info.Cgroup().AttachType))
		case info.NetNs() != nil:
			a.NetNS, a.AttachType = uint64(info.NetNs().NetnsInode), ebpf.AttachType(info.NetNs().AttachType).String()
		case info.Tracing() != nil:
			t := info.Tracing()
			a.AttachType = ebpf.AttachType(t.AttachType).String()
			a.Target = fmt.Sprintf("btf %d of object %d", t.TargetBtfId, t.TargetObjectId)
		case info.RawTracepoint() != nil:
			a.Target = info.RawTracepoint().Name
		}
		if defunct(info, a) {
			continue // detached (BPF_LINK_DETACH, or its device or cgroup gone): it attaches nothing
		}
		a.Point = linkPoint(a)
		out[uint32(info.Program)] = append(out[uint32(info.Program)], a)
	}
	if err := it.Err(); err != nil {
		errs = append(errs, fmt.Errorf("listing links: %w", err))
	}
	return errs
}

// defunct reports a link that the kernel keeps but that attaches its
// program nowhere any more: BPF_LINK_DETACH clears its target.
func defunct(info *link.Info, a Attachment) bool {
	switch {
	case info.XDP() != nil, info.TCX() != nil, info.Netkit() != nil:
		return a.Ifindex == 0
	case info.Cgroup() != nil:
		return a.CgroupID == 0
	case info.NetNs() != nil:
		return a.NetNS == 0
	}
	return false
}

// linkPoint names a link's attach point with its target, so that a link
// detached from one target and attached to another is not the same point.
func linkPoint(a Attachment) string {
	p := fmt.Sprintf("link %d (%s", a.LinkID, a.LinkType)
	switch {
	case a.Ifindex != 0:
		p += fmt.Sprintf(" on ifindex %d", a.Ifindex)
	case a.CgroupID != 0:
		p += fmt.Sprintf(" on cgroup %d", a.CgroupID)
	case a.NetNS != 0:
		p += fmt.Sprintf(" on netns %d", a.NetNS)
	case a.Target != "":
		p += " on " + a.Target
	}
	if a.AttachType != "" {
		p += " " + a.AttachType
	}
	return p + ")"
}

// xdpModes are IFLA_XDP's program id attributes and the modes they say.
var xdpModes = map[uint16]string{unix.IFLA_XDP_DRV_PROG_ID: "drv", unix.IFLA_XDP_SKB_PROG_ID: "skb", unix.IFLA_XDP_HW_PROG_ID: "hw"}

// xdpAttached is IFLA_XDP_ATTACHED's values, by mode.
var xdpAttached = map[uint8]string{1: "drv", 2: "skb", 3: "hw"}

// walkXDP adds the XDP program and the tc (cls_bpf) filters of every
// interface of every network namespace a process or a bind mount under
// /run/netns holds. Programs attached over netlink are in no bpf(2)
// listing of attachments.
func walkXDP(out map[uint32][]Attachment) []error {
	nss, errs := netnsPaths()
	xdpLinks := map[[2]uint32]int{} // (ifindex, prog) → index in out[prog]
	for prog, as := range out {
		for i, a := range as {
			if a.Kind == "xdp" && a.LinkID != 0 {
				xdpLinks[[2]uint32{a.Ifindex, prog}] = i
			}
		}
	}
	for _, ns := range nss {
		found, tc, names, err := xdpIn(ns.path)
		if err != nil {
			if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("network namespace %d: %w", ns.ino, err))
			}
			continue
		}
		for _, x := range found {
			a := Attachment{Kind: "xdp", Interface: x.ifname, Ifindex: x.ifindex, NetNS: ns.ino, Mode: x.mode,
				Point: fmt.Sprintf("xdp %s on %s (ifindex %d, netns %d)", x.mode, x.ifname, x.ifindex, ns.ino)}
			if i, ok := xdpLinks[[2]uint32{x.ifindex, x.prog}]; ok && out[x.prog][i].Interface == "" {
				// The link's own entry, now with where it is.
				l := &out[x.prog][i]
				l.Interface, l.NetNS, l.Mode = a.Interface, a.NetNS, a.Mode
				continue
			}
			out[x.prog] = append(out[x.prog], a)
		}
		for _, c := range tc {
			out[c.prog] = append(out[c.prog], Attachment{Kind: "tc", Interface: names[c.ifindex], Ifindex: c.ifindex, NetNS: ns.ino,
				AttachType: c.direction, Target: fmt.Sprintf("priority %d", c.priority),
				Point: fmt.Sprintf("tc %s priority %d on %s (ifindex %d, netns %d)", c.direction, c.priority, names[c.ifindex], c.ifindex, ns.ino)})
		}
	}
	return errs
}

type netns struct {
	ino  uint64
	path string
}

// netnsPaths lists each network namespace once, with a path that opens it.
func netnsPaths() ([]netns, []error) {
	var (
		out  []netns
		seen = map[uint64]bool{}
		errs []error
	)
	add := func(p string) {
		var st unix.Stat_t
		if unix.Stat(p, &st) != nil || seen[st.Ino] {
			return
		}
		seen[st.Ino] = true
		out = append(out, netns{ino: st.Ino, path: p})
	}
	add("/proc/self/ns/net")
	d, err := os.Open("/proc")
	if err != nil {
		return out, []error{fmt.Errorf("listing processes for their network namespaces: %w", err)}
	}
	defer d.Close()
	for {
		names, err := d.Readdirnames(1024)
		for _, n := range names {
			if n[0] >= '1' && n[0] <= '9' {
				add("/proc/" + n + "/ns/net")
			}
		}
		if err != nil {
			break
		}
	}
	if named, err := filepath.Glob("/run/netns/*"); err == nil {
		for _, p := range named {
			add(p)
		}
	}
	return out, errs
}

type xdpProg struct {
	ifname  string
	ifindex uint32
	mode    string
	prog    uint32
}

// xdpIn dumps the interfaces of the network namespace at path and returns
// their XDP programs. The dump's socket is opened in that namespace by a
// thread that enters it and goes back to its own after; a thread that
// cannot go back is never unlocked, so the runtime ends it (or, the main
// thread, parks it) and no goroutine runs in another namespace.
func xdpIn(path string) ([]xdpProg, []tcProg, map[uint32]string, error) {
	type result struct {
		rib []byte
		tc  []tcProg
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		home, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("opening this thread's network namespace: %w", err)}
			return
		}
		defer unix.Close(home)
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: err}
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("entering it: %w", err)}
			return
		}
		rib, err := syscall.NetlinkRIB(unix.RTM_GETLINK, unix.AF_UNSPEC)
		var tc []tcProg
		if err == nil {
			tc, err = tcProgs()
		}
		if unix.Setns(home, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		done <- result{rib, tc, err}
	}()
	r := <-done
	if r.err != nil {
		return nil, nil, nil, r.err
	}
	xdp, names, err := parseXDP(r.rib)
	return xdp, r.tc, names, err
}

// parseXDP reads the XDP programs out of an RTM_GETLINK dump, and the
// interfaces' names by index.
func parseXDP(rib []byte) ([]xdpProg, map[uint32]string, error) {
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing the interfaces' dump: %w", err)
	}
	var out []xdpProg
	names := map[uint32]string{}
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Type != unix.RTM_NEWLINK || len(m.Data) < unix.SizeofIfInfomsg {
			continue
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(m)
		if err != nil {
			continue
		}
		ifindex := binary.NativeEndian.Uint32(m.Data[4:8]) // ifinfomsg.ifi_index
		var name string
		var xdp []byte
		for _, a := range attrs {
			switch a.Attr.Type {
			case unix.IFLA_IFNAME:
				name = strings.TrimRight(string(a.Value), "\x00")
			case unix.IFLA_XDP:
				xdp = a.Value
			}
		}
		names[ifindex] = name
		out = append(out, xdpNested(xdp, name, ifindex)...)
	}
	return out, names, nil
}

// xdpNested reads IFLA_XDP's nested attributes: the attached mode and
// the program id of each mode (one program per mode at most).
func xdpNested(b []byte, name string, ifindex uint32) []xdpProg {
	var (
		out      []xdpProg
		attached uint8
		single   uint32
	)
	for len(b) >= unix.SizeofRtAttr {
		l := int(uint16(b[0]) | uint16(b[1])<<8)
		t := uint16(b[2]) | uint16(b[3])<<8
		if l < unix.SizeofRtAttr || l > len(b) {
			break
		}
		v := b[unix.SizeofRtAttr:l]
		switch {
		case t == unix.IFLA_XDP_ATTACHED && len(v) >= 1:
			attached = v[0]
		case t == unix.IFLA_XDP_PROG_ID && len(v) >= 4:
			single = le32(v)
		case xdpModes[t] != "" && len(v) >= 4:
			out = append(out, xdpProg{ifname: name, ifindex: ifindex, mode: xdpModes[t], prog: le32(v)})
		}
		b = b[min(len(b), (l+unix.RTA_ALIGNTO-1)&^(unix.RTA_ALIGNTO-1)):]
	}
	// One mode: the kernel may send only IFLA_XDP_PROG_ID.
	if len(out) == 0 && single != 0 && xdpAttached[attached] != "" {
		out = append(out, xdpProg{ifname: name, ifindex: ifindex, mode: xdpAttached[attached], prog: single})
	}
	return out
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// cgroupTypes are the attach types BPF_PROG_QUERY is asked for on each
// cgroup.
var cgroupTypes = []ebpf.AttachType{
	ebpf.AttachCGroupInetIngress, ebpf.AttachCGroupInetEgress, ebpf.AttachCGroupInetSockCreate, ebpf.AttachCGroupSockOps,
	ebpf.AttachCGroupDevice, ebpf.AttachCGroupInet4Bind, ebpf.AttachCGroupInet6Bind, ebpf.AttachCGroupInet4Connect,
	ebpf.AttachCGroupInet6Connect, ebpf.AttachCGroupInet4PostBind, ebpf.AttachCGroupInet6PostBind, ebpf.AttachCGroupUDP4Sendmsg,
	ebpf.AttachCGroupUDP6Sendmsg, ebpf.AttachCGroupSysctl, ebpf.AttachCGroupUDP4Recvmsg, ebpf.AttachCGroupUDP6Recvmsg,
	ebpf.AttachCGroupGetsockopt, ebpf.AttachCGroupSetsockopt, ebpf.AttachCgroupInetSockRelease,
}

// maxCgroups bounds the cgroups queried per scan (the root first, then
// breadth first): a query is one bpf(2) call per attach type, and a
// stranger can make cgroups. Links to cgroups are all listed whatever
// this bound.
const maxCgroups = 256

// walkCgroups adds the programs attached with BPF_PROG_ATTACH to the
// cgroup v2 root and the cgroups below it, up to maxCgroups; a link's
// own attachment is listed once, as the link.
func walkCgroups(out map[uint32][]Attachment) []error {
	root := cgroupRoot()
	if root == "" {
		return nil
	}
	linked := map[string]bool{}
	for prog, as := range out {
		for _, a := range as {
			if a.Kind == "link" && a.CgroupID != 0 {
				linked[fmt.Sprint(prog, a.CgroupID, a.AttachType)] = true
			}
		}
	}
	var errs []error
	queue := []string{root}
	for n := 0; len(queue) > 0 && n < maxCgroups; n++ {
		dir := queue[0]
		queue = queue[1:]
		if ents, err := os.ReadDir(dir); err == nil {
			for _, e := range ents {
				if e.IsDir() {
					queue = append(queue, filepath.Join(dir, e.Name()))
				}
			}
		}
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue // removed meanwhile
		}
		var st unix.Stat_t
		if unix.Fstat(fd, &st) != nil {
			unix.Close(fd)
			continue
		}
		rel := "/" + strings.TrimPrefix(strings.TrimPrefix(dir, root), "/")
		for _, t := range cgroupTypes {
			res, err := link.QueryPrograms(link.QueryOptions{Target: fd, Attach: t})
			if err != nil {
				if !errors.Is(err, unix.EINVAL) && !errors.Is(err, ebpf.ErrNotSupported) && len(errs) < 4 {
					errs = append(errs, fmt.Errorf("cgroup %s: querying %s programs: %w", rel, t, err))
				}
				continue
			}
			for _, p := range res.Programs {
				prog := uint32(p.ID)
				if linked[fmt.Sprint(prog, st.Ino, cgroupAttachName(t))] {
					continue
				}
				out[prog] = append(out[prog], Attachment{Kind: "cgroup", CgroupID: st.Ino, Cgroup: rel, AttachType: cgroupAttachName(t),
					Point: fmt.Sprintf("cgroup %s %s (id %d)", rel, cgroupAttachName(t), st.Ino)})
			}
		}
		unix.Close(fd)
	}
	return errs
}

// cgroupAttachName names a cgroup attach type: 0 is inet ingress, which
// cilium/ebpf's stringer calls None.
func cgroupAttachName(t ebpf.AttachType) string {
	if t == ebpf.AttachCGroupInetIngress {
		return "CGroupInetIngress"
	}
	return t.String()
}

// cgroupRoot is where the cgroup v2 hierarchy is mounted, "" if nowhere.
func cgroupRoot() string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		_, post, ok := strings.Cut(line, " - ")
		if !ok || !strings.HasPrefix(post, "cgroup2 ") {
			continue
		}
		if f := strings.Fields(line); len(f) > 4 {
			return f[4]
		}
	}
	return ""
}
