package syslogout

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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

func startRsyslog(t *testing.T) *rsyslogd {
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
	conf := fmt.Sprintf(`global(workDirectory=%q maxMessageSize="64k")
module(load="imtcp")
input(type="imtcp" port=%q address="127.0.0.1")
template(name="t" type="list") {
 property(name="app-name") constant(value="\t") property(name="msgid") constant(value="\t")
 property(name="syslogseverity-text") constant(value="\t") property(name="structured-data") constant(value="\t")
 property(name="msg" droplastlf="on") constant(value="\n")
}
*.* action(type="omfile" file=%q template="t")
`, r.dir, port, r.out)
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
	r.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { r.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		r.cmd.Process.Kill()
		<-done
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

// TestRsyslog: a real rsyslogd parses what bpfmon sends (APP-NAME,
// MSGID, severity, structured data, the JSON line) and is restarted
// mid-stream: every event either arrives once or is counted lost, the
// counts add up exactly, and the loss is reported on the stream.
func TestRsyslog(t *testing.T) {
	r := startRsyslog(t)
	var told uint64
	w, err := New(Config{URL: "tcp://" + r.addr, Queue: 200, Lost: func(n uint64) { told += n }})
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
	if told != lost {
		t.Errorf("%d lost, %d told to the metric", lost, told)
	}
	if lost == 0 || reported != lost {
		t.Errorf("%d lost, %d reported lost on the stream: want some lost through the restart, and all of them reported", lost, reported)
	}
}
