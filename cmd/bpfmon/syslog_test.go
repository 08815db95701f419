package main

import (
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

// TestWatchSyslogBadURL: a --syslog URL bpfmon cannot use is refused at
// start (exit 2), naming the form it wants.
func TestWatchSyslogBadURL(t *testing.T) {
	for _, c := range []struct{ url, msg string }{
		{"tcp://host", "the port is required"},
		{"tls://host:6514", "unknown scheme"},
		{"unix://dev/log", "three slashes"},
	} {
		code, out := runBpfmon(t, "watch", "--syslog", c.url)
		if code != exitUsage || !strings.Contains(out, "invalid --syslog") || !strings.Contains(out, c.msg) || strings.Count(out, "\n") != 1 {
			t.Errorf("--syslog %s: exit %d, want %d and one line saying %q: %s", c.url, code, exitUsage, c.msg, out)
		}
	}
}

// TestWatchSyslog: bpfmon watch --syslog tcp:// sends a stranger's
// writes to a protected map to a real rsyslogd (Debian's rsyslog, imtcp,
// in a temporary directory on its own port), which parses APP-NAME
// bpfmon, MSGID map_update, severity crit and the rule in the structured
// data; the file output has the same events.
func TestWatchSyslog(t *testing.T) {
	testutil.RequireRoot(t)
	if testutil.InVM() {
		t.Skip("the kernel test matrix's VMs carry no rsyslog; the host's run (CI) runs this test")
	}
	exe, err := exec.LookPath("rsyslogd")
	if err != nil {
		testutil.SkipOrFail(t, "rsyslogd not installed (apt-get install rsyslog): the test needs a real syslog receiver")
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	conf, out := filepath.Join(dir, "rsyslog.conf"), filepath.Join(dir, "out.log")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`global(workDirectory=%q maxMessageSize="64k")
module(load="imtcp")
input(type="imtcp" port=%q address="127.0.0.1")
template(name="t" type="list") {
 property(name="app-name") constant(value="\t") property(name="msgid") constant(value="\t")
 property(name="syslogseverity-text") constant(value="\t") property(name="structured-data") constant(value="\t")
 property(name="msg" droplastlf="on") constant(value="\n")
}
*.* action(type="omfile" file=%q template="t")
`, dir, port, out)), 0o600); err != nil {
		t.Fatal(err)
	}
	rs := exec.Command(exe, "-n", "-f", conf, "-i", filepath.Join(dir, "pid"))
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			rs.Process.Signal(syscall.SIGTERM)
			rs.Wait()
		}
	}
	defer stop()

	m, id := newMap(t)
	defer m.Close()
	foreign := testutil.ForeignExecutable(t, "foreign.test")
	w := startWatch(t, "--format", "json", "--syslog", "tcp://"+addr, "--protect", "id:"+itoa(id), "--scan-interval", "0",
		"--policy", unlimitedAlerts(t))
	const writes = 3
	act(t, foreign, fmt.Sprintf("flood:%d:%d", id, writes))
	time.Sleep(time.Second)
	lines := w.stop(t, syscall.SIGINT)
	stop()
	inFile := 0
	for _, a := range parseAlerts(t, lines) {
		if a.Alert != nil && a.Alert.Rule == "foreign-write" && a.Map != nil && a.Map.ID == id {
			inFile++
		}
	}
	text, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	sd := fmt.Sprintf(`rule="foreign-write" severity="critical" map_id="%d"]`, id)
	for _, l := range strings.Split(string(text), "\n") {
		f := strings.SplitN(l, "\t", 5)
		if len(f) == 5 && f[0] == "bpfmon" && f[1] == "map_update" && f[2] == "crit" && strings.HasSuffix(f[3], sd) &&
			strings.Contains(f[4], `"rule":"foreign-write"`) {
			got++
		}
	}
	if got != writes || inFile != writes {
		t.Errorf("foreign-write alerts: %d in rsyslog's output, %d in the file; want %d in both\nrsyslog: %s", got, inFile, writes, text)
	}
}
