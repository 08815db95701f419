// Package output renders events as text for people or as JSON lines for
// programs.
//
// It exists so that one place, and only one, turns an event.Event into
// bytes: sensors fill events without knowing about formats, and every
// string that a monitored process can choose (comm, exe, map names, paths,
// and for robustness every other string too) goes through the escaping
// here. Whatever bytes a hostile process puts in those strings, each event
// is exactly one line, the JSON is valid, and the text carries no control
// character (no forged lines, no terminal escape sequences).
//
// The JSON writer is on the hot path of a monitor that may see millions of
// map updates per second, so it is hand-rolled: it appends into a reused
// buffer and allocates nothing per event in steady state.
package output

import (
	"bufio"
	"fmt"
	"io"
	"strconv"

	"github.com/bpfmon/bpfmon/internal/event"
)

// Formats are the names New accepts.
var Formats = []string{"json", "text"}

// bufferSize is the size of the bufio.Writer each Writer wraps its
// destination in.
const bufferSize = 64 << 10

// maxKeptBuffer bounds the per-writer line buffer kept between events, so
// that one huge key or value does not pin its memory forever.
const maxKeptBuffer = 1 << 20

// A Writer writes events, one line each, to a buffered destination.
//
// A Writer is not safe for concurrent use: call Write and Flush from one
// goroutine at a time. Events are buffered; call Flush to push them out (and
// before exiting). Once a write to the destination has failed, every later
// Write and Flush returns that error.
type Writer interface {
	// Write renders ev as one line. It does not keep ev.
	Write(ev *event.Event) error
	// Flush writes buffered lines to the destination.
	Flush() error
}

// New returns a Writer for format ("json" or "text") writing to w.
func New(format string, w io.Writer) (Writer, error) {
	bw := bufio.NewWriterSize(w, bufferSize)
	switch format {
	case "json":
		return &jsonWriter{bw: bw, buf: make([]byte, 0, 1024)}, nil
	case "text":
		return &textWriter{bw: bw, buf: make([]byte, 0, 1024)}, nil
	}
	return nil, fmt.Errorf("unknown output format %q: valid formats are %q and %q", format, Formats[0], Formats[1])
}

// mapTypeNames are bpftool's names of map types (enum bpf_map_type),
// indexed by number.
var mapTypeNames = [...]string{
	0:  "unspec",
	1:  "hash",
	2:  "array",
	3:  "prog_array",
	4:  "perf_event_array",
	5:  "percpu_hash",
	6:  "percpu_array",
	7:  "stack_trace",
	8:  "cgroup_array",
	9:  "lru_hash",
	10: "lru_percpu_hash",
	11: "lpm_trie",
	12: "array_of_maps",
	13: "hash_of_maps",
	14: "devmap",
	15: "sockmap",
	16: "cpumap",
	17: "xskmap",
	18: "sockhash",
	19: "cgroup_storage",
	20: "reuseport_sockarray",
	21: "percpu_cgroup_storage",
	22: "queue",
	23: "stack",
	24: "sk_storage",
	25: "devmap_hash",
	26: "struct_ops",
	27: "ringbuf",
	28: "inode_storage",
	29: "task_storage",
	30: "bloom_filter",
	31: "user_ringbuf",
	32: "cgrp_storage",
	33: "arena",
	34: "insn_array",
}

// MapTypeName returns bpftool's name for map type t ("hash", "array",
// "ringbuf", ...), or "unknown(N)" for a number it does not know.
func MapTypeName(t uint32) string {
	if int(t) < len(mapTypeNames) {
		return mapTypeNames[t]
	}
	return string(appendMapType(nil, t))
}

// appendMapType appends MapTypeName(t) to dst without allocating.
func appendMapType(dst []byte, t uint32) []byte {
	if int(t) < len(mapTypeNames) {
		return append(dst, mapTypeNames[t]...)
	}
	dst = append(dst, "unknown("...)
	dst = strconv.AppendUint(dst, uint64(t), 10)
	return append(dst, ')')
}

// progTypeNames are bpftool's (libbpf's) names of enum bpf_prog_type.
var progTypeNames = [...]string{
	"unspec",
	"socket_filter",
	"kprobe",
	"sched_cls",
	"sched_act",
	"tracepoint",
	"xdp",
	"perf_event",
	"cgroup_skb",
	"cgroup_sock",
	"lwt_in",
	"lwt_out",
	"lwt_xmit",
	"sock_ops",
	"sk_skb",
	"cgroup_device",
	"sk_msg",
	"raw_tracepoint",
	"cgroup_sock_addr",
	"lwt_seg6local",
	"lirc_mode2",
	"sk_reuseport",
	"flow_dissector",
	"cgroup_sysctl",
	"raw_tracepoint_writable",
	"cgroup_sockopt",
	"tracing",
	"struct_ops",
	"ext",
	"lsm",
	"sk_lookup",
	"syscall",
	"netfilter",
}

// ProgTypeName returns bpftool's name for program type t ("socket_filter",
// "xdp", ...), or "unknown(N)" for a number it does not know.
func ProgTypeName(t uint32) string {
	return string(appendProgType(nil, t))
}

// appendProgType appends ProgTypeName(t) to dst without allocating.
func appendProgType(dst []byte, t uint32) []byte {
	if int(t) < len(progTypeNames) {
		return append(dst, progTypeNames[t]...)
	}
	dst = append(dst, "unknown("...)
	dst = strconv.AppendUint(dst, uint64(t), 10)
	return append(dst, ')')
}

// protNames names the PROT_* bits of an mmap: read, write, exec, and
// hex for bits that have no name.
func protNames(prot uint32) []string {
	names := make([]string, 0, 3)
	for _, p := range [...]struct {
		bit  uint32
		name string
	}{{1, "read"}, {2, "write"}, {4, "exec"}} {
		if prot&p.bit != 0 {
			names = append(names, p.name)
			prot &^= p.bit
		}
	}
	if prot != 0 {
		names = append(names, "0x"+strconv.FormatUint(uint64(prot), 16))
	}
	return names
}

const hexDigits = "0123456789abcdef"

// appendHex appends the lowercase hex of b.
func appendHex(dst, b []byte) []byte {
	for _, c := range b {
		dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return dst
}

// flushLine writes the rendered line in *buf to bw and resets *buf for
// reuse, dropping it if an unusually large event grew it.
func flushLine(bw *bufio.Writer, buf *[]byte, line []byte) error {
	_, err := bw.Write(line)
	if cap(line) > maxKeptBuffer {
		line = make([]byte, 0, 1024)
	}
	*buf = line[:0]
	return err
}
