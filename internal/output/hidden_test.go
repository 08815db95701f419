package output

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/bpfmon/bpfmon/internal/event"
)

// TestHiddenAndRisky: hidden_object's views and prog_load's risky helpers
// in both formats.
func TestHiddenAndRisky(t *testing.T) {
	at := time.Date(2026, 12, 7, 13, 0, 0, 0, time.UTC)
	hidden := &event.Event{Time: at, Type: event.HiddenObject, Source: event.SourceInventory, Map: &event.Map{ID: 87, Name: "rk", Type: 2},
		Extra: &event.Extra{Hidden: &event.Hidden{Kind: "map", ID: 87, SeenBy: []string{"bpffs", "fdinfo"}, MissedBy: []string{"get_next_id"}}}}
	load := &event.Event{Time: at, Type: event.ProgLoad, Source: event.SourceSyscall,
		Prog: &event.Prog{ID: 9, Name: "p", Tag: "00", Type: 5, Risky: "bpf_probe_write_user,bpf_send_signal"}, Extra: &event.Extra{ProgMaps: []uint32{}}}
	hiddenProg := &event.Event{Time: at, Type: event.HiddenObject, Source: event.SourceInventory, Prog: &event.Prog{ID: 61, Name: "rk_hide", Type: 5},
		Extra: &event.Extra{Hidden: &event.Hidden{Kind: "prog", ID: 61, SeenBy: []string{"bpf_prog_iter"}, MissedBy: []string{"get_fd_by_id", "get_next_id"}}}}
	unknown := &event.Event{Time: at, Type: event.ProgLoad, Source: event.SourceSyscall, Prog: &event.Prog{ID: 10, RiskyUnknown: true}}
	for _, tc := range []struct {
		format string
		want   []string
	}{
		{"json", []string{`"hidden":{"kind":"map","id":87,"seen_by":["bpffs","fdinfo"],"missed_by":["get_next_id"]}`, `"risky":["bpf_probe_write_user","bpf_send_signal"]`, `"risky_unknown":true`,
			`"prog":{"id":61,"name":"rk_hide"`, `"hidden":{"kind":"prog","id":61,"seen_by":["bpf_prog_iter"],"missed_by":["get_fd_by_id","get_next_id"]}`}},
		{"text", []string{"hidden=map:87 seen_by=bpffs,fdinfo missed_by=get_next_id", "risky=bpf_probe_write_user,bpf_send_signal", "risky=unknown", "hidden=prog:61 seen_by=bpf_prog_iter"}},
	} {
		var b bytes.Buffer
		w, err := New(tc.format, &b)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range []*event.Event{hidden, load, unknown, hiddenProg} {
			if err := w.Write(ev); err != nil {
				t.Fatal(err)
			}
		}
		if f, ok := w.(interface{ Flush() error }); ok {
			f.Flush()
		}
		out := b.String()
		for _, s := range tc.want {
			if !strings.Contains(out, s) {
				t.Errorf("%s: no %s in\n%s", tc.format, s, out)
			}
		}
		if tc.format == "json" {
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				if !json.Valid([]byte(l)) {
					t.Errorf("not JSON: %s", l)
				}
			}
		}
	}
}
