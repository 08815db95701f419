// Package outfile is the files bpfmon writes, made so that no one else
// can choose what they are: watch's --output file as log shippers expect
// it, and the helpers that create bpfmon's other files (the ready file,
// the CPU profile).
//
// A file bpfmon writes is opened without following a symbolic link
// (O_NOFOLLOW), created new with O_EXCL and mode 0600, and an existing
// one is used only if it is a regular file of bpfmon's own user that
// neither group nor others may write: a link planted in a writable
// directory, or a file a stranger created for bpfmon to fill, is refused
// (ErrRefused), not followed or reused.
//
// The --output file is opened with O_APPEND, so that logrotate's
// copytruncate (which truncates it under bpfmon) leaves no hole of NUL
// bytes; it is reopened on request (logrotate moves it away, then signals
// bpfmon with SIGHUP) and, when a size is given, rotated by bpfmon itself
// into a bounded number of backups (FILE-TIMESTAMP.ext, as lumberjack
// names them). lumberjack is not used for it: it opens the new file
// following links and hands it to the owner of the old one. Writes are
// passed on whole: watch writes whole lines per call, so a rotation falls
// between lines, never inside one.
package outfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// MiB is the unit rotation sizes come in.
const MiB = 1 << 20

// ErrRefused says a path is not one bpfmon may write: a symbolic link,
// not a regular file, another user's file, or one others may write.
var ErrRefused = errors.New("refused")

// Check says whether path may be a file bpfmon writes, before it opens
// it: it may not exist yet (its directory must), or be a regular file of
// bpfmon's user that group and others cannot write. Open and Create check
// again what they open; Check is for refusing a command line before
// anything starts.
func Check(path string) error {
	var st unix.Stat_t
	err := unix.Lstat(path, &st)
	if err == unix.ENOENT {
		return CheckDir(path)
	}
	if err != nil {
		return &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return checkStat(path, &st)
}

// CheckDir says whether the directory that path is to be created in
// exists.
func CheckDir(path string) error {
	dir := filepath.Dir(path)
	di, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("cannot create %s: %w", path, err)
	}
	if !di.IsDir() {
		return fmt.Errorf("cannot create %s: %s is not a directory", path, dir)
	}
	return nil
}

// checkStat is Check's rule for an existing file.
func checkStat(path string, st *unix.Stat_t) error {
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return fmt.Errorf("%s: %w: it is a symbolic link, which bpfmon does not follow for a file it writes; give the path it points to, or remove it", path, ErrRefused)
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return fmt.Errorf("%s: %w: it is %s, not a regular file", path, ErrRefused, Kind(st.Mode))
	case st.Uid != uint32(os.Geteuid()):
		return fmt.Errorf("%s: %w: it is owned by uid %d, not by bpfmon's user (uid %d): another user created it, and may read or change what bpfmon writes; remove it, or give another path", path, ErrRefused, st.Uid, os.Geteuid())
	case st.Mode&0o022 != 0:
		return fmt.Errorf("%s: %w: its mode %04o lets group or others write it; chmod go-w it, or remove it", path, ErrRefused, st.Mode&0o7777)
	}
	return nil
}

// Kind names what a file of mode m (a stat st_mode) is, for errors.
func Kind(m uint32) string {
	var mode fs.FileMode
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		mode = fs.ModeDir
	case unix.S_IFIFO:
		mode = fs.ModeNamedPipe
	case unix.S_IFSOCK:
		mode = fs.ModeSocket
	case unix.S_IFCHR, unix.S_IFBLK:
		mode = fs.ModeDevice
	case unix.S_IFLNK:
		mode = fs.ModeSymlink
	case unix.S_IFREG:
	default:
		mode = fs.ModeIrregular
	}
	return ModeKind(mode)
}

// ModeKind names what a file of mode m (as os.Stat gives it) is, for
// errors.
func ModeKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m.IsRegular():
		return "a regular file"
	}
	return "not a regular file"
}

// Create opens path for writing as a file of bpfmon's own: created with
// mode 0600 if it does not exist, else reused only if Check allows it, and
// then truncated (trunc) or appended to (O_APPEND). A symbolic link at
// path is never followed, and a named pipe never blocks the open.
func Create(path string, trunc bool) (*os.File, error) {
	flags := unix.O_WRONLY | unix.O_APPEND | unix.O_NOFOLLOW | unix.O_CLOEXEC
	for range 3 {
		fd, err := unix.Open(path, flags|unix.O_CREAT|unix.O_EXCL, 0o600)
		if err == nil {
			return os.NewFile(uintptr(fd), path), nil
		}
		if err != unix.EEXIST {
			return nil, &os.PathError{Op: "create", Path: path, Err: err}
		}
		// There: opened without blocking (a named pipe would wait for a
		// reader) and looked at before anything is written.
		fd, err = unix.Open(path, flags|unix.O_NONBLOCK, 0)
		switch err {
		case nil:
		case unix.ENOENT:
			continue // removed meanwhile
		default:
			// A link (ELOOP), a directory (EISDIR), a named pipe no one
			// reads (ENXIO): say what it is.
			var st unix.Stat_t
			if unix.Lstat(path, &st) == nil {
				if cerr := checkStat(path, &st); cerr != nil {
					return nil, cerr
				}
			}
			return nil, &os.PathError{Op: "open", Path: path, Err: err}
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return nil, &os.PathError{Op: "stat", Path: path, Err: err}
		}
		if err := checkStat(path, &st); err != nil {
			unix.Close(fd)
			return nil, err
		}
		if trunc {
			if err := unix.Ftruncate(fd, 0); err != nil {
				unix.Close(fd)
				return nil, &os.PathError{Op: "truncate", Path: path, Err: err}
			}
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, unix.O_WRONLY|unix.O_APPEND); err != nil {
			unix.Close(fd)
			return nil, &os.PathError{Op: "fcntl", Path: path, Err: err}
		}
		return os.NewFile(uintptr(fd), path), nil
	}
	return nil, fmt.Errorf("%s: created and removed again while bpfmon opened it", path)
}

// CreateNew creates path, which must not exist, with mode 0600, never
// following a link: for a temporary file that is then renamed into place.
func CreateNew(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, &os.PathError{Op: "create", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// File is an output file. Safe for concurrent use: Reopen comes from a
// signal handler while events are written.
type File struct {
	mu       sync.Mutex
	path     string
	f        *os.File
	size     int64 // bytes in f, with rotation
	maxSize  int64 // rotate past this; 0: never
	maxFiles int
}

// Open creates or truncates path (mode 0600), as --output always has.
// With maxSize > 0 (bytes, a multiple of MiB) the file is instead
// appended to and rotated once it would grow past maxSize, keeping
// maxFiles backups (0: all). Either way it is written with O_APPEND.
func Open(path string, maxSize int64, maxFiles int) (*File, error) {
	if maxSize < 0 || maxSize%MiB != 0 {
		return nil, fmt.Errorf("rotation size %d is not a whole number of MiB", maxSize)
	}
	if maxFiles < 0 {
		return nil, errors.New("the number of rotated files is negative")
	}
	f, err := Create(path, maxSize == 0)
	if err != nil {
		return nil, err
	}
	o := &File{path: path, f: f, maxSize: maxSize, maxFiles: maxFiles}
	if maxSize > 0 {
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		o.size = fi.Size()
	}
	return o, nil
}

// Write writes p whole to the current file, rotating it first if p
// would take it past the size limit. A write larger than the limit
// goes whole into a file of its own.
func (o *File) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.maxSize > 0 && o.size > 0 && o.size+int64(len(p)) > o.maxSize {
		if err := o.rotate(); err != nil {
			return 0, err
		}
	}
	n, err := o.f.Write(p)
	o.size += int64(n)
	return n, err
}

// backupTime is lumberjack's timestamp in backup names (UTC).
const backupTime = "2006-01-02T15-04-05.000"

// rotate moves the file to a backup, starts a new one and removes the
// backups past maxFiles. If the new file cannot be made (something was
// planted at the path between the move and the creation), the write
// fails and the next one tries again.
func (o *File) rotate() error {
	dir, base := filepath.Split(o.path)
	ext := filepath.Ext(base)
	prefix := strings.TrimSuffix(base, ext) + "-"
	backup := filepath.Join(dir, prefix+time.Now().UTC().Format(backupTime)+ext)
	for i := 1; ; i++ {
		if _, err := os.Lstat(backup); errors.Is(err, os.ErrNotExist) {
			break
		}
		backup = filepath.Join(dir, fmt.Sprintf("%s%s.%d%s", prefix, time.Now().UTC().Format(backupTime), i, ext))
	}
	if err := os.Rename(o.path, backup); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("rotating %s: %w", o.path, err)
	}
	f, err := Create(o.path, false)
	if err != nil {
		return fmt.Errorf("rotating %s: %w", o.path, err)
	}
	o.f.Close()
	o.f, o.size = f, 0
	if o.maxFiles > 0 {
		o.prune(dir, prefix, ext)
	}
	return nil
}

// prune removes the oldest backups past maxFiles: those whose names are
// the file's prefix, a timestamp and its extension.
func (o *File) prune(dir, prefix, ext string) {
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	var backups []string
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(name, prefix) || !strings.HasSuffix(name, ext) {
			continue
		}
		stamp := strings.TrimSuffix(strings.TrimPrefix(name, prefix), ext)
		if len(stamp) < len(backupTime) {
			continue
		}
		if _, err := time.Parse(backupTime, stamp[:len(backupTime)]); err != nil {
			continue
		}
		backups = append(backups, name)
	}
	if len(backups) <= o.maxFiles {
		return
	}
	sort.Strings(backups) // the timestamps sort as times
	for _, name := range backups[:len(backups)-o.maxFiles] {
		os.Remove(filepath.Join(dir, name))
	}
}

// Reopen closes the file and opens path again, appending, creating it if
// it was moved away: what logrotate expects on SIGHUP. Nothing written
// before is lost: writes are not buffered here. What is at path now must
// pass the same checks as at start.
func (o *File) Reopen() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	f, err := Create(o.path, false)
	if err != nil {
		return fmt.Errorf("reopening %s: %w (writing on to the file it replaced)", o.path, err)
	}
	if o.maxSize > 0 {
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return fmt.Errorf("reopening %s: %w (writing on to the file it replaced)", o.path, err)
		}
		o.size = fi.Size()
	}
	o.f.Close()
	o.f = f
	return nil
}

// Close closes the file.
func (o *File) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.f.Close()
}
