package output

import (
	"bytes"
	"io"
)

// lines buffers whole lines for a destination and outlives its failures.
// bufio.Writer keeps its first error forever and cannot say which lines
// reached the destination; a monitor writing to a disk that fills up must
// go on, count what it could not write, and resume when it can. So:
//   - a line reaches the destination whole or is dropped and counted;
//   - a line the destination took only part of is completed first when it
//     works again, so no line is ever split by another;
//   - lines are counted as written only once the destination took them.
type lines struct {
	dst     io.Writer
	size    int    // flush once this many bytes wait
	buf     []byte // whole lines waiting
	waiting uint64 // lines in buf
	rest    []byte // the rest of a line the destination took only part of
	written uint64
	dropped uint64
}

func newLines(dst io.Writer, size int) *lines {
	return &lines{dst: dst, size: size, buf: make([]byte, 0, size)}
}

// add buffers one line (ending in '\n'), flushing first if it would not
// fit. A line larger than the buffer is written on its own.
func (l *lines) add(line []byte) error {
	var err error
	if len(l.buf) > 0 && len(l.buf)+len(line) > l.size {
		err = l.flush()
	}
	l.buf = append(l.buf, line...)
	l.waiting++
	if len(l.buf) >= l.size {
		if ferr := l.flush(); err == nil {
			err = ferr
		}
	}
	if cap(l.buf) > max(l.size, maxKeptBuffer) && len(l.buf) == 0 {
		l.buf = make([]byte, 0, l.size) // one huge line grew it
	}
	return err
}

// flush writes what waits. On an error the lines that did not reach the
// destination are dropped and counted; the error is returned, and the next
// flush tries again.
func (l *lines) flush() error {
	if len(l.rest) > 0 {
		n, err := l.dst.Write(l.rest)
		l.rest = l.rest[n:]
		if err != nil {
			l.drop()
			return err
		}
		l.written++ // the line begun earlier is whole now
		l.rest = nil
	}
	if len(l.buf) == 0 {
		return nil
	}
	n, err := l.dst.Write(l.buf)
	if err == nil && n == len(l.buf) {
		l.written += l.waiting
		l.buf, l.waiting = l.buf[:0], 0
		return nil
	}
	if err == nil {
		err = io.ErrShortWrite
	}
	whole := uint64(bytes.Count(l.buf[:n], []byte{'\n'}))
	l.written += whole
	l.waiting -= whole
	if n > 0 && l.buf[n-1] != '\n' {
		// Part of a line went out: keep its rest, to be written before
		// anything else.
		end := n + bytes.IndexByte(l.buf[n:], '\n') + 1
		l.rest = append([]byte(nil), l.buf[n:end]...)
		l.waiting--
	}
	l.drop()
	return err
}

// drop discards the whole lines waiting, counting them.
func (l *lines) drop() {
	l.dropped += l.waiting
	l.buf, l.waiting = l.buf[:0], 0
}
