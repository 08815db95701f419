package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Hostile input: what a user of the host, unprivileged or not, can do to
// bpfmon to blind it. Each test is a probe that once made bpfmon stop
// seeing something while it went on saying it was ready.

// connectEnv makes the test binary a process that opens connections to
// an address and holds them: "ADDR:N" (connectChild).
const connectEnv = "BPFMON_E2E_CONNECT"

// connectChild opens up to n connections to addr, says how many it got
// on stdout, and holds them until its stdin closes.
func connectChild(spec string) int {
	i := strings.LastIndexByte(spec, ':')
	n, err := strconv.Atoi(spec[i+1:])
	if i < 0 || err != nil {
		return 2
	}
	addr := spec[:i]
	var conns []net.Conn
	for range n {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			continue // the kernel's queue is full: a flood goes on
		}
		conns = append(conns, c)
	}
	fmt.Println(len(conns))
	io.ReadAll(os.Stdin)
	return 0
}

// asNobody copies the test binary where user nobody can run it.
func asNobody(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "bpfmon-nobody")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	src, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "flood.test")
	if err := os.WriteFile(exe, src, 0o755); err != nil {
		t.Fatal(err)
	}
	return exe
}

// TestHostileMetricsFlood: an unprivileged process (nobody) opens
// connections to the metrics port until bpfmon, with a descriptor limit
// of 300, would have none left. The server holds at most MaxConns of them
// (the rest wait in the kernel's queue), so the content scanner, which
// needs a descriptor for each map it reads, keeps passing during the
// flood and still reports an mmap write made afterwards. Before, the
// flood took every descriptor, the scanner's BPF_MAP_GET_FD_BY_ID failed
// with EMFILE once, and the scanner ended for good while /healthz kept
// answering ready.
func TestHostileMetricsFlood(t *testing.T) {
	flooder := asNobody(t)
	w := startWatchUnder(t, []string{"/bin/sh", "-c", `ulimit -n 300 && exec "$0" "$@"`},
		"--format", "json", "--scan-interval", "200ms", "--metrics-addr", "127.0.0.1:0", "--event", "map_changed")
	addr := w.metricsAddr(t)

	cmd := exec.Command(flooder, "-test.run=^$")
	cmd.Env = append(os.Environ(), connectEnv+"="+addr+":1500")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("the flood: %v", err)
	}
	t.Logf("nobody holds %s connections to the metrics port", strings.TrimSpace(line))
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", w.cmd.Process.Pid))
	t.Logf("bpfmon holds %d descriptors of its 300", len(fds))

	// The scanner keeps passing while the connections are held.
	w.waitScanPasses(t, 3)

	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "flood_mmap", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 4, Flags: unix.BPF_F_MMAPABLE})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	w.waitScanPasses(t, 2) // its baseline
	mem, err := unix.Mmap(m.FD(), 0, os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	mem[8] = 0x5a // key 1, through memory: only the scanner sees it
	w.waitOutput(t, "map_changed for the mmap write made during the flood", func(lines []string) bool {
		for _, l := range lines {
			if strings.Contains(l, `"name":"flood_mmap"`) && strings.Contains(l, `"key":"01000000"`) && strings.Contains(l, `"change":"modified"`) {
				return true
			}
		}
		return false
	})
	if s := w.stderr.String(); strings.Contains(s, "too many open files") {
		t.Errorf("bpfmon ran out of descriptors:\n%s", s)
	}
}

// healthz is the status and body of GET /healthz.
func healthz(t *testing.T, addr string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
