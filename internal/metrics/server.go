package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server serves the metrics on /metrics and readiness on /healthz.
type Server struct {
	srv     *http.Server
	ln      net.Listener
	done    chan error
	closing chan struct{}
}

// CheckAddr checks a --metrics-addr: HOST:PORT, HOST empty for every
// interface, PORT a number (0: any free port).
func CheckAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want HOST:PORT, such as :9567 or 127.0.0.1:9567", addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	return nil
}

// Listen binds addr (see CheckAddr) for Serve: bound before any probe
// loads, an address that cannot be had stops bpfmon at once.
func Listen(addr string) (net.Listener, error) {
	if err := CheckAddr(addr); err != nil {
		return nil, err
	}
	return net.Listen("tcp", addr)
}

// MaxConns bounds the connections the server holds at once. One past it
// is closed as soon as accepted: any user who can reach the port could
// otherwise take every descriptor bpfmon has, and its sensors and
// content scanner need them. (A flood can still keep a scraper out,
// which Prometheus shows as the target down; it cannot blind bpfmon.)
const MaxConns = 16

// Timeouts of a connection: a client that sends its request headers
// slowly, or holds a connection idle, lets go of its slot.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 30 * time.Second
)

// Serve serves m on ln until Shutdown. An error that ends net/http's
// serving loop is counted (part metrics), reported (OnPartError), and
// serving starts again a second later on the same socket.
func (m *Metrics) Serve(ln net.Listener) *Server {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		// A collector that fails leaves out its metrics, not the others.
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg,
	}))
	mux.HandleFunc("/healthz", m.healthz)
	s := &Server{ln: ln, done: make(chan error, 1), closing: make(chan struct{}),
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout,
			WriteTimeout: writeTimeout, IdleTimeout: idleTimeout, MaxHeaderBytes: 16 << 10,
			ErrorLog: log.New(io.Discard, "", 0)}}
	lim := &limitListener{Listener: ln, slots: make(chan struct{}, MaxConns), m: m, closing: s.closing}
	go func() {
		for {
			err := s.srv.Serve(lim)
			select {
			case <-s.closing:
				s.done <- nil
				return
			default:
			}
			if errors.Is(err, http.ErrServerClosed) {
				s.done <- nil
				return
			}
			m.tell(PartMetrics, fmt.Errorf("serving metrics: %w; serving again in %v", err, serveRetry)) // counted by Accept
			select {
			case <-s.closing:
				s.done <- nil
				return
			case <-time.After(serveRetry):
			}
		}
	}()
	return s
}

// serveRetry is how long the server waits before serving again after an
// error that ended its loop.
var serveRetry = time.Second

// limitListener holds at most cap(slots) connections at once (MaxConns),
// and counts accept errors. Its Close does nothing: net/http closes the
// listener whenever its loop ends, and the loop is started again on the
// same socket; Shutdown closes the socket.
type limitListener struct {
	net.Listener
	slots   chan struct{}
	m       *Metrics
	closing chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			select {
			case <-l.closing:
			default:
				// net/http retries temporary errors (EMFILE) itself,
				// after a pause: counted here, not as events (a flood
				// would make one per retry); the others end its loop,
				// and Serve says them.
				l.m.PartError(PartMetrics, err)
			}
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
		default:
			c.Close() // full
		}
	}
}

func (l *limitListener) Close() error { return nil }

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// healthz answers 503 until the watch is ready (every probe attached, the
// state at start recorded: when the ready file is written), then 200
// while every part works; 503 naming the parts that cannot go on and why
// otherwise.
func (m *Metrics) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !m.IsReady() {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "starting: probes not all attached yet")
		return
	}
	if why := m.Unhealthy(); why != "" {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "unhealthy: "+why)
		return
	}
	fmt.Fprintln(w, "ready")
}

// Addr is the address bound: with port 0, the port the kernel chose.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Shutdown stops accepting, lets scrapes in progress finish for at most
// timeout, and returns once the server's goroutines are done.
func (s *Server) Shutdown(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	close(s.closing)
	s.ln.Close()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	if serr := <-s.done; err == nil {
		err = serr
	}
	return err
}
