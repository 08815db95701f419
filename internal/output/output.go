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
	"fmt"
	"io"

	"github.com/bpfmon/bpfmon/internal/event"
)

// Formats are the names New accepts.
var Formats = []string{"json", "text"}

// bufferSize is how many bytes of lines each Writer gathers before a
// write to its destination.
const bufferSize = 64 << 10

// maxKeptBuffer bounds the per-writer line buffer kept between events, so
// that one huge key or value does not pin its memory forever.
const maxKeptBuffer = 1 << 20

// A Writer writes events, one line each, to a buffered destination.
//
// A Writer is not safe for concurrent use: call Write and Flush from one
// goroutine at a time. Events are buffered; call Flush to push them out (and
// before exiting). A write to the destination that fails drops the lines
// that did not reach it, counts them, and returns the error; the next
// Write or Flush tries the destination again. A line is never split by
// another: one the destination took only part of is completed first.
type Writer interface {
	// Write renders ev as one line. It does not keep ev.
	Write(ev *event.Event) error
	// Flush writes buffered lines to the destination.
	Flush() error
	// Counts returns the lines written whole to the destination and those
	// dropped because it failed, since the start.
	Counts() (written, dropped uint64)
}

// New returns a Writer for format ("json" or "text") writing to w.
func New(format string, w io.Writer) (Writer, error) {
	l := newLines(w, bufferSize)
	switch format {
	case "json":
		return &jsonWriter{lines: l, buf: make([]byte, 0, 1024)}, nil
	case "text":
		return &textWriter{lines: l, buf: make([]byte, 0, 1024)}, nil
	}
	return nil, fmt.Errorf("unknown output format %q: valid formats are %q and %q", format, Formats[0], Formats[1])
}

const hexDigits = "0123456789abcdef"

// appendHex appends the lowercase hex of b.
func appendHex(dst, b []byte) []byte {
	for _, c := range b {
		dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return dst
}

// flushLine hands the rendered line in *buf to l and resets *buf for
// reuse, dropping it if an unusually large event grew it.
func flushLine(l *lines, buf *[]byte, line []byte) error {
	err := l.add(line)
	if cap(line) > maxKeptBuffer {
		line = make([]byte, 0, 1024)
	}
	*buf = line[:0]
	return err
}

// Counts reports the lines written and dropped; a line begun but not
// completed counts as dropped.
func (l *lines) Counts() (written, dropped uint64) {
	dropped = l.dropped
	if len(l.rest) > 0 {
		dropped++
	}
	return l.written, dropped
}

// keyType is the renderer of ev's key, nil when there is none or the key
// was not captured whole (a prefix is not a key).
func keyType(ev *event.Event) event.Renderer {
	if ev.Map == nil || ev.Map.KeyType == nil || ev.KeyFault || (ev.Truncated && ev.KeyTotal != uint64(len(ev.Key))) {
		return nil
	}
	return ev.Map.KeyType
}

// valueType is keyType for ev's value.
func valueType(ev *event.Event) event.Renderer {
	if ev.Map == nil || ev.Map.ValueType == nil || ev.ValueFault || (ev.Truncated && ev.ValueTotal != uint64(len(ev.Value))) {
		return nil
	}
	return ev.Map.ValueType
}
