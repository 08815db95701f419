package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// procRoot is where the holders walk reads processes.
const procRoot = "/proc"

// mapFDTarget is what readlink returns for an fd that refers to a BPF map.
const mapFDTarget = "anon_inode:bpf-map"

// heldFD is one fd of a process that refers to a map.
type heldFD struct {
	mapID uint32
	h     Holder
}

// heldProg is one fd of a process that refers to a program: a view of
// programs for the cross-view check (fdinfo's prog_id).
type heldProg struct {
	progID uint32
	pid    uint32
	fd     int
}

// maxHeldProgs bounds the program fds the walk keeps (a view that a
// program exists: beyond it, the other views still show it).
const maxHeldProgs = 65536

// procWalk accumulates what the holders walk found and could not read.
type procWalk struct {
	mu      sync.Mutex
	held    []heldFD
	progs   []heldProg
	errs    []error
	denied  atomic.Int64 // processes whose fd table we may not read
	scanned atomic.Int64 // processes whose fd table was read
}

func (w *procWalk) addErr(err error) {
	w.mu.Lock()
	w.errs = append(w.errs, err)
	w.mu.Unlock()
}

// vanished reports whether err means the object went away while we looked:
// processes exit, fds close, maps are freed, pins are removed.
func vanished(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH)
}

// walkHolders reads the fd table of every process (or of pids, when not
// nil) except self, in parallel, and returns every fd that refers to a BPF
// map, every fd that refers to a program (up to maxHeldProgs), and the
// number of processes read.
func walkHolders(self int, pids []uint32) ([]heldFD, []heldProg, int, []error) {
	if pids == nil {
		d, err := os.Open(procRoot)
		if err != nil {
			return nil, nil, 0, []error{fmt.Errorf("listing processes: %w", err)}
		}
		names, err := d.Readdirnames(-1)
		d.Close()
		if err != nil {
			return nil, nil, 0, []error{fmt.Errorf("listing processes: %w", err)}
		}
		for _, n := range names {
			if pid, err := strconv.ParseUint(n, 10, 32); err == nil {
				pids = append(pids, uint32(pid))
			}
		}
	}
	w := &procWalk{}
	var next atomic.Int64
	var wg sync.WaitGroup
	workers := min(runtime.GOMAXPROCS(0), len(pids))
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var s procScratch
			for {
				i := int(next.Add(1) - 1)
				if i >= len(pids) {
					return
				}
				if int(pids[i]) == self {
					continue
				}
				s.process(w, pids[i])
			}
		}()
	}
	wg.Wait()
	if n := w.denied.Load(); n > 0 {
		w.errs = append(w.errs, fmt.Errorf("holders: permission denied reading the fds of %d processes: their maps are listed without them", n))
	}
	return w.held, w.progs, int(w.scanned.Load()), w.errs
}

// procScratch holds one worker's reusable buffers.
type procScratch struct {
	link [64]byte
	buf  [4096]byte
}

// process records the map fds of one process.
func (s *procScratch) process(w *procWalk, pid uint32) {
	pidStr := strconv.FormatUint(uint64(pid), 10)
	dir := procRoot + "/" + pidStr + "/fd"
	d, err := os.Open(dir)
	if err != nil {
		switch {
		case vanished(err):
		case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
			w.denied.Add(1)
		default:
			w.addErr(fmt.Errorf("holders: %w", err))
		}
		return
	}
	names, err := d.Readdirnames(-1)
	if err != nil {
		d.Close()
		if !vanished(err) {
			w.addErr(fmt.Errorf("holders: reading %s: %w", dir, err))
		}
		return
	}
	w.scanned.Add(1)
	dfd := int(d.Fd())
	var found []heldFD
	var progs []heldProg
	for _, name := range names {
		n, err := unix.Readlinkat(dfd, name, s.link[:])
		if err != nil {
			continue // closed meanwhile
		}
		isProg := string(s.link[:n]) == progFDTarget
		if !isProg && string(s.link[:n]) != mapFDTarget {
			continue // neither a map nor a program
		}
		fd, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		info, ok := s.readFile(procRoot + "/" + pidStr + "/fdinfo/" + name)
		if !ok {
			continue // closed meanwhile
		}
		f := parseFdinfo(info)
		if isProg {
			if f.hasProgID {
				progs = append(progs, heldProg{progID: f.progID, pid: pid, fd: fd})
			}
			continue
		}
		if !f.hasMapID {
			continue // reused for something else meanwhile
		}
		found = append(found, heldFD{mapID: f.mapID, h: Holder{
			PID: pid, FD: fd, Writable: f.flags&unix.O_ACCMODE != unix.O_RDONLY,
		}})
	}
	d.Close()
	if len(progs) > 0 {
		w.mu.Lock()
		w.progs = append(w.progs, progs[:max(0, min(len(progs), maxHeldProgs-len(w.progs)))]...)
		w.mu.Unlock()
	}
	if len(found) == 0 {
		return
	}
	comm, _ := s.readFile(procRoot + "/" + pidStr + "/comm")
	commStr := string(bytes.TrimSuffix(comm, []byte("\n")))
	exe, _ := os.Readlink(procRoot + "/" + pidStr + "/exe") // kernel threads and exited processes have none
	for i := range found {
		found[i].h.Comm = commStr
		found[i].h.Exe = exe
	}
	w.mu.Lock()
	w.held = append(w.held, found...)
	w.mu.Unlock()
}

// readFile reads a small /proc file into the scratch buffer; the result is
// valid until the next call.
func (s *procScratch) readFile(path string) ([]byte, bool) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, false
	}
	defer unix.Close(fd)
	n := 0
	for n < len(s.buf) {
		r, err := unix.Read(fd, s.buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, false
		}
		if r == 0 {
			break
		}
		n += r
	}
	return s.buf[:n], true
}

// fdinfo is what the inventory reads from /proc/PID/fdinfo/FD.
type fdinfo struct {
	flags    uint64 // file status flags (octal in fdinfo)
	mapID    uint32
	hasMapID bool
	// progID is a program fd's prog_id.
	progID    uint32
	hasProgID bool
	memlock   uint64
	frozen    bool
}

// parseFdinfo parses fdinfo text: lines of "key:\tvalue", flags in octal,
// the numbers in decimal, frozen 0 or 1. The kernel writes each field once;
// should one come twice, the last line of it that parses wins. A line that
// does not parse (no colon, a value that is not a number of the field's
// width, frozen other than 0 or 1) changes nothing: a field none of whose
// lines parse is zero, and hasMapID false. A value out of range is no
// value, never clamped to the largest one.
func parseFdinfo(b []byte) fdinfo {
	var f fdinfo
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			continue
		}
		val := bytes.TrimSpace(line[colon+1:])
		switch string(line[:colon]) {
		case "flags":
			if v, err := strconv.ParseUint(string(val), 8, 64); err == nil {
				f.flags = v
			}
		case "map_id":
			if v, err := strconv.ParseUint(string(val), 10, 32); err == nil {
				f.mapID, f.hasMapID = uint32(v), true
			}
		case "prog_id":
			if v, err := strconv.ParseUint(string(val), 10, 32); err == nil {
				f.progID, f.hasProgID = uint32(v), true
			}
		case "memlock":
			if v, err := strconv.ParseUint(string(val), 10, 64); err == nil {
				f.memlock = v
			}
		case "frozen":
			switch string(val) {
			case "0", "1":
				f.frozen = string(val) == "1"
			}
		}
	}
	return f
}
