package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/bpfmon/bpfmon/internal/outfile"
)

// watchFiles are the paths watch's command line names, each in its role.
type watchFiles struct {
	output, state, policy, ready, cpuProfile string
}

// isStdout says whether --output names standard output rather than a
// file bpfmon creates.
func isStdout(path string) bool {
	return path == "-" || path == "/dev/stdout"
}

// check refuses, before anything starts (no file is created, no probe
// loads), paths bpfmon cannot or must not use:
//   - a file it writes (--output, --cpu-profile) that is a symbolic link,
//     not a regular file, another user's, or writable by group or others
//     (outfile.Check): someone else chose what bpfmon would write into;
//   - a --state or --ready-file path that is not a regular file (a
//     directory, a named pipe, a device) or a symbolic link, or whose
//     directory does not exist: both are replaced by a rename, which
//     neither follows a link nor can replace a directory. Who owns the
//     state file and who may write it is not refused here: a state bpfmon
//     cannot trust is reported as a monitor gap when it is read (see
//     docs/hardening.md);
//   - one path in two roles (the same name, or the same file by another
//     name): events written over the policy or the state, or a state
//     renamed away under the output.
//
// The policy's own checks (a regular file) are policy.Load's.
func (f watchFiles) check() error {
	if f.output != "" && !isStdout(f.output) {
		if err := outfile.Check(f.output); err != nil {
			return fmt.Errorf("--output: %w", err)
		}
	}
	if f.cpuProfile != "" {
		if err := outfile.Check(f.cpuProfile); err != nil {
			return fmt.Errorf("--cpu-profile: %w", err)
		}
	}
	if f.state != "" {
		if err := checkReplaced(f.state); err != nil {
			return fmt.Errorf("--state: %w", err)
		}
	}
	if f.ready != "" {
		if err := checkReplaced(f.ready); err != nil {
			return fmt.Errorf("--ready-file: %w", err)
		}
		// Its temporary file is removed and created anew (never
		// followed); a leftover of bpfmon's own is fine, a link or
		// another user's file there is someone's doing.
		if err := outfile.Check(f.ready + ".tmp"); err != nil {
			return fmt.Errorf("--ready-file: %w", err)
		}
	}
	return f.checkDistinct()
}

// checkReplaced: path, which bpfmon replaces by renaming a new file over
// it, is a regular file, or does not exist in a directory that does.
func checkReplaced(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case err == nil && fi.Mode()&os.ModeSymlink != 0:
		return fmt.Errorf("%s is a symbolic link; want the path of a file bpfmon may replace, not a link to one", path)
	case err == nil && !fi.Mode().IsRegular():
		return fmt.Errorf("%s is %s, not a regular file; want the path of a file bpfmon may replace", path, outfile.ModeKind(fi.Mode()))
	case err == nil:
		return nil
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	return outfile.CheckDir(path)
}

// checkDistinct refuses one file in two roles.
func (f watchFiles) checkDistinct() error {
	type role struct{ flag, path string }
	var roles []role
	add := func(flag, path string) {
		if path != "" {
			roles = append(roles, role{flag, path})
		}
	}
	if !isStdout(f.output) {
		add("--output", f.output)
	}
	add("--state", f.state)
	add("--policy", f.policy)
	add("--ready-file", f.ready)
	if f.ready != "" {
		add("--ready-file's temporary file", f.ready+".tmp")
	}
	add("--cpu-profile", f.cpuProfile)
	same := func(a, b string) bool {
		if filepath.Clean(a) == filepath.Clean(b) {
			return true
		}
		if aa, err1 := filepath.Abs(a); err1 == nil {
			if bb, err2 := filepath.Abs(b); err2 == nil && aa == bb {
				return true
			}
		}
		// The same file by two names: a hard link, or a link to it.
		sa, err1 := os.Stat(a)
		sb, err2 := os.Stat(b)
		if err1 != nil || err2 != nil {
			return false
		}
		x, ok1 := sa.Sys().(*syscall.Stat_t)
		y, ok2 := sb.Sys().(*syscall.Stat_t)
		return ok1 && ok2 && x.Dev == y.Dev && x.Ino == y.Ino
	}
	for i := range roles {
		for j := i + 1; j < len(roles); j++ {
			if same(roles[i].path, roles[j].path) {
				return fmt.Errorf("%s %s and %s %s are the same file: each role needs a file of its own", roles[i].flag, roles[i].path, roles[j].flag, roles[j].path)
			}
		}
	}
	return nil
}
