package sensor

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/bpfmon/bpfmon/internal/features"
)

// verifierLines is how many of the verifier's last lines a rejection's
// message keeps: its log runs to thousands of lines, which belong in a
// file, not in one log line.
const verifierLines = 3

// cilium/ebpf names the program it failed to load: "program NAME: ...".
var programRE = regexp.MustCompile(`program (\S+): `)

// Rejected describes a verifier rejection of one of build's programs in a
// few words: which build, which program, the verifier's last lines, and a
// file (created with mode 0600) that holds its whole log. It returns
// false when err is not a verifier rejection.
func Rejected(build string, err error) (error, bool) {
	var ve *ebpf.VerifierError
	if !errors.As(err, &ve) {
		return nil, false
	}
	prog := "?"
	if m := programRE.FindStringSubmatch(err.Error()); m != nil {
		prog = m[1]
	}
	var last []string
	for i := len(ve.Log) - 1; i >= 0 && len(last) < verifierLines; i-- {
		if l := strings.TrimSpace(ve.Log[i]); l != "" {
			last = append([]string{l}, last...)
		}
	}
	where := "none: the kernel gave no log"
	if len(ve.Log) > 0 {
		where = saveLog(build, prog, err, ve)
	}
	return fmt.Errorf("the kernel verifier (kernel %s) rejected program %s of the %s build: %v; its last lines: %s; the whole log (%d lines): %s; please report it",
		features.KernelRelease(), prog, build, ve.Cause, strings.Join(last, " | "), len(ve.Log), where), true
}

// saveLog writes the whole verifier log to a new file in the temporary
// directory and returns its path, or why it could not.
func saveLog(build, prog string, err error, ve *ebpf.VerifierError) string {
	f, ferr := os.CreateTemp("", "bpfmon-verifier-*.log")
	if ferr != nil {
		return "not saved: " + ferr.Error()
	}
	defer f.Close()
	fmt.Fprintf(f, "bpfmon: the kernel verifier rejected program %s of the %s build\nkernel: %s\nerror: %v\n\n", prog, build, features.KernelRelease(), err)
	for _, l := range ve.Log {
		fmt.Fprintln(f, l)
	}
	return f.Name()
}
