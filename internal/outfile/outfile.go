// Package outfile is watch's --output file as log shippers expect it:
// reopened on request (logrotate moves the file away, then signals bpfmon
// with SIGHUP) and, when a size is given, rotated by bpfmon itself into a
// bounded number of backups (FILE-TIMESTAMP.ext, as lumberjack names
// them). Writes are passed on whole: watch writes whole lines per call,
// so a rotation falls between lines, never inside one.
package outfile

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"gopkg.in/natefinch/lumberjack.v2"
)

// MiB is the unit rotation sizes come in (lumberjack's).
const MiB = 1 << 20

// File is an output file. Safe for concurrent use: Reopen comes from a
// signal handler while events are written.
type File struct {
	mu   sync.Mutex
	path string
	f    *os.File           // without rotation
	lj   *lumberjack.Logger // with rotation
}

// Open creates or truncates path (mode 0600), as --output always has.
// With maxSize > 0 (bytes, a multiple of MiB) the file is instead
// appended to and rotated once it would grow past maxSize, keeping
// maxFiles backups (0: all).
func Open(path string, maxSize int64, maxFiles int) (*File, error) {
	if maxSize < 0 || maxSize%MiB != 0 {
		return nil, fmt.Errorf("rotation size %d is not a whole number of MiB", maxSize)
	}
	if maxFiles < 0 {
		return nil, errors.New("the number of rotated files is negative")
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if maxSize > 0 {
		flags = os.O_WRONLY | os.O_CREATE | os.O_APPEND
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return nil, err
	}
	if maxSize == 0 {
		return &File{path: path, f: f}, nil
	}
	// Opened above to fail now, not at the first event; lumberjack opens
	// it again, appending.
	f.Close()
	return &File{path: path, lj: &lumberjack.Logger{Filename: path, MaxSize: int(maxSize / MiB), MaxBackups: maxFiles}}, nil
}

// Write writes p whole to the current file.
func (o *File) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.lj != nil {
		return o.lj.Write(p)
	}
	return o.f.Write(p)
}

// Reopen closes the file and opens path again, appending, creating it if
// it was moved away: what logrotate expects on SIGHUP. Nothing written
// before is lost: writes are not buffered here.
func (o *File) Reopen() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.lj != nil {
		return o.lj.Close() // the next write opens it again, appending
	}
	f, err := os.OpenFile(o.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("reopening %s: %w (writing on to the file it replaced)", o.path, err)
	}
	o.f.Close()
	o.f = f
	return nil
}

// Close closes the file.
func (o *File) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.lj != nil {
		return o.lj.Close()
	}
	return o.f.Close()
}
