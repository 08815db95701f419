// The owner soak (--soak-owners): real owners writing their protected
// maps under load must raise no alert, and each way a stranger tampers
// with the same maps must.

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/tracefs"
)

// strangerEnv makes the bench binary a stranger to the soak's maps (an
// executable that owns none of them): OP:MAPID.
const strangerEnv = "BPFMON_SOAK_STRANGER"

// stranger does one tamper method to a map, as a process that is not its
// owner, and returns the exit code.
func stranger(spec string) int {
	op, idText, _ := strings.Cut(spec, ":")
	id, err := strconv.ParseUint(idText, 10, 32)
	if err == nil {
		err = tamperAs(op, ebpf.MapID(id))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", spec, err)
		return 1
	}
	return 0
}

func tamperAs(op string, id ebpf.MapID) error {
	m, err := ebpf.NewMapFromID(id)
	if err != nil {
		return err
	}
	defer m.Close()
	key := make([]byte, m.KeySize())
	if err := m.NextKey(nil, &key); err != nil {
		return fmt.Errorf("no key: %w", err)
	}
	switch op {
	case "update", "delete":
		if op == "delete" {
			return m.Delete(key)
		}
		var v any = make([]byte, m.ValueSize())
		if m.Type() == ebpf.PerCPUHash || m.Type() == ebpf.PerCPUArray || m.Type() == ebpf.LRUCPUHash {
			n, err := ebpf.PossibleCPU()
			if err != nil {
				return err
			}
			pv := make([][]byte, n)
			for i := range pv {
				pv[i] = make([]byte, m.ValueSize())
			}
			v = pv
		}
		return m.Update(key, v, 0)
	case "program":
		// A program that uses the map, held while the owners keep
		// writing: a change no hook reports may now be the stranger's.
		p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "soak_stranger", Type: ebpf.SocketFilter, License: "GPL",
			Instructions: asm.Instructions{asm.LoadMapPtr(asm.R1, m.FD()), asm.Mov.Imm(asm.R0, 0), asm.Return()}})
		if err != nil {
			return err
		}
		time.Sleep(4 * time.Second)
		return p.Close()
	case "mmapwrite":
		// A write no hook reports: only the content scanner finds it
		// (an mmapable array's last value, made different: not the
		// key "update" writes, which that write would explain).
		b, err := unix.Mmap(m.FD(), 0, os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			return err
		}
		b[int(m.ValueSize()+7)&^7*int(m.MaxEntries()-1)]++
		return unix.Munmap(b)
	case "mmap":
		// Refused for maps that are not mmapable; the attempt is what
		// is reported.
		if b, err := unix.Mmap(m.FD(), 0, os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err == nil {
			unix.Munmap(b)
		}
		return nil
	}
	return fmt.Errorf("unknown tamper method %q", op)
}

// soakMap is a protected map of the soak and its owner.
type soakMap struct {
	id    ebpf.MapID
	name  string
	owner string
}

type soakResult struct {
	took                time.Duration
	execs, writerRounds int64
	changes, updates    map[ebpf.MapID]int64 // map_changed and map_update events per map, during the soak
	alerts              map[string]int64     // by rule, during the soak
	maps                []soakMap
	tampers             []tamperResult
	lost                int64
}

type tamperResult struct {
	method string
	note   string // the call's error, if it failed
	m      soakMap
	rules  []string // alerts raised for it
}

func runSoak(cfg config, e *env) error {
	if _, err := exec.LookPath("bpftrace"); err != nil {
		return errors.New("--soak-owners needs bpftrace (apt-get install bpftrace)")
	}
	if err := tracefs.Mount(); err != nil {
		return fmt.Errorf("bpftrace's tracepoint: %w", err)
	}
	// The owners: bpftrace counting execs per uid, and bpfmon's demo
	// writer (a bpf(2) update and a program's helper write per round).
	bt, err := startBG("bpftrace", exec.Command("bpftrace", "-e", `tracepoint:syscalls:sys_enter_execve { @execs[uid] = count(); }`),
		filepath.Join(e.tmp, "bpftrace.stderr"), filepath.Join(e.tmp, "bpftrace.stdout"))
	if err != nil {
		return err
	}
	defer bt.kill()
	if err := bt.waitFor(func() bool { return fileHas(filepath.Join(e.tmp, "bpftrace.stdout"), []byte("Attaching")) }, 60*time.Second); err != nil {
		return fmt.Errorf("bpftrace: %w", err)
	}
	mw, err := startBG("mapwriter", exec.Command(e.bpfmon, "mapwriter", "--interval", "100ms"),
		filepath.Join(e.tmp, "mapwriter.stderr"), filepath.Join(e.tmp, "mapwriter.stdout"))
	if err != nil {
		return err
	}
	defer mw.kill()
	if err := mw.waitFor(func() bool { return fileHas(filepath.Join(e.tmp, "mapwriter.stdout"), []byte("wrote")) }, 30*time.Second); err != nil {
		return fmt.Errorf("mapwriter: %w", err)
	}
	out := filepath.Join(e.tmp, "soak.json")
	mon, err := startBpfmon(e, e.bpfmon, out, "--scan-interval", "1s", "--protect", "program:sys_enter_execve",
		"--protect", "name:bpfmon_demo", "--policy", writeUnlimited(e))
	if err != nil {
		return err
	}
	defer mon.kill()
	maps := protectedMaps(mon.stderrText())
	if len(maps) < 2 {
		return fmt.Errorf("bpfmon protects %d maps, want bpftrace's and the demo's: %s", len(maps), mon.stderrText())
	}

	r := soakResult{maps: maps, changes: map[ebpf.MapID]int64{}, updates: map[ebpf.MapID]int64{}, alerts: map[string]int64{}}
	progress("owner soak: %v of execs while bpftrace and mapwriter write their protected maps %v", cfg.soak, maps)
	start := time.Now()
	for time.Since(start) < cfg.soak {
		if err := exec.Command("/bin/true").Run(); err != nil {
			return err
		}
		r.execs++
	}
	r.took = time.Since(start)
	time.Sleep(3 * time.Second) // the last passes
	soakEnd := countLines(out)

	dones, err := tamperAll(out, &r)
	if err != nil {
		return err
	}
	if _, err := mon.stop(unix.SIGINT, 30*time.Second); err != nil {
		return err
	}
	mw.stop(unix.SIGINT, 10*time.Second)
	r.writerRounds = int64(strings.Count(readFile(filepath.Join(e.tmp, "mapwriter.stdout")), "bpf_map_update_elem helper"))

	if err := readSoak(out, soakEnd, dones, &r); err != nil {
		return err
	}
	reportSoak(os.Stdout, r)
	return nil
}

// soakDone is a tamper made: its index in soakResult.tampers, the
// stranger's pid, and the output's lines before it.
type soakDone struct {
	i   int
	pid int
	at  int
}

// tamperAll has a stranger (this program, as strangerEnv says) update,
// delete, write by a program and mmap each protected map of r, one after
// the other, each followed by scanner passes.
func tamperAll(out string, r *soakResult) ([]soakDone, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var dones []soakDone
	for _, m := range r.maps {
		for _, method := range []string{"update", "delete", "program", "mmap"} {
			at := countLines(out)
			cmd := exec.Command(self)
			cmd.Env = append(os.Environ(), strangerEnv+"="+method+":"+strconv.Itoa(int(m.id)))
			// A refused attempt (a delete from an array) is still an
			// attempt bpfmon must alert on: noted, not fatal.
			note := ""
			if b, err := cmd.CombinedOutput(); err != nil {
				note = strings.TrimSpace(string(b))
				if _, ok := err.(*exec.ExitError); !ok {
					return nil, fmt.Errorf("stranger %s on map %d: %v", method, m.id, err)
				}
			}
			r.tampers = append(r.tampers, tamperResult{method: method, m: m, note: note})
			dones = append(dones, soakDone{len(r.tampers) - 1, cmd.Process.Pid, at})
			time.Sleep(3 * time.Second) // passes of the scanner
		}
	}
	return dones, nil
}

// soakEvent is what readSoak reads of an event.
type soakEvent struct {
	Event string
	Count int64
	Alert *struct{ Rule string }
	Map   *struct{ ID ebpf.MapID }
	Proc  *struct{ PID int } `json:"process"`
}

// readSoak counts the soak's events in out: those of its first soakEnd
// lines (the soak itself) by map and rule, and the later alerts by the
// tamper they answer.
func readSoak(out string, soakEnd int, dones []soakDone, r *soakResult) error {
	i := -1
	return scanLines(out, func(l []byte) {
		i++
		var x soakEvent
		if json.Unmarshal(l, &x) != nil {
			return
		}
		if x.Event == "lost" {
			r.lost += x.Count
		}
		if i < soakEnd {
			if x.Alert != nil {
				r.alerts[x.Alert.Rule]++
			}
			if x.Map != nil && x.Event == "map_changed" {
				r.changes[x.Map.ID]++
			}
			if x.Map != nil && x.Event == "map_update" {
				r.updates[x.Map.ID]++
			}
			return
		}
		if x.Alert == nil {
			return
		}
		// An alert belongs to the tamper by its stranger's pid, or, for a
		// change the scanner found (no process), to the last tamper on its
		// map before it.
		for j := len(dones) - 1; j >= 0; j-- {
			d := dones[j]
			t := &r.tampers[d.i]
			if x.Proc != nil && x.Proc.PID == d.pid {
				t.rules = append(t.rules, x.Alert.Rule)
				break
			}
			if x.Proc == nil && x.Map != nil && i >= d.at && t.m.id == x.Map.ID {
				t.rules = append(t.rules, x.Alert.Rule)
				break
			}
		}
	})
}

func writeUnlimited(e *env) string {
	p := filepath.Join(e.tmp, "unlimited.yaml")
	os.WriteFile(p, []byte("version: 1\nalerts: {rate: 100000, burst: 100000}\n"), 0o600)
	return p
}

// protectedMaps reads the start log's protected maps.
func protectedMaps(log string) []soakMap {
	var ms []soakMap
	for _, l := range strings.Split(log, "\n") {
		if !strings.Contains(l, `msg="alerts: protected map"`) {
			continue
		}
		var m soakMap
		for _, f := range []struct {
			key string
			set func(string)
		}{
			{" id=", func(v string) { id, _ := strconv.Atoi(v); m.id = ebpf.MapID(id) }},
			{" name=", func(v string) { m.name = v }},
			{" owners=", func(v string) { m.owner = v }},
		} {
			if i := strings.Index(l, f.key); i >= 0 {
				v := l[i+len(f.key):]
				if strings.HasPrefix(v, `"`) {
					if q, err := strconv.QuotedPrefix(v); err == nil {
						v, _ = strconv.Unquote(q)
					}
				} else if j := strings.IndexByte(v, ' '); j >= 0 {
					v = v[:j]
				}
				f.set(v)
			}
		}
		ms = append(ms, m)
	}
	sort.Slice(ms, func(a, b int) bool { return ms[a].id < ms[b].id })
	return ms
}

func readFile(p string) string { b, _ := os.ReadFile(p); return string(b) }

// countLines is how many lines bpfmon's output holds so far: where the
// events of the next step begin.
func countLines(p string) int {
	n := 0
	scanLines(p, func([]byte) { n++ })
	return n
}

func reportSoak(w io.Writer, r soakResult) {
	fmt.Fprintf(w, "## Owner soak: false alarms and tamper alerts\n\n")
	fmt.Fprintf(w, "bpftrace (`@execs[uid] = count()` on `sys_enter_execve`) and `bpfmon mapwriter --interval 100ms` write their own protected maps while a workload runs `/bin/true` %s times in %v; bpfmon watches with `--scan-interval 1s`.\n\n",
		commas(r.execs), r.took.Round(time.Second))
	fmt.Fprintf(w, "| map | owner | map_changed (owner's unreported writes found) | map_update (reported) |\n| --- | --- | --- | --- |\n")
	for _, m := range r.maps {
		fmt.Fprintf(w, "| %d %s | %s | %s | %s |\n", m.id, md(m.name), md(m.owner), commas(r.changes[m.id]), commas(r.updates[m.id]))
	}
	var total int64
	var rules []string
	for rule, n := range r.alerts {
		total += n
		rules = append(rules, fmt.Sprintf("%s: %d", rule, n))
	}
	sort.Strings(rules)
	fmt.Fprintf(w, "\nAlerts raised during the soak: **%d** (target 0)%s; events lost: %d; mapwriter rounds in all: %s.\n\n", total, strings.Join(append([]string{""}, rules...), ", "), r.lost, commas(r.writerRounds))
	fmt.Fprintf(w, "Then a stranger (another executable) tampers with each map:\n\n| map | method | alerts |\n| --- | --- | --- |\n")
	for _, t := range r.tampers {
		got := "**none**"
		if len(t.rules) > 0 {
			got = strings.Join(dedupCount(t.rules), ", ")
		}
		method := t.method
		if t.note != "" {
			method += " (" + md(t.note) + ")"
		}
		fmt.Fprintf(w, "| %d %s | %s | %s |\n", t.m.id, md(t.m.name), method, got)
	}
	fmt.Fprintln(w)
}

func dedupCount(s []string) []string {
	n := map[string]int{}
	var order []string
	for _, x := range s {
		if n[x] == 0 {
			order = append(order, x)
		}
		n[x]++
	}
	var out []string
	for _, x := range order {
		out = append(out, fmt.Sprintf("%s ×%d", x, n[x]))
	}
	return out
}
