package metrics

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// brokenListener fails its next Accept with an error net/http does not
// retry, when told to.
type brokenListener struct {
	net.Listener
	fail atomic.Bool
}

func (l *brokenListener) Accept() (net.Conn, error) {
	if l.fail.CompareAndSwap(true, false) {
		return nil, errors.New("injected accept failure")
	}
	return l.Listener.Accept()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServerSupervised: an error that ends net/http's serving loop is
// counted, handed to OnPartError, and the server serves again on the same
// socket; before, the server was gone for good, silently.
func TestServerSupervised(t *testing.T) {
	defer func(d time.Duration) { serveRetry = d }(serveRetry)
	serveRetry = 10 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bl := &brokenListener{Listener: ln}
	m := New("v1")
	m.Ready()
	var mu sync.Mutex
	var told []string
	m.OnPartError(func(part string, err error) {
		mu.Lock()
		told = append(told, part+": "+err.Error())
		mu.Unlock()
	})
	bl.fail.Store(true)
	srv := m.Serve(bl)
	defer srv.Shutdown(time.Second)
	url := "http://" + ln.Addr().String() + "/healthz"
	if code, body := get(t, url); code != http.StatusOK || body != "ready\n" {
		t.Fatalf("/healthz after the failure: %d %q", code, body)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(told) != 1 || !strings.Contains(told[0], "metrics: serving metrics: injected accept failure") {
		t.Errorf("told %q", told)
	}
	if n := testutil.ToFloat64(m.health.errors.WithLabelValues(PartMetrics, "other")); n != 1 {
		t.Errorf("bpfmon_part_errors_total{part=metrics,reason=other} %v, want 1", n)
	}
}

// TestServerConnectionCap: the server holds at most MaxConns connections
// (one more is closed at once: the descriptors a flood can take are
// bounded), drops one that sends nothing after readHeaderTimeout, and a
// scrape is then served.
func TestServerConnectionCap(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := New("v1")
	m.Ready()
	srv := m.Serve(ln)
	defer srv.Shutdown(time.Second)
	var conns []net.Conn
	for range 3 * MaxConns {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// Those past MaxConns are closed by the server.
	closed := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); errors.Is(err, io.EOF) {
			closed++
		}
	}
	if closed != len(conns)-MaxConns {
		t.Errorf("%d of %d idle connections closed at once; want all but MaxConns (%d)", closed, len(conns), MaxConns)
	}
	start := time.Now()
	for {
		resp, err := (&http.Client{Timeout: 2 * readHeaderTimeout}).Get("http://" + ln.Addr().String() + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("/healthz: %d", resp.StatusCode)
			}
			break
		}
		if time.Since(start) > 3*readHeaderTimeout {
			t.Fatalf("no scrape served %v after the idle connections: %v", time.Since(start), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("scrape served %v after %d idle connections", time.Since(start).Round(time.Millisecond), len(conns))
}
