package output

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
)

// flaky is a destination that takes at most accept bytes per write and
// fails with err while err is set.
type flaky struct {
	out    bytes.Buffer
	err    error
	accept int // with err: bytes taken before failing
}

func (f *flaky) Write(p []byte) (int, error) {
	if f.err != nil {
		n := min(f.accept, len(p))
		f.out.Write(p[:n])
		f.accept -= n
		return n, f.err
	}
	return f.out.Write(p)
}

// TestLinesSurviveFailures: lines that could not be written are dropped
// and counted, never counted as written; writing resumes by itself; a line
// the destination took only part of is completed before any other, so the
// output holds whole lines only.
func TestLinesSurviveFailures(t *testing.T) {
	dst := &flaky{}
	l := newLines(dst, 64)
	line := func(i int) []byte { return fmt.Appendf(nil, "line %02d ........\n", i) } // 17 bytes
	for i := range 3 {
		if err := l.add(line(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.flush(); err != nil {
		t.Fatal(err)
	}
	// The disk fills up 5 bytes into the next write.
	dst.err, dst.accept = syscall.ENOSPC, 5
	var failed int
	for i := 3; i < 9; i++ {
		if err := l.add(line(i)); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("add: %v", err)
			}
			failed++
		}
	}
	if err := l.flush(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("flush on a full disk: %v", err)
	}
	if failed == 0 {
		t.Fatal("no add reported the full disk")
	}
	w, d := l.Counts()
	if w != 3 || w+d != 9 {
		t.Fatalf("on a full disk: %d written, %d dropped; want 3 written, the other 6 dropped", w, d)
	}
	// Space again.
	dst.err = nil
	for i := 9; i < 12; i++ {
		l.add(line(i))
	}
	if err := l.flush(); err != nil {
		t.Fatal(err)
	}
	w2, d2 := l.Counts()
	if d2 != d-1 || w2 != w+1+3 {
		t.Errorf("after recovery: %d written, %d dropped; want %d and %d (the split line completed, 3 new)", w2, d2, w+4, d-1)
	}
	got := dst.out.String()
	if !strings.HasSuffix(got, "\n") {
		t.Fatalf("output ends inside a line: %q", got)
	}
	n := 0
	for _, ln := range strings.Split(strings.TrimSuffix(got, "\n"), "\n") {
		if len(ln) != 16 || !strings.HasPrefix(ln, "line ") {
			t.Errorf("split or mixed line %q in %q", ln, got)
		}
		n++
	}
	if uint64(n) != w2 {
		t.Errorf("%d lines in the output, %d counted as written", n, w2)
	}
}

// TestLinesHugeLine: a line larger than the buffer is written on its own
// and the buffer does not stay grown.
func TestLinesHugeLine(t *testing.T) {
	dst := &flaky{}
	l := newLines(dst, 64)
	big := append(bytes.Repeat([]byte("x"), 3*maxKeptBuffer), '\n')
	if err := l.add(big); err != nil {
		t.Fatal(err)
	}
	if w, d := l.Counts(); w != 1 || d != 0 || dst.out.Len() != len(big) {
		t.Fatalf("%d written, %d dropped, %d bytes out", w, d, dst.out.Len())
	}
	if cap(l.buf) > maxKeptBuffer {
		t.Errorf("buffer kept at %d bytes", cap(l.buf))
	}
}
