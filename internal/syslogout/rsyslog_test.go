package syslogout

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bpfmon/bpfmon/internal/testutil"
)

// rsyslogd is a real rsyslogd (Debian's rsyslog) in a temporary
// directory, receiving RFC 5424 over TCP (imtcp) on its own port and
// writing APP-NAME, MSGID, severity, structured data and message, one
// line each, to a file.
type rsyslogd struct {
	exe, dir, conf, out, addr string
	cmd                       *exec.Cmd
}

// startRsyslogWith runs it with the input module imtcp or imrelp
// (Debian's rsyslog-relp).
func startRsyslogWith(t *testing.T, input string) *rsyslogd {
	t.Helper()
	if testutil.InVM() {
		t.Skip("the kernel test matrix's VMs carry no rsyslog; the host's run (CI) runs this test")
	}
	exe, err := exec.LookPath("rsyslogd")
	if err != nil {
		if exe, err = exec.LookPath("/usr/sbin/rsyslogd"); err != nil {
			testutil.SkipOrFail(t, "rsyslogd not installed (apt-get install rsyslog): the test needs a real syslog receiver")
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	r := &rsyslogd{exe: exe, dir: t.TempDir(), addr: addr}
	r.conf = filepath.Join(r.dir, "rsyslog.conf")
	r.out = filepath.Join(r.dir, "out.log")
	if _, err := os.Stat("/usr/lib/" + multiarch() + "/rsyslog/" + input + ".so"); err != nil && input == "imrelp" {
		testutil.SkipOrFail(t, "rsyslog's imrelp not installed (apt-get install rsyslog-relp): the test needs a real RELP receiver")
	}
	conf := fmt.Sprintf(`global(workDirectory=%q maxMessageSize="64k")
module(load=%[4]q)
input(type=%[4]q port=%[2]q address="127.0.0.1")
template(name="t" type="list") {
 property(name="app-name") constant(value="\t") property(name="msgid") constant(value="\t")
 property(name="syslogseverity-text") constant(value="\t") property(name="structured-data") constant(value="\t")
 property(name="msg" droplastlf="on") constant(value="\n")
}
*.* action(type="omfile" file=%q template="t")
`, r.dir, port, r.out, input)
	if err := os.WriteFile(r.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.stop(t) })
	if err := r.start(); err != nil {
		t.Fatal(err)
	}
	return r
}

// start runs rsyslogd in the foreground and waits until it accepts.
func (r *rsyslogd) start() error {
	r.cmd = exec.Command(r.exe, "-n", "-f", r.conf, "-i", filepath.Join(r.dir, "pid"))
	r.cmd.Stdout, r.cmd.Stderr = os.Stderr, os.Stderr
	if err := r.cmd.Start(); err != nil {
		return err
	}
	deadline := time.Now().Add(testutil.Timeout(10 * time.Second))
	for {
		if c, err := net.Dial("tcp", r.addr); err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("rsyslogd does not accept on %s within 10s", r.addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends rsyslogd with SIGTERM (it writes what it received first).
func (r *rsyslogd) stop(t *testing.T) {
	if r.cmd == nil {
		return
	}
	if !testutil.Stop(r.cmd, 10*time.Second) {
		t.Errorf("rsyslogd did not stop within 10s of SIGTERM")
	}
	r.cmd = nil
}

// received is one message as rsyslogd parsed it.
type received struct {
	app, msgid, severity, sd string
	ev                       struct {
		Event string
		Count uint64
		Map   struct{ ID uint32 }
	}
}

func (r *rsyslogd) received(t *testing.T) []received {
	t.Helper()
	f, err := os.Open(r.out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []received
	s := bufio.NewScanner(f)
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		p := strings.SplitN(s.Text(), "\t", 5)
		if len(p) != 5 {
			t.Fatalf("rsyslog line %q: want 5 fields", s.Text())
		}
		m := received{app: p[0], msgid: p[1], severity: p[2], sd: p[3]}
		if err := json.Unmarshal([]byte(strings.TrimLeft(p[4], " ")), &m.ev); err != nil {
			t.Fatalf("message %q: not the event's JSON line: %v", p[4], err)
		}
		out = append(out, m)
	}
	return out
}

// multiarch is Debian's library directory name for this machine.
func multiarch() string {
	if runtime.GOARCH == "arm64" {
		return "aarch64-linux-gnu"
	}
	return "x86_64-linux-gnu"
}

// TestRsyslog: a real rsyslogd parses what bpfmon sends over TCP
// (APP-NAME, MSGID, severity, structured data, the JSON line) and is
// restarted mid-stream: every event is delivered or counted lost, none
// counted lost arrives, and the loss is reported on the stream (see
// checkBooks for what plain TCP cannot see).
func TestRsyslog(t *testing.T) { restartMidStream(t, "imtcp", "tcp") }

// TestRsyslogRELP: the same over RELP (rsyslog's imrelp), whose
// acknowledgements make the books exact: received + counted lost = sent,
// and received = delivered, whatever backlog rsyslogd stops with.
func TestRsyslogRELP(t *testing.T) { restartMidStream(t, "imrelp", "relp") }

func restartMidStream(t *testing.T, input, scheme string) {
	r := startRsyslogWith(t, input)
	var told atomic.Uint64 // Lost is called from Write and the sender
	w, err := New(Config{URL: scheme + "://" + r.addr, Queue: 200, Lost: func(n uint64) { told.Add(n) }})
	if err != nil {
		t.Fatal(err)
	}
	const total = 4000
	restarted := make(chan error, 1)
	for i := range total {
		if i == total/3 {
			go func() { // mid-stream, while events go on
				r.stop(t)
				time.Sleep(500 * time.Millisecond)
				restarted <- r.start()
			}()
		}
		w.Write(alertEvent(uint32(i + 1)))
		time.Sleep(200 * time.Microsecond)
	}
	if err := <-restarted; err != nil {
		t.Fatal(err)
	}
	delivered, lost := w.Close(testutil.Timeout(10 * time.Second))
	r.stop(t) // writes out what it received
	msgs := r.received(t)
	seen := map[uint32]int{}
	var reported uint64
	for _, m := range msgs {
		if m.ev.Event == "lost" {
			if m.msgid != "lost" || m.severity != "warning" {
				t.Errorf("lost report: MSGID %q, severity %q; want lost, warning", m.msgid, m.severity)
			}
			reported += m.ev.Count
			continue
		}
		seen[m.ev.Map.ID]++
		want := fmt.Sprintf(`[bpfmon@32473 event="map_update" rule="foreign-write\"\]\\" severity="critical" map_id="%d" pod="prod/web-1"]`, m.ev.Map.ID)
		if m.app != "bpfmon" || m.msgid != "map_update" || m.severity != "crit" || m.sd != want {
			t.Fatalf("rsyslog parsed APP-NAME %q, MSGID %q, severity %q, SD %s; want bpfmon, map_update, crit, %s", m.app, m.msgid, m.severity, m.sd, want)
		}
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("event %d received %d times", id, n)
		}
	}
	t.Logf("%d events: %d received by rsyslogd, %d counted lost, %d reported lost on the stream", total, len(seen), lost, reported)
	checkBooks(t, total, uint64(len(seen)), delivered, lost)
	if scheme == "relp" && (uint64(len(seen)) != delivered || uint64(len(seen))+lost != total) {
		t.Errorf("RELP: %d received, %d delivered, %d lost of %d: want received = delivered and received + lost = sent, exactly", len(seen), delivered, lost, total)
	}
	if told.Load() != lost {
		t.Errorf("%d lost, %d told to the metric", lost, told.Load())
	}
	if lost == 0 || reported != lost {
		t.Errorf("%d lost, %d reported lost on the stream: want some lost through the restart, and all of them reported", lost, reported)
	}
}
