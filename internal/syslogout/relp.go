package syslogout

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/bpfmon/bpfmon/internal/event"
)

// RELP (rsyslog's Reliable Event Logging Protocol, relp://HOST:PORT):
// the receiver acknowledges each message once it has taken it, so what
// it took is known exactly, also when it stops with a backlog, which
// plain TCP cannot tell. Frames are "TXNR COMMAND DATALEN[ DATA]\n"; the
// session opens with "open", each message is a "syslog" command, the
// receiver answers each with "rsp" ("200 OK") and says "serverclose"
// when it stops.

// relpWindow is how many messages may wait for their acknowledgement.
const relpWindow = 128

// relpSession is one RELP connection's sending and accounting.
type relpSession struct {
	w    *Writer
	c    net.Conn
	txnr uint64

	mu       sync.Mutex
	inflight map[uint64]uint64 // txnr -> 0 for a message, n for a lost report of n
	gone     error             // why the connection ended, from the reader
	acked    chan struct{}
	frame    []byte
}

// relp runs a session on c until it fails or Close's drain ends.
func (w *Writer) relp(c net.Conn) error {
	s := &relpSession{w: w, c: c, inflight: map[uint64]uint64{}, acked: make(chan struct{}, 1)}
	err := s.open()
	if err == nil {
		go s.read(bufio.NewReader(c))
		err = s.loop()
	}
	c.Close()
	s.account()
	return err
}

// open sends the offers and waits for the receiver's answer.
func (s *relpSession) open() error {
	offers := "relp_version=0\nrelp_software=bpfmon\ncommands=syslog"
	s.txnr = 1
	if err := s.send("open", []byte(offers)); err != nil {
		return err
	}
	s.c.SetReadDeadline(time.Now().Add(writeTimeout))
	defer s.c.SetReadDeadline(time.Time{})
	txnr, cmd, data, err := readRELPFrame(bufio.NewReader(io.LimitReader(s.c, 4096)))
	if err != nil {
		return fmt.Errorf("RELP open: %w", err)
	}
	if txnr != 1 || cmd != "rsp" || len(data) < 3 || string(data[:3]) != "200" {
		return fmt.Errorf("RELP open refused: %d %s %q", txnr, cmd, data)
	}
	return nil
}

// send writes one frame with the next transaction number.
func (s *relpSession) send(cmd string, data []byte) error {
	s.frame = strconv.AppendUint(s.frame[:0], s.txnr, 10)
	s.frame = append(s.frame, ' ')
	s.frame = append(s.frame, cmd...)
	s.frame = append(s.frame, ' ')
	s.frame = strconv.AppendInt(s.frame, int64(len(data)), 10)
	if len(data) > 0 {
		s.frame = append(s.frame, ' ')
		s.frame = append(s.frame, data...)
	}
	s.frame = append(s.frame, '\n')
	s.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := s.c.Write(s.frame)
	return err
}

// readFrame reads one RELP frame.
func readRELPFrame(r *bufio.Reader) (txnr uint64, cmd string, data []byte, err error) {
	head := func() (string, error) {
		b, err := r.ReadString(' ')
		if err != nil {
			return "", err
		}
		return b[:len(b)-1], nil
	}
	t, err := head()
	if err != nil {
		return 0, "", nil, err
	}
	if txnr, err = strconv.ParseUint(t, 10, 64); err != nil {
		return 0, "", nil, fmt.Errorf("RELP: transaction number %q", t)
	}
	if cmd, err = head(); err != nil {
		return 0, "", nil, err
	}
	// DATALEN ends with a space (data follows) or the trailer.
	var n []byte
	for {
		c, err := r.ReadByte()
		if err != nil {
			return 0, "", nil, err
		}
		if c == ' ' || c == '\n' {
			size, err := strconv.Atoi(string(n))
			if err != nil || size < 0 || size > 1<<20 {
				return 0, "", nil, fmt.Errorf("RELP: data length %q", n)
			}
			if c == '\n' {
				return txnr, cmd, nil, nil
			}
			data = make([]byte, size+1)
			if _, err := io.ReadFull(r, data); err != nil {
				return 0, "", nil, err
			}
			return txnr, cmd, data[:size], nil
		}
		n = append(n, c)
	}
}

// read takes the receiver's acknowledgements until the connection ends.
func (s *relpSession) read(r *bufio.Reader) {
	for {
		txnr, cmd, data, err := readRELPFrame(r)
		if err == nil && cmd == "serverclose" {
			err = errors.New("the receiver closed the RELP session")
		}
		s.mu.Lock()
		if err != nil {
			s.gone = err
			s.mu.Unlock()
			s.notify()
			return
		}
		if n, ok := s.inflight[txnr]; ok && cmd == "rsp" {
			delete(s.inflight, txnr)
			if len(data) >= 3 && string(data[:3]) == "200" {
				if n == 0 {
					s.w.delivered.Add(1)
				}
			} else if n == 0 {
				s.w.lose(1)
			} else {
				s.w.unreported.Add(n)
			}
		}
		s.mu.Unlock()
		s.notify()
	}
}

func (s *relpSession) notify() {
	select {
	case s.acked <- struct{}{}:
	default:
	}
}

// state returns the messages waiting for acknowledgement and why the
// connection ended, if it did.
func (s *relpSession) state() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.inflight), s.gone
}

// next sends one message (or a lost report of n) as a syslog command.
func (s *relpSession) next(msg []byte, report uint64) error {
	s.txnr++
	if s.txnr > 999999999 {
		s.txnr = 1
	}
	s.mu.Lock()
	s.inflight[s.txnr] = report
	s.mu.Unlock()
	return s.send("syslog", msg)
}

func (s *relpSession) loop() error {
	w := s.w
	for {
		n, gone := s.state()
		if gone != nil {
			return gone
		}
		if stop, past := w.stopping(); stop && (past || (n == 0 && w.queued() == 0)) {
			s.send("close", nil)
			return errClosing
		}
		if n >= relpWindow {
			select {
			case <-s.acked:
			case <-time.After(writeTimeout):
				return errors.New("RELP: no acknowledgement within " + writeTimeout.String())
			}
			continue
		}
		if u := w.unreported.Load(); u > 0 {
			ev := event.Event{Time: time.Now(), Type: event.Lost, Source: event.SourceOutput, HasCount: true, Count: u}
			w.unreported.Add(^(u - 1))
			if err := s.next(w.appendMessage(nil, &ev, &w.senderJSON), u); err != nil {
				return err
			}
			continue
		}
		msg, ok := w.take()
		if !ok {
			select {
			case <-w.wake:
			case <-s.acked:
			case <-w.stop:
				time.Sleep(10 * time.Millisecond)
			case <-time.After(time.Second):
			}
			continue
		}
		if err := s.next(msg, 0); err != nil {
			return err
		}
	}
}

// account counts what was not acknowledged as lost, and the lost
// reports not acknowledged as still to report.
func (s *relpSession) account() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone == nil {
		s.gone = errClosing // the reader is done with the inflight list
	}
	for txnr, n := range s.inflight {
		if n == 0 {
			s.w.lose(1)
		} else {
			s.w.unreported.Add(n)
		}
		delete(s.inflight, txnr)
	}
}

// take removes the oldest queued message, copied into the session's
// buffer; false if none waits.
func (w *Writer) take() ([]byte, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n == 0 {
		return nil, false
	}
	m := w.queue[w.head]
	w.relpBuf = append(w.relpBuf[:0], m...)
	w.head = (w.head + 1) % len(w.queue)
	w.n--
	return w.relpBuf, true
}
