package inventory

import (
	"encoding/binary"
	"fmt"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Legacy tc (cls_bpf) programs: in no bpf(2) listing of attachments, only
// in a netlink dump of each interface's filters. tcx programs are links.

// tcmsg is struct tcmsg: family, padding, ifindex, handle, parent, info.
const sizeofTcMsg = 20

// Parents of the filters of a clsact (and ingress) qdisc.
const (
	tcParentIngress = 0xFFFFFFF2 // TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS)
	tcParentEgress  = 0xFFFFFFF3 // TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_EGRESS)
)

// cls_bpf's options (linux/pkt_cls.h).
const (
	tcaBPFName = 7
	tcaBPFID   = 11
)

// maxTCDevices bounds the interfaces per namespace whose filters are
// dumped (two dumps each): those with a clsact or ingress qdisc only.
const maxTCDevices = 1024

type tcProg struct {
	ifindex   uint32
	direction string // "ingress" or "egress"
	priority  uint16
	prog      uint32
}

// tcProgs lists the cls_bpf programs of every interface with a clsact or
// ingress qdisc, in the calling thread's network namespace.
func tcProgs() ([]tcProg, error) {
	qdiscs, err := nlDump(unix.RTM_GETQDISC, make([]byte, sizeofTcMsg))
	if err != nil {
		return nil, fmt.Errorf("dumping qdiscs: %w", err)
	}
	var devs []uint32
	for _, m := range qdiscs {
		if m.Header.Type != unix.RTM_NEWQDISC || len(m.Data) < sizeofTcMsg {
			continue
		}
		if kind := tcKind(&m); kind == "clsact" || kind == "ingress" {
			devs = append(devs, binary.NativeEndian.Uint32(m.Data[4:8]))
		}
	}
	var out []tcProg
	for _, dev := range devs[:min(len(devs), maxTCDevices)] {
		for _, parent := range []uint32{tcParentIngress, tcParentEgress} {
			req := make([]byte, sizeofTcMsg)
			binary.NativeEndian.PutUint32(req[4:], dev)
			binary.NativeEndian.PutUint32(req[12:], parent)
			filters, err := nlDump(unix.RTM_GETTFILTER, req)
			if err != nil {
				continue // the interface or its qdisc went meanwhile
			}
			for _, m := range filters {
				if p, ok := tcFilter(&m, dev, parent); ok {
					out = append(out, p)
				}
			}
		}
	}
	return out, nil
}

// tcKind is a tc message's TCA_KIND.
func tcKind(m *syscall.NetlinkMessage) string {
	for _, a := range tcAttrs(m.Data[sizeofTcMsg:]) {
		if a.typ == unix.TCA_KIND {
			return strings.TrimRight(string(a.val), "\x00")
		}
	}
	return ""
}

// tcFilter reads a cls_bpf filter's program out of an RTM_NEWTFILTER.
func tcFilter(m *syscall.NetlinkMessage, dev, parent uint32) (tcProg, bool) {
	if m.Header.Type != unix.RTM_NEWTFILTER || len(m.Data) < sizeofTcMsg {
		return tcProg{}, false
	}
	info := binary.NativeEndian.Uint32(m.Data[16:20])
	p := tcProg{ifindex: dev, direction: "ingress", priority: uint16(info >> 16)}
	if parent == tcParentEgress {
		p.direction = "egress"
	}
	attrs := tcAttrs(m.Data[sizeofTcMsg:])
	kind := ""
	for _, a := range attrs {
		if a.typ == unix.TCA_KIND {
			kind = strings.TrimRight(string(a.val), "\x00")
		}
	}
	if kind != "bpf" {
		return tcProg{}, false
	}
	for _, a := range attrs {
		if a.typ != unix.TCA_OPTIONS {
			continue
		}
		for _, o := range tcAttrs(a.val) {
			if o.typ == tcaBPFID && len(o.val) >= 4 {
				p.prog = binary.NativeEndian.Uint32(o.val)
			}
		}
	}
	return p, p.prog != 0
}

type nlAttr struct {
	typ uint16
	val []byte
}

// tcAttrs splits netlink attributes (nested ones too), their type without
// the nested and byte-order bits.
func tcAttrs(b []byte) []nlAttr {
	var out []nlAttr
	for len(b) >= unix.SizeofRtAttr {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		t := binary.NativeEndian.Uint16(b[2:4]) & 0x3FFF
		if l < unix.SizeofRtAttr || l > len(b) {
			break
		}
		out = append(out, nlAttr{typ: t, val: b[unix.SizeofRtAttr:l]})
		b = b[min(len(b), (l+unix.RTA_ALIGNTO-1)&^(unix.RTA_ALIGNTO-1)):]
	}
	return out
}

// nlDump sends one NETLINK_ROUTE dump request of type typ with body and
// returns the messages of the answer.
func nlDump(typ uint16, body []byte) ([]syscall.NetlinkMessage, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	req := make([]byte, unix.NLMSG_HDRLEN+len(body))
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], typ)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:], 1)
	copy(req[unix.NLMSG_HDRLEN:], body)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	var out []syscall.NetlinkMessage
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
						return nil, unix.Errno(-e)
					}
				}
				return out, nil
			}
			m.Data = append([]byte(nil), m.Data...)
			out = append(out, m)
		}
	}
}
