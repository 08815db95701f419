// Package procexe tells which file an executable is the way the kernel
// does: by the inode and the device of its filesystem's superblock (what
// bpfmon's programs read from task->mm->exe_file), not the st_dev of
// stat(2), which some filesystems (btrfs subvolumes, overlayfs) report
// otherwise. Owners learnt from /proc or from a path must compare equal to
// the identities the sensors report.
package procexe

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// FromKernel converts the kernel's internal dev_t (major << 20 | minor)
// to the user-space encoding (unix.Mkdev).
func FromKernel(d uint64) uint64 { return unix.Mkdev(uint32(d>>20), uint32(d&0xfffff)) }

// ToKernel is the inverse of FromKernel.
func ToKernel(d uint64) uint64 { return uint64(unix.Major(d))<<20 | uint64(unix.Minor(d)) }

// Of returns the executable of process pid: its path (for people), inode
// and superblock device (user-space encoding; 0, any, when no mapping of
// it is found), from /proc.
func Of(pid uint32) (path string, ino, dev uint64, err error) {
	dir := "/proc/" + strconv.FormatUint(uint64(pid), 10)
	var st unix.Stat_t
	if err := unix.Stat(dir+"/exe", &st); err != nil {
		return "", 0, 0, err
	}
	path, _ = os.Readlink(dir + "/exe")
	if dev, err = mappedDev(dir+"/maps", st.Ino); err != nil {
		dev = 0 // not mapped (a kernel thread, a process exiting): any device
	}
	return path, st.Ino, dev, nil
}

// File returns the inode and superblock device of the file at path, by
// mapping it and reading the mapping's device back from /proc/self/maps;
// device 0 (any) for a file that cannot be mapped.
func File(path string) (ino, dev uint64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0, 0, err
	}
	if st.Size == 0 {
		return st.Ino, 0, nil // nothing to map, nor to run: any device
	}
	m, err := unix.Mmap(int(f.Fd()), 0, 1, unix.PROT_READ, unix.MAP_PRIVATE)
	if err != nil {
		return st.Ino, 0, nil // not mappable: any device
	}
	defer unix.Munmap(m)
	if dev, err = mappedDev("/proc/self/maps", st.Ino); err != nil {
		return st.Ino, 0, nil
	}
	return st.Ino, dev, nil
}

// mappedDev finds the device of the first mapping of inode ino in a maps
// file: "addr perms offset MAJOR:MINOR inode path", in hex.
func mappedDev(maps string, ino uint64) (uint64, error) {
	b, err := os.ReadFile(maps)
	if err != nil {
		return 0, err
	}
	want := []byte(strconv.FormatUint(ino, 10))
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 5 || !bytes.Equal(f[4], want) {
			continue
		}
		ma, mi, ok := bytes.Cut(f[3], []byte(":"))
		if !ok {
			continue
		}
		major, err1 := strconv.ParseUint(string(ma), 16, 32)
		minor, err2 := strconv.ParseUint(string(mi), 16, 32)
		if err1 == nil && err2 == nil {
			return unix.Mkdev(uint32(major), uint32(minor)), nil
		}
	}
	return 0, errors.New("no mapping of the executable in " + maps)
}
