package sensor

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/bpfmon/bpfmon/internal/testutil"
)

// TestRejected: a program the real verifier rejects (it returns R0
// without setting it) is described in one line that names the build, the
// program and the verifier's last lines; its whole log is in the file the
// line names.
func TestRejected(t *testing.T) {
	testutil.RequireRoot(t)
	// Loaded as the sensors load theirs: a collection, whose error names
	// the program.
	_, err := ebpf.NewCollection(&ebpf.CollectionSpec{Programs: map[string]*ebpf.ProgramSpec{
		"bad_return": {Name: "bad_return", Type: ebpf.SocketFilter, License: "GPL", Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R1, 0),
			asm.Return(), // R0 never set
		}},
	}})
	if err == nil {
		t.Fatal("the verifier accepted a program that returns an unset R0")
	}
	var ve *ebpf.VerifierError
	if !errors.As(err, &ve) || len(ve.Log) == 0 {
		t.Fatalf("not a verifier error with a log: %v", err)
	}
	got, ok := Rejected("tp_btf", err)
	if !ok {
		t.Fatalf("Rejected did not take the verifier's error: %v", err)
	}
	msg := got.Error()
	if strings.Contains(msg, "\n") || len(msg) > 1000 {
		t.Errorf("not a short single line (%d bytes): %q", len(msg), msg)
	}
	for _, want := range []string{"rejected program bad_return of the tp_btf build", ve.Log[len(ve.Log)-1]} {
		if want = strings.TrimSpace(want); !strings.Contains(msg, want) {
			t.Errorf("%q lacks %q", msg, want)
		}
	}
	m := regexp.MustCompile(`the whole log \((\d+) lines[^)]*\): (\S+); please report it$`).FindStringSubmatch(msg)
	if m == nil {
		t.Fatalf("no log file named: %q", msg)
	}
	defer os.Remove(m[2])
	b, err := os.ReadFile(m[2])
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(m[2]); fi.Mode().Perm() != 0o600 {
		t.Errorf("log file mode %v, want 0600", fi.Mode().Perm())
	}
	if !strings.Contains(string(b), strings.Join(ve.Log, "\n")) {
		t.Errorf("the file does not hold the whole log:\n%s", b)
	}
	if _, ok := Rejected("x", os.ErrPermission); ok {
		t.Error("Rejected took an error that is not the verifier's")
	}
}
