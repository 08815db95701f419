package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/bpfsys"
)

// bpfMount is one bpffs mount from mountinfo.
type bpfMount struct {
	dev   string // "major:minor" of the filesystem instance
	root  string // the directory of the filesystem mounted here
	point string // where it is mounted
}

// parseMountinfo returns the bpf mounts in /proc/self/mountinfo text, in
// order. Malformed lines are skipped. Fields are separated by spaces and by
// nothing else: the kernel escapes space, tab, newline and backslash in
// paths, and writes every other byte as it is (a carriage return, a
// non-breaking space), so those are part of a path, not separators.
func parseMountinfo(b []byte) []bpfMount {
	var out []bpfMount
	for _, line := range bytes.Split(b, []byte("\n")) {
		fields := bytes.FieldsFunc(line, func(r rune) bool { return r == ' ' })
		sep := -1
		for i := 6; i < len(fields); i++ {
			if string(fields[i]) == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(fields) || string(fields[sep+1]) != "bpf" {
			continue
		}
		out = append(out, bpfMount{
			dev:   string(fields[2]),
			root:  unescapeMountinfo(fields[3]),
			point: unescapeMountinfo(fields[4]),
		})
	}
	return out
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for space...).
func unescapeMountinfo(b []byte) string {
	if bytes.IndexByte(b, '\\') < 0 {
		return string(b)
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' && i+3 < len(b) && isOctal(b[i+1]) && isOctal(b[i+2]) && isOctal(b[i+3]) {
			out = append(out, (b[i+1]-'0')<<6|(b[i+2]-'0')<<3|(b[i+3]-'0'))
			i += 3
			continue
		}
		out = append(out, b[i])
	}
	return string(out)
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// pickMounts keeps one visible mount per bpffs instance: the same instance
// bind-mounted twice holds the same pins, which would otherwise be listed
// twice. It prefers the mount of the whole filesystem (shortest root) and
// skips mount points that another mount hides (their device differs).
func pickMounts(mounts []bpfMount, devOf func(path string) (string, error)) []bpfMount {
	byDev := map[string][]bpfMount{}
	var order []string
	for _, m := range mounts {
		if _, ok := byDev[m.dev]; !ok {
			order = append(order, m.dev)
		}
		byDev[m.dev] = append(byDev[m.dev], m)
	}
	var out []bpfMount
	for _, dev := range order {
		cands := byDev[dev]
		sort.SliceStable(cands, func(i, j int) bool { return len(cands[i].root) < len(cands[j].root) })
		for _, m := range cands {
			if d, err := devOf(m.point); err == nil && d == dev {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

// devOf returns the "major:minor" of the filesystem path is on.
func devOf(path string) (string, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return "", err
	}
	return strconv.FormatUint(uint64(unix.Major(st.Dev)), 10) + ":" + strconv.FormatUint(uint64(unix.Minor(st.Dev)), 10), nil
}

// walkPins returns every path on every mounted bpffs where a map is pinned,
// by map id, and where a program is (at most maxProgPins a program), by
// program id: a view of programs for the cross-view check.
func walkPins() (pins, progPins map[uint32][]string, errs []error) {
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, nil, []error{fmt.Errorf("pins: %w", err)}
	}
	pins, progPins = map[uint32][]string{}, map[uint32][]string{}
	for _, m := range pickMounts(parseMountinfo(info), devOf) {
		err := filepath.WalkDir(m.point, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if !vanished(err) {
					errs = append(errs, fmt.Errorf("pins: %w", err))
				}
				if d != nil && d.IsDir() && path != m.point {
					return fs.SkipDir
				}
				return nil
			}
			if d.IsDir() {
				// Another filesystem mounted inside this one is walked on
				// its own if it is a bpffs, else not at all.
				if dev, err := devOf(path); err != nil || dev != m.dev {
					return fs.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() {
				return nil // symlinks are not followed
			}
			id, kind, err := pinnedObject(path)
			switch {
			case err != nil && !vanished(err):
				errs = append(errs, fmt.Errorf("pins: opening %q: %w", path, err))
			case kind == pinnedMap:
				pins[id] = append(pins[id], path)
			case kind == pinnedProg && len(progPins[id]) < maxProgPins:
				progPins[id] = append(progPins[id], path)
			}
			return nil
		})
		if err != nil && !vanished(err) {
			errs = append(errs, fmt.Errorf("pins: walking %s: %w", m.point, err))
		}
	}
	return pins, progPins, errs
}

// maxProgPins bounds the pins kept for one program (a path is only a view
// that it exists: one is enough, a few help people find it).
const maxProgPins = 4

// What a pin holds, as pinnedObject tells it.
const (
	pinnedOther = iota // a link, or what the open cannot tell
	pinnedMap
	pinnedProg
)

// progFDTarget is what readlink returns for an fd that refers to a program.
const progFDTarget = "anon_inode:bpf-prog"

// pinnedObject opens the object pinned at path read-only and returns its
// id and whether it is a map or a program. Pinned links refuse read-only
// opens (EINVAL): they are neither, so that is not an error.
func pinnedObject(path string) (uint32, int, error) {
	fd, err := bpfsys.ObjGet(path, unix.BPF_F_RDONLY)
	if err != nil {
		if errors.Is(err, unix.EINVAL) {
			return 0, pinnedOther, nil
		}
		return 0, pinnedOther, err
	}
	defer unix.Close(fd)
	var link [64]byte
	n, err := unix.Readlink("/proc/self/fd/"+strconv.Itoa(fd), link[:])
	if err != nil {
		return 0, pinnedOther, err
	}
	switch string(link[:n]) {
	case mapFDTarget:
		mi, err := bpfsys.GetMapInfo(fd)
		if err != nil {
			return 0, pinnedOther, err
		}
		return mi.ID, pinnedMap, nil
	case progFDTarget:
		pi, _, err := bpfsys.GetProgInfo(fd, nil)
		if err != nil {
			return 0, pinnedOther, err
		}
		return pi.ID, pinnedProg, nil
	}
	return 0, pinnedOther, nil
}
