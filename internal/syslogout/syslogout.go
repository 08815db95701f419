// Package syslogout sends events to a syslog receiver as RFC 5424
// messages (watch --syslog), beside the file output: a SIEM takes a
// syslog stream, and tailing a file is one more agent to run.
//
// It exists apart from package output because a network destination
// fails differently from a file: it goes away and comes back. The event
// path must never wait for it, so Write only renders the message into a
// bounded queue (allocating nothing once the queue's buffers have grown)
// and one goroutine sends it, connecting again with backoff. What cannot
// be delivered is never dropped silently: it is counted (Config.Lost,
// bpfmon_lost_events_total{source="output"}) and, once the stream works
// again, reported on it as a lost event with source output.
//
// On TCP, "delivered" means the receiver's TCP acknowledged the whole
// message: when a connection breaks, the bytes it had not acknowledged
// (SIOCOUTQ) say which messages were lost. What the receiver's kernel
// acknowledged and its process never read (it stopped with a backlog:
// the connection is reset, and that is logged) is beyond what plain TCP
// syslog can tell the sender; over RELP (relp.go) the receiver
// acknowledges each message, and the books are exact.
// Over UDP and a unix datagram socket, delivered means the local kernel
// took the datagram.
//
// Message format (RFC 5424, octet-counted framing on stream transports,
// RFC 6587): PRI from facility daemon and the severity of the alert the
// event carries, the host name, APP-NAME bpfmon, the pid, MSGID the event
// type, one structured-data element bpfmon@32473 (32473 is the example
// enterprise number of RFC 5612: bpfmon has none of its own) with the
// event type, alert rule and severity, the map id and the pod, and as the message
// the event's JSON line, exactly as --format json writes it.
package syslogout

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/output"
)

// Sizes and times the writer keeps to.
const (
	// DefaultQueue is how many messages wait for the receiver at most;
	// past that, new events are counted lost.
	DefaultQueue = 8192
	// maxKept bounds a queue slot's buffer kept between events.
	maxKept = 64 << 10
	// maxDatagram is the largest message sent over UDP or a unix
	// datagram socket; larger ones are counted lost.
	maxDatagram = 64<<10 - 1<<10
	backoffMin  = 100 * time.Millisecond
	backoffMax  = 5 * time.Second
	// writeTimeout ends a connection whose receiver stopped reading.
	writeTimeout = 5 * time.Second
	// sendBuffer bounds the bytes in the kernel's send queue, and so
	// how many messages may be unacknowledged when a connection breaks.
	sendBuffer = 256 << 10
	// inflightCap: the list of unacknowledged messages is compacted
	// once this many acknowledged ones lead it.
	inflightCap = 16384
	// facility is daemon (3).
	facility = 3
	// SDID is the structured data element's id.
	SDID = "bpfmon@32473"
)

// Config says where to send and whom to tell about losses.
type Config struct {
	// URL is tcp://HOST:PORT, relp://HOST:PORT, udp://HOST:PORT or
	// unix:///PATH.
	URL string
	// Queue is how many messages may wait (DefaultQueue if 0).
	Queue int
	// Lost, when set, is told of every event that could not be
	// delivered, when it is known (bpfmon_lost_events_total), from
	// Write's goroutine or the sender's: it must be safe for that.
	Lost func(n uint64)
	// Log says when the receiver goes away and comes back; nil: quiet.
	Log *slog.Logger
}

// Parse checks a --syslog URL and returns the network and address to
// dial.
func Parse(raw string) (network, addr string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("%q: %w; want tcp://HOST:PORT, udp://HOST:PORT or unix:///PATH", raw, err)
	}
	switch u.Scheme {
	case "tcp", "udp", "relp":
		if u.Path != "" || u.RawQuery != "" || u.User != nil {
			return "", "", fmt.Errorf("%q: only %s://HOST:PORT is accepted (no path, query or user)", raw, u.Scheme)
		}
		if _, _, err := net.SplitHostPort(u.Host); err != nil || u.Port() == "" {
			return "", "", fmt.Errorf("%q: want %s://HOST:PORT (the port is required: syslog has no single default for it)", raw, u.Scheme)
		}
		return u.Scheme, u.Host, nil
	case "unix":
		if u.Host != "" || u.Path == "" || u.Path[0] != '/' {
			return "", "", fmt.Errorf("%q: want unix:///ABSOLUTE/PATH (three slashes), such as unix:///dev/log", raw)
		}
		return "unix", u.Path, nil
	}
	return "", "", fmt.Errorf("%q: unknown scheme %q; want tcp://HOST:PORT, relp://HOST:PORT, udp://HOST:PORT or unix:///PATH", raw, u.Scheme)
}

// Writer sends events to a syslog receiver. Write, Flush and Counts
// follow output.Writer: call them from one goroutine at a time.
type Writer struct {
	network, addr string
	lostFn        func(uint64)
	log           *slog.Logger
	header        []byte // " HOSTNAME bpfmon PID "
	json          output.JSONLine
	senderJSON    output.JSONLine // the sender goroutine's, for lost reports
	scratch       []byte
	relpBuf       []byte // the message a RELP session sends

	mu      sync.Mutex
	queue   [][]byte // ring of messages (without framing)
	head, n int
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	closing time.Time // deadline for the drain, once stop is closed

	dropped   atomic.Uint64 // events lost: queue full, undeliverable
	delivered atomic.Uint64
	// unreported is the count of lost events not yet reported on the
	// stream; only the sender touches it once started.
	unreported atomic.Uint64
}

// New starts a writer for cfg.URL. It does not connect: the sender
// does, and keeps trying, so that a receiver started after bpfmon gets
// everything that fit in the queue meanwhile.
func New(cfg Config) (*Writer, error) {
	w, err := newWriter(cfg)
	if err != nil {
		return nil, err
	}
	go w.send()
	return w, nil
}

// newWriter is New without the sender.
func newWriter(cfg Config) (*Writer, error) {
	network, addr, err := Parse(cfg.URL)
	if err != nil {
		return nil, err
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "-"
	}
	q := cfg.Queue
	if q <= 0 {
		q = DefaultQueue
	}
	w := &Writer{
		network: network, addr: addr, lostFn: cfg.Lost, log: cfg.Log,
		header: []byte(" " + printable(host, 255) + " bpfmon " + strconv.Itoa(os.Getpid()) + " "),
		queue:  make([][]byte, q),
		wake:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	return w, nil
}

// Severities of RFC 5424.
const (
	sevCrit    = 2
	sevErr     = 3
	sevWarning = 4
	sevNotice  = 5
	sevInfo    = 6
)

// severity maps ev's alert severity to syslog's: critical to crit, high
// to err, medium to warning, low to notice; a lost event is a warning and
// anything else informational.
func severity(ev *event.Event) int {
	if a := ev.Alert; a != nil {
		switch a.Severity {
		case "critical":
			return sevCrit
		case "high":
			return sevErr
		case "medium":
			return sevWarning
		}
		return sevNotice
	}
	if ev.Type == event.Lost {
		return sevWarning
	}
	return sevInfo
}

// appendMessage appends ev as one RFC 5424 message, without framing.
// j renders the JSON line: Write's own, or the sender's for its lost
// reports (a JSONLine is not safe for concurrent use).
func (w *Writer) appendMessage(b []byte, ev *event.Event, j *output.JSONLine) []byte {
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(facility*8+severity(ev)), 10)
	b = append(b, ">1 "...)
	b = ev.Time.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, w.header...)
	msgid := len(b)
	b = append(b, ev.Type...)
	if len(b) == msgid || len(b)-msgid > 32 {
		b = append(b[:msgid], '-')
	}
	b = append(b, " ["+SDID+" event=\""...)
	b = appendParam(b, string(ev.Type))
	b = append(b, '"')
	if a := ev.Alert; a != nil {
		b = append(b, ` rule="`...)
		b = appendParam(b, a.Rule)
		b = append(b, `" severity="`...)
		b = appendParam(b, a.Severity)
		b = append(b, '"')
	}
	if ev.Map != nil {
		b = append(b, ` map_id="`...)
		b = strconv.AppendUint(b, uint64(ev.Map.ID), 10)
		b = append(b, '"')
	}
	if p := ev.Process; p != nil && p.Pod != nil {
		// namespace/name once the runtime named it, else the uid.
		b = append(b, ` pod="`...)
		if p.Pod.Name != "" {
			b = appendParam(b, p.Pod.Namespace)
			b = append(b, '/')
			b = appendParam(b, p.Pod.Name)
		} else {
			b = appendParam(b, p.Pod.UID)
		}
		b = append(b, '"')
	}
	b = append(b, "] "...)
	return j.Append(b, ev)
}

// appendParam appends s as an SD-PARAM value: '"', '\' and ']' escaped,
// and bytes outside printable ASCII replaced (the JSON message carries
// the exact value).
func appendParam(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\' || c == ']':
			b = append(b, '\\', c)
		case c < 0x20 || c > 0x7e:
			b = append(b, '?')
		default:
			b = append(b, c)
		}
	}
	return b
}

// printable is s cut to n bytes of printable ASCII without spaces, as
// RFC 5424 header fields must be ("-" if nothing is left).
func printable(s string, n int) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s) && len(b) < n; i++ {
		if c := s[i]; c > 0x20 && c < 0x7f {
			b = append(b, c)
		}
	}
	if len(b) == 0 {
		return "-"
	}
	return string(b)
}

// Write queues ev as a message. It never waits for the receiver: when
// the queue is full the event is counted lost.
func (w *Writer) Write(ev *event.Event) error {
	w.scratch = w.appendMessage(w.scratch[:0], ev, &w.json)
	w.mu.Lock()
	if w.n == len(w.queue) {
		w.mu.Unlock()
		w.lose(1)
		return nil
	}
	i := (w.head + w.n) % len(w.queue)
	slot := w.queue[i]
	if cap(slot) > maxKept {
		slot = nil
	}
	w.queue[i] = append(slot[:0], w.scratch...)
	w.n++
	w.mu.Unlock()
	if cap(w.scratch) > maxKept {
		w.scratch = nil
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return nil
}

// Flush does nothing: the sender sends as soon as it can.
func (w *Writer) Flush() error { return nil }

// Counts returns the events delivered and those lost so far.
func (w *Writer) Counts() (delivered, lost uint64) {
	return w.delivered.Load(), w.dropped.Load()
}

// lose counts n events lost and to be reported.
func (w *Writer) lose(n uint64) {
	if n == 0 {
		return
	}
	w.dropped.Add(n)
	w.unreported.Add(n)
	if w.lostFn != nil {
		w.lostFn(n)
	}
}

// Close sends what is queued, waiting at most timeout for the receiver
// to acknowledge it; what it could not deliver by then is counted lost.
// It returns the events delivered and lost since the start.
func (w *Writer) Close(timeout time.Duration) (delivered, lost uint64) {
	w.mu.Lock()
	w.closing = time.Now().Add(timeout)
	w.mu.Unlock()
	close(w.stop)
	<-w.done
	return w.Counts()
}

// errClosing ends a connection at Close's deadline.
var errClosing = errors.New("closing")

// dial connects, and says whether the transport is a byte stream
// (octet-counted framing) or datagrams: a unix path is tried as a
// datagram socket (/dev/log, rsyslog's imuxsock) and then as a stream.
func (w *Writer) dial() (net.Conn, bool, error) {
	if w.network == "unix" {
		c, err := net.DialTimeout("unixgram", w.addr, writeTimeout)
		if err == nil || !errors.Is(err, syscall.EPROTOTYPE) {
			return c, false, err
		}
		c, err = net.DialTimeout("unix", w.addr, writeTimeout)
		return c, true, err
	}
	network := w.network
	if network == "relp" {
		network = "tcp"
	}
	c, err := net.DialTimeout(network, w.addr, writeTimeout)
	if err != nil {
		return nil, false, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(sendBuffer)
	}
	return c, w.network == "tcp", nil
}

// stopping reports whether Close was called and its deadline passed.
func (w *Writer) stopping() (stop, pastDeadline bool) {
	select {
	case <-w.stop:
		w.mu.Lock()
		d := w.closing
		w.mu.Unlock()
		return true, time.Now().After(d)
	default:
		return false, false
	}
}

// send is the sender goroutine: connect, send, account, until Close.
func (w *Writer) send() {
	defer close(w.done)
	backoff := backoffMin
	failing := false
	for {
		if stop, past := w.stopping(); past || (stop && w.queued() == 0) {
			w.finish()
			return
		}
		c, stream, err := w.dial()
		if err != nil {
			if !failing && w.log != nil {
				w.log.Warn("syslog: cannot connect; events are queued, and counted lost (source output) once the queue is full",
					"part", "output", "syslog", w.network+"://"+w.addr, "error", err.Error())
			}
			failing = true
			if !w.sleep(backoff) {
				continue
			}
			backoff = min(2*backoff, backoffMax)
			continue
		}
		backoff = backoffMin
		if failing && w.log != nil {
			w.log.Info("syslog: connected again", "part", "output", "syslog", w.network+"://"+w.addr)
		}
		failing = false
		if w.network == "relp" {
			err = w.relp(c)
		} else {
			err = (&session{w: w, c: c, stream: stream}).run()
		}
		if err != nil && !errors.Is(err, errClosing) && w.log != nil {
			w.log.Warn("syslog: connection lost; connecting again", "part", "output", "syslog", w.network+"://"+w.addr, "error", err.Error())
			failing = true
		}
	}
}

// sleep waits d, or less if Close is called; false if it was.
func (w *Writer) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.stop:
		// Close: one more attempt is allowed until the deadline.
		time.Sleep(min(d, 50*time.Millisecond))
		return false
	}
}

// queued is the number of messages waiting.
func (w *Writer) queued() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// finish counts what is still queued as lost, at Close.
func (w *Writer) finish() {
	w.mu.Lock()
	n := w.n
	w.head, w.n = 0, 0
	w.mu.Unlock()
	w.lose(uint64(n))
	if u := w.unreported.Load(); u > 0 && w.log != nil {
		w.log.Warn("syslog: events lost and not reported on the stream (they are counted in bpfmon_lost_events_total{source=\"output\"})",
			"part", "output", "not_reported", u)
	}
}

// session is one connection's sending and accounting.
type session struct {
	w        *Writer
	c        net.Conn
	stream   bool
	peerGone atomic.Bool
	reset    atomic.Bool // the receiver reset the connection
	// sent counts the bytes the kernel took on this connection;
	// inflight holds the end offsets of the messages not known to be
	// acknowledged, oldest first, from inflight[first:].
	sent     uint64
	inflight []uint64
	first    int
	// reports are the lost reports in flight: their end offset and
	// the count they carry.
	reports []report
	batch   []byte
	lostMsg []byte
}

type report struct{ end, n uint64 }

// run sends until the connection fails or Close's drain ends; it
// returns why it stopped, with every message accounted for.
func (s *session) run() error {
	if s.stream {
		go s.watchPeer()
	}
	err := s.loop()
	s.account()
	s.c.Close()
	if s.reset.Load() && s.w.log != nil {
		s.w.log.Warn("syslog: the receiver reset the connection: messages it had acknowledged but not read are lost without being counted (plain TCP syslog cannot tell)",
			"part", "output", "syslog", s.w.network+"://"+s.w.addr)
	}
	return err
}

// watchPeer notices the receiver closing the connection: it never
// sends anything, so any read ends only then.
func (s *session) watchPeer() {
	var b [64]byte
	for {
		if _, err := s.c.Read(b[:]); err != nil {
			s.reset.Store(errors.Is(err, syscall.ECONNRESET))
			s.peerGone.Store(true)
			return
		}
	}
}

func (s *session) loop() error {
	w := s.w
	for {
		if s.peerGone.Load() {
			return errors.New("the receiver closed the connection")
		}
		if u := w.unreported.Load(); u > 0 {
			if err := s.sendLostReport(u); err != nil {
				return err
			}
		}
		if !s.fill() {
			stop, past := w.stopping()
			if stop {
				if past || s.drained() {
					return errClosing
				}
				time.Sleep(10 * time.Millisecond)
				continue
			}
			select {
			case <-w.wake:
			case <-w.stop:
			case <-time.After(time.Second): // see peerGone
			}
			continue
		}
		if err := s.flush(); err != nil {
			return err
		}
	}
}

// fill moves queued messages into the batch, framed; false if none.
func (s *session) fill() bool {
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n == 0 {
		return false
	}
	s.batch = s.batch[:0]
	for w.n > 0 && (len(s.batch) < 64<<10 || !s.stream) {
		m := w.queue[w.head]
		if s.stream {
			s.batch = strconv.AppendInt(s.batch, int64(len(m)), 10)
			s.batch = append(s.batch, ' ')
		}
		s.batch = append(s.batch, m...)
		if s.stream {
			s.inflight = append(s.inflight, s.sent+uint64(len(s.batch)))
		}
		w.head = (w.head + 1) % len(w.queue)
		w.n--
		if !s.stream {
			break // one datagram
		}
	}
	return true
}

// flush writes the batch: one datagram, or framed messages on a stream.
func (s *session) flush() error {
	w := s.w
	if !s.stream {
		if len(s.batch) > maxDatagram {
			w.lose(1)
			return nil
		}
		if _, err := s.c.Write(s.batch); err != nil {
			w.lose(1)
			if errors.Is(err, syscall.ECONNREFUSED) && w.network == "udp" {
				return nil // an earlier datagram's ICMP: nothing to reconnect
			}
			return err
		}
		w.delivered.Add(1)
		return nil
	}
	s.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	n, err := s.c.Write(s.batch)
	s.sent += uint64(n)
	if err != nil {
		return err
	}
	return s.acked()
}

// sendLostReport sends a lost event for n events lost on this stream.
func (s *session) sendLostReport(n uint64) error {
	ev := event.Event{Time: time.Now(), Type: event.Lost, Source: event.SourceOutput, HasCount: true, Count: n}
	s.lostMsg = s.w.appendMessage(s.lostMsg[:0], &ev, &s.w.senderJSON)
	var frame []byte
	if s.stream {
		frame = strconv.AppendInt(frame, int64(len(s.lostMsg)), 10)
		frame = append(frame, ' ')
	}
	frame = append(frame, s.lostMsg...)
	s.w.unreported.Add(^(n - 1))
	if !s.stream {
		if _, err := s.c.Write(frame); err != nil {
			s.w.unreported.Add(n)
			return err
		}
		return nil
	}
	s.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	m, err := s.c.Write(frame)
	s.sent += uint64(m)
	s.reports = append(s.reports, report{end: s.sent - uint64(m) + uint64(len(frame)), n: n})
	return err
}

// unacked asks the kernel how many bytes sent on the connection the
// receiver has not acknowledged.
func (s *session) unacked() (uint64, error) {
	rc, err := s.c.(syscall.Conn).SyscallConn()
	if err != nil {
		return 0, err
	}
	var q int
	var qerr error
	if err := rc.Control(func(fd uintptr) { q, qerr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil {
		return 0, err
	}
	if qerr != nil {
		return 0, qerr
	}
	return uint64(q), nil
}

// acked counts the messages the receiver acknowledged as delivered and
// forgets them.
func (s *session) acked() error {
	q, err := s.unacked()
	if err != nil {
		return err
	}
	ack := s.sent - q
	i := s.first
	for i < len(s.inflight) && s.inflight[i] <= ack {
		i++
	}
	s.w.delivered.Add(uint64(i - s.first))
	s.first = i
	if s.first == len(s.inflight) {
		s.inflight, s.first = s.inflight[:0], 0
	} else if s.first > inflightCap/2 {
		s.inflight = s.inflight[:copy(s.inflight, s.inflight[s.first:])]
		s.first = 0
	}
	r := s.reports[:0]
	for _, x := range s.reports {
		if x.end > ack {
			r = append(r, x)
		}
	}
	s.reports = r
	return nil
}

// drained reports whether every message sent was acknowledged.
func (s *session) drained() bool {
	if !s.stream {
		return true
	}
	if err := s.acked(); err != nil {
		return true
	}
	return len(s.inflight) == s.first && len(s.reports) == 0
}

// account settles the messages still in flight when the connection
// ends: those the receiver acknowledged are delivered, the others lost
// (all of them if the kernel cannot say), and the lost reports it did
// not acknowledge are to be sent again.
func (s *session) account() {
	if s.stream {
		s.acked()
	}
	s.w.lose(uint64(len(s.inflight) - s.first))
	for _, r := range s.reports {
		s.w.unreported.Add(r.n)
	}
	s.inflight, s.first, s.reports = s.inflight[:0], 0, s.reports[:0]
}
