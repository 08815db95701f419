package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server serves the metrics on /metrics and readiness on /healthz.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan error
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

// Serve serves m on ln until Shutdown.
func (m *Metrics) Serve(ln net.Listener) *Server {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		// A collector that fails leaves out its metrics, not the others.
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg,
	}))
	mux.HandleFunc("/healthz", m.healthz)
	s := &Server{ln: ln, done: make(chan error, 1),
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return s
}

// healthz answers 503 until the watch is ready (every probe attached, the
// state at start recorded: when the ready file is written), then 200.
func (m *Metrics) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !m.IsReady() {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "starting: probes not all attached yet")
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
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	if serr := <-s.done; err == nil {
		err = serr
	}
	return err
}
