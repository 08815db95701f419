package watch

import (
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/bpfmon/bpfmon/internal/alert"
	"github.com/bpfmon/bpfmon/internal/policy"
	"github.com/bpfmon/bpfmon/internal/scanner"
)

// TestRestoredTrust: the owners saved on this boot are restored whether
// bpfmon stopped cleanly or not (a kill is what an attacker does before
// getting a handle); a first start, a reboot, a state without owners or a
// damaged one restore nothing.
func TestRestoredTrust(t *testing.T) {
	saved := alert.Trust{Maps: []alert.TrustedMap{{ID: 7, Name: "guarded", Owners: []alert.TrustedOwner{{ExeIno: 5, CgroupID: 9, How: "creator"}}}}}
	extra, err := json.Marshal(saved)
	if err != nil {
		t.Fatal(err)
	}
	alive := time.Unix(1000, 0)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pol := policy.Default()
	pol.AddProtect(policy.Selector{Kind: policy.SelectID, Value: "7", ID: 7})
	for _, tc := range []struct {
		name    string
		saved   bool
		prior   scanner.Prior
		restore bool
	}{
		{"clean stop", true, scanner.Prior{Found: true, Alive: alive, StopKnown: true, Clean: true, Extra: extra}, true},
		{"killed", true, scanner.Prior{Found: true, Alive: alive, StopKnown: true, Clean: false, Extra: extra}, true},
		{"stop not recorded", true, scanner.Prior{Found: true, Alive: alive, Extra: extra}, true},
		{"no --state", false, scanner.Prior{}, false},
		{"first start", true, scanner.Prior{}, false},
		{"rebooted", true, scanner.Prior{Found: true, Alive: alive, StopKnown: true, Rebooted: true, Extra: extra}, false},
		{"no owners saved", true, scanner.Prior{Found: true, Alive: alive, StopKnown: true}, false},
		{"damaged", true, scanner.Prior{Found: true, Alive: alive, StopKnown: true, Extra: json.RawMessage(`{"maps":7}`)}, false},
	} {
		got := restoredTrust(log, pol, tc.saved, tc.prior)
		switch {
		case !tc.restore && got != nil:
			t.Errorf("%s: restored %+v, want nothing", tc.name, got)
		case tc.restore && (got == nil || len(got.Maps) != 1 || got.Maps[0].ID != 7 || len(got.Maps[0].Owners) != 1 || got.Maps[0].Owners[0].ExeIno != 5):
			t.Errorf("%s: restored %+v, want the saved owners", tc.name, got)
		}
	}
}
