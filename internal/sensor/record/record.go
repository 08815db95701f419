// Package record is the user-space half of bpfmon's record protocol
// (bpf/include/record.h): the one ring buffer every sensor's programs write
// into, the loop that reads it, the table that hands each record to the
// sensor that owns its kind, and what every sensor needs to turn records
// into events: one converter for the task header and one for a map, the
// calls in flight between a bpf(2) entry and its exit, and the accounting
// of what the kernel could not hand over.
//
// One ring buffer for every sensor keeps their records in the order they
// were written: a kernel hook's record for a bpf(2) call arrives between
// that call's entry and exit records, a program's load record before any
// write it makes, a refusal beside the call it refused.
//
// A sensor registers a Handler per record kind it writes (Ring.Handle), a
// counter of the records its programs could not write (Ring.CountLost),
// and work to do every LossInterval (Ring.OnTick). It knows nothing of the
// other sensors.
package record

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/bpfmon/bpfmon/internal/event"
)

// Kind is a record kind: enum rec_kind in bpf/include/record.h, the first
// field of every record.
type Kind = recordRecKind

// The kinds, as bpf2go generated them from the C enum.
const (
	KindEnter     = recordRecKindREC_ENTER
	KindExit      = recordRecKindREC_EXIT
	KindExe       = recordRecKindREC_EXE
	KindExitShort = recordRecKindREC_EXIT_SHORT
	KindKwrite    = recordRecKindREC_KWRITE
	KindProg      = recordRecKindREC_PROG
	KindProgGone  = recordRecKindREC_PROG_GONE
	KindDeny      = recordRecKindREC_DENY
	KindLineage   = recordRecKindREC_LINEAGE
	KindNetAttach = recordRecKindREC_NETATTACH
	kindMax       = recordRecKindREC_KIND_MAX
)

// MaxCapture is the most bytes of a key or of a value a record can carry
// (MAX_CAPTURE); the runtime limit, the same for every sensor, may be
// lower.
const MaxCapture = int(recordRecLimitsMAX_CAPTURE)

// DefaultCapture is the default runtime limit.
const DefaultCapture = 4096

// Header is struct rec_hdr, which every record starts with.
type Header = recordRecHdr

// Task is struct task_info, which follows the header of every record
// about a task.
type Task = recordTaskInfo

// MapInfo is struct map_info, the map a record is about.
type MapInfo = recordMapInfo

const (
	// HeaderSize is the size of a Header.
	HeaderSize = int(unsafe.Sizeof(Header{}))
	// TaskRecordSize is the size of a Header followed by a Task.
	TaskRecordSize = HeaderSize + int(unsafe.Sizeof(Task{}))
)

// Emit hands an event on: to the watch pipeline, or a test's collector.
type Emit func(*event.Event) error

// Handler decodes one record of a kind it was registered for. raw is the
// whole record, header included; it is valid only during the call. d is
// the state shared by every sensor's handlers.
type Handler func(raw []byte, d *Decoder, emit Emit) error

// KindOf returns the kind of the record raw, and false when raw is too
// short to have one.
func KindOf(raw []byte) (Kind, bool) {
	if len(raw) < HeaderSize {
		return 0, false
	}
	return Kind((*Header)(unsafe.Pointer(&raw[0])).Kind), true
}

// Demux hands records to the handlers registered for their kinds. It is
// the Ring's, and on its own the way to decode records without a kernel
// (tests, benchmarks). Not safe for concurrent use.
type Demux struct {
	handlers [kindMax]Handler
	Decoder
}

// NewDemux returns a Demux that decodes REC_EXE (executable paths, which
// the Decoder keeps) and nothing else yet.
func NewDemux() *Demux {
	m := &Demux{Decoder: newDecoder()}
	m.handlers[KindExe] = decodeExe
	return m
}

// Handle registers h for records of kind k. Each kind has one handler: a
// second registration is an error (two sensors claiming one kind).
func (m *Demux) Handle(k Kind, h Handler) error {
	if k == 0 || k >= kindMax {
		return fmt.Errorf("record kind %d out of range 1-%d", k, kindMax-1)
	}
	if m.handlers[k] != nil {
		return fmt.Errorf("record kind %d has a handler already", k)
	}
	m.handlers[k] = h
	return nil
}

// ErrUnknownKind: a record of a kind no running sensor decodes.
var ErrUnknownKind = errors.New("record of a kind no running sensor decodes")

// ErrMalformed marks a record that cannot be decoded (short, of an unknown
// kind, lengths past its end): Ring.Run counts and skips it. Handlers wrap
// it in their own errors for such records.
var ErrMalformed = errors.New("malformed record")

// Decode hands raw to its kind's handler. A malformed record is an error,
// never a panic.
func (m *Demux) Decode(raw []byte, emit Emit) error {
	k, ok := KindOf(raw)
	if !ok {
		return fmt.Errorf("%w: short: %d bytes, want at least %d", ErrMalformed, len(raw), HeaderSize)
	}
	if k >= kindMax || m.handlers[k] == nil {
		return fmt.Errorf("%w: %w: kind %d", ErrMalformed, ErrUnknownKind, k)
	}
	return m.handlers[k](raw, &m.Decoder, emit)
}

// Check returns an error when a record of size bytes is shorter than want,
// naming what it should have been.
func Check(raw []byte, want int, what string) error {
	if len(raw) < want {
		return fmt.Errorf("%w: short %s record: %d bytes, want at least %d", ErrMalformed, what, len(raw), want)
	}
	return nil
}

// CheckCapture returns an error when a key or a value a record carries
// could not have been captured by the kernel's copy (copy_user in
// syscall.c, capture in kernelwrite.c): n bytes carried of total, with the
// record's fault and truncation flags for it. The kernel carries at most
// MaxCapture bytes; a part that faulted carries none; one that did not is
// the first min(total, limit) bytes, cut (trunc) exactly when that is less
// than total; a part of total 0 was not captured and has neither flag (its
// place may carry something else: the syscall sensor puts a program's
// description in the value's).
func CheckCapture(what string, n uint32, total uint64, fault, trunc bool) error {
	switch {
	case n > uint32(MaxCapture):
		return fmt.Errorf("%w: %s of %d bytes, more than the %d a record carries", ErrMalformed, what, n, MaxCapture)
	case total == 0 && (fault || trunc):
		return fmt.Errorf("%w: %s of no bytes flagged faulted (%v) or truncated (%v)", ErrMalformed, what, fault, trunc)
	case total == 0:
		return nil
	case fault && n != 0:
		return fmt.Errorf("%w: %s faulted yet %d bytes carried", ErrMalformed, what, n)
	case !fault && uint64(n) > total:
		return fmt.Errorf("%w: %s of %d bytes carries %d", ErrMalformed, what, total, n)
	case !fault && trunc != (uint64(n) < total):
		return fmt.Errorf("%w: %s: %d of %d bytes carried, truncated flag %v", ErrMalformed, what, n, total, trunc)
	}
	return nil
}
