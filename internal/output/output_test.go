package output

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/bpfmon/bpfmon/internal/event"
)

// render writes evs with a fresh writer of format and returns the output.
func render(t testing.TB, format string, evs ...*event.Event) string {
	t.Helper()
	var out bytes.Buffer
	w, err := New(format, &out)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if err := w.Write(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// Times are built in time.Local so that the text writer's local time of
// day is predictable whatever the machine's zone.
var t0 = time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.Local)

// The golden tests of both formats are in internal/sensor/bpfsyscall
// (golden_test.go): their events are what the syscall sensor's decoder
// makes of records built as the kernel builds them, which this package's
// tests cannot build. What remains here is the one golden no sensor's
// decoder yields: the ring's report of lost records, built by hand exactly
// as record.Ring.tick builds it (time, type, source, count; no process).
func TestLostGolden(t *testing.T) {
	ev := &event.Event{Time: t0.Add(-time.Hour), Type: event.Lost, Source: event.SourceSyscall, HasCount: true, Count: 12}
	for format, want := range map[string]string{
		"text": `09:00:00.123456789 lost count=12`,
		"json": `{"time":"2026-11-22T09:00:00.123456789Z","event":"lost","source":"syscall","count":12}`,
	} {
		e := *ev
		if format == "json" {
			e.Time = utcClock(e.Time)
		}
		if got := render(t, format, &e); got != want+"\n" {
			t.Errorf("%s:\n got %s\nwant %s", format, got, want)
		}
		if format == "json" {
			if err := CheckDocumented([]byte(want)); err != nil {
				t.Error(err)
			}
		}
	}
}

// utcClock returns the instant whose UTC clock reads what t's local clock
// reads, so that JSON golden strings do not depend on the machine's zone.
func utcClock(t time.Time) time.Time {
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	return time.Date(y, mo, d, h, mi, s, t.Nanosecond(), time.UTC)
}

func TestNew(t *testing.T) {
	for _, f := range []string{"json", "text"} {
		if w, err := New(f, &bytes.Buffer{}); err != nil || w == nil {
			t.Errorf("New(%q) = %v, %v", f, w, err)
		}
	}
	for _, f := range []string{"", "xml", "JSON", "auto"} {
		_, err := New(f, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), `"json"`) || !strings.Contains(err.Error(), `"text"`) {
			t.Errorf("New(%q) error = %v, want one naming the valid formats", f, err)
		}
	}
}

func TestBufferedUntilFlush(t *testing.T) {
	for _, f := range Formats {
		var out bytes.Buffer
		w, _ := New(f, &out)
		ev := benchEvent()
		if err := w.Write(ev); err != nil {
			t.Fatal(err)
		}
		if out.Len() != 0 {
			t.Errorf("%s: wrote before Flush", f)
		}
		if err := w.Flush(); err != nil || out.Len() == 0 {
			t.Errorf("%s: Flush: %v, %d bytes", f, err, out.Len())
		}
	}
}

type failWriter struct{}

var errFail = errors.New("disk full")

func (failWriter) Write([]byte) (int, error) { return 0, errFail }

func TestWriteErrors(t *testing.T) {
	for _, f := range Formats {
		w, _ := New(f, failWriter{})
		ev := benchEvent()
		var err error
		for i := 0; i < 10000 && err == nil; i++ {
			err = w.Write(ev)
		}
		if !errors.Is(err, errFail) {
			t.Errorf("%s: Write error = %v once the buffer is full", f, err)
		}
		if err := w.Flush(); !errors.Is(err, errFail) {
			t.Errorf("%s: Flush error = %v", f, err)
		}
	}
}

func TestTimeFormat(t *testing.T) {
	var tc timeCache
	times := []time.Time{
		{},
		time.Unix(0, 0),
		time.Unix(-1, 999999999),
		time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC),
		time.Date(2026, 11, 22, 10, 0, 0, 5, time.UTC),
		time.Date(2026, 11, 22, 10, 0, 1, 0, time.UTC),
		time.Date(2026, 11, 22, 11, 0, 1, 0, time.FixedZone("x", 3600)), // same instant as the last
		time.Date(2026, 11, 22, 10, 0, 0, 999999999, time.FixedZone("y", -7*3600)),
		time.Date(2024, 2, 29, 23, 59, 59, 999999999, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 1, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Now(),
	}
	for _, tm := range times {
		got := string(tc.appendUTC(nil, tm))
		want := tm.UTC().Format(layoutRFC3339Nano9)
		if got != want {
			t.Errorf("%v: got %s, want %s", tm, got, want)
		}
		if y := tm.UTC().Year(); y >= 0 && y <= 9999 {
			back, err := time.Parse(time.RFC3339Nano, got)
			if err != nil || !back.Equal(tm) || len(got) != len("2006-01-02T15:04:05.000000000Z") {
				t.Errorf("%v: %s does not parse back (%v, %v)", tm, got, back, err)
			}
		}
	}
}

func TestJSONStringEscaping(t *testing.T) {
	for in, want := range map[string]string{
		"":                     `""`,
		"plain":                `"plain"`,
		`a"b\c`:                `"a\"b\\c"`,
		"\n\r\t":               `"\n\r\t"`,
		"\x00\x01\x1b[31m\x7f": `"\u0000\u0001\u001b[31m\u007f"`,
		"héllo 世界 🙂":           `"héllo 世界 🙂"`,
		"\u0085\u009b\u00a0":   `"\u0085\u009b` + "\u00a0" + `"`,
		"a\u2028b\u2029c":      `"a\u2028b\u2029c"`,
		"\xff\xfe":             `"\ufffd\ufffd"`,
		"ok\xc3":               `"ok\ufffd"`,
		"\xed\xa0\x80":         `"\ufffd\ufffd\ufffd"`, // an encoded surrogate is not UTF-8
		"\ufffd":               "\"\ufffd\"",
	} {
		got := string(appendJSONString(nil, in))
		if got != want {
			t.Errorf("appendJSONString(%q) = %s, want %s", in, got, want)
		}
		var back string
		if err := json.Unmarshal([]byte(got), &back); err != nil {
			t.Errorf("appendJSONString(%q) = %s: %v", in, got, err)
		} else if utf8.ValidString(in) && back != in {
			t.Errorf("appendJSONString(%q) reads back as %q", in, back)
		}
	}
}

// TestTextQuoting checks that strconv.AppendQuote, on which the text format
// relies, escapes everything that could disturb a terminal or split a line.
func TestTextQuoting(t *testing.T) {
	for _, in := range []string{
		"\n", "\r", "\x00", "\x1b", "\x7f", "\u0080", "\u0085", "\u009b", "\u009f",
		"\u2028", "\u2029", "\u202e", "\u200b", "\ufeff", "\xff", "\xc3", "\xed\xa0\x80",
	} {
		got := string(appendTextString(nil, in, false))
		if !isSafeText(got) || got == `"`+in+`"` {
			t.Errorf("text of %q is %q: not escaped", in, got)
		}
	}
	for in, want := range map[string]string{
		"/usr/bin/x": "/usr/bin/x",
		"?/x":        "?/x",
		"":           `""`,
		"a b":        `"a b"`,
		`a"b`:        `"a\"b"`,
		`a\b`:        `"a\\b"`,
		"é":          `"é"`,
	} {
		if got := string(appendTextString(nil, in, false)); got != want {
			t.Errorf("text of %q = %s, want %s", in, got, want)
		}
	}
}

// isSafeText reports whether s is valid UTF-8 with no C0 or C1 control
// character, DEL, or Unicode line or paragraph separator.
func isSafeText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || (r >= 0x7f && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return false
		}
	}
	return true
}

func hostileEvent() *event.Event {
	return &event.Event{
		Time: t0, Type: event.ObjPin, Source: event.SourceSyscall,
		HasResult: true, Result: 0,
		Process: &event.Process{
			PID: 66, TID: 66, PPID: 1, UID: 1000, GID: 1000,
			Comm: "x\n" + `"` + "\x1b[31m", Exe: "/tmp/evil\r\nbin", CgroupID: 9,
		},
		Map:  &event.Map{ID: 42, Name: "n\x1b]0;pwned\x07", Type: 1},
		Path: "/sys/fs/bpf/a\n10:00:00.000000000 map_update pid=1 comm=\"init\"",
	}
}

func TestHostileStrings(t *testing.T) {
	ev := hostileEvent()

	js := render(t, "json", ev)
	if strings.Count(js, "\n") != 1 || !strings.HasSuffix(js, "\n") {
		t.Fatalf("JSON is not one line: %q", js)
	}
	var back struct {
		Process struct{ Comm, Exe string }
		Map     struct{ Name string }
		Path    string
	}
	if err := json.Unmarshal([]byte(js), &back); err != nil {
		t.Fatalf("%v: %s", err, js)
	}
	if back.Process.Comm != ev.Process.Comm || back.Process.Exe != ev.Process.Exe ||
		back.Map.Name != ev.Map.Name || back.Path != ev.Path {
		t.Errorf("strings did not survive JSON: %+v", back)
	}
	if strings.ContainsRune(js, 0x1b) || strings.ContainsRune(js, 0x07) {
		t.Errorf("raw control character in JSON: %q", js)
	}

	txt := render(t, "text", ev)
	if strings.Count(txt, "\n") != 1 || !strings.HasSuffix(txt, "\n") {
		t.Fatalf("text is not one line: %q", txt)
	}
	if !isSafeText(strings.TrimSuffix(txt, "\n")) || strings.IndexByte(txt, 0x1b) >= 0 {
		t.Errorf("control character in text: %q", txt)
	}
	for _, want := range []string{`comm="x\n\"\x1b[31m"`, `exe="/tmp/evil\r\nbin"`, `map=42:"n\x1b]0;pwned\a"(hash)`, `path="/sys/fs/bpf/a\n10:00`} {
		if !strings.Contains(txt, want) {
			t.Errorf("text %q lacks %s", txt, want)
		}
	}
}

func TestJSONZeroAllocs(t *testing.T) {
	w, _ := New("json", discard{})
	ev := benchEvent()
	hostile := hostileEvent()
	allocs := testing.AllocsPerRun(1000, func() {
		ev.Time = ev.Time.Add(time.Microsecond) // cross second boundaries too
		w.Write(ev)
		w.Write(hostile)
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per event", allocs/2)
	}
}

// discard is an io.Writer that is not io.Discard, so that bufio really
// buffers and flushes as it does with a file.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func benchEvent() *event.Event {
	return &event.Event{
		Time: time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC), Type: event.MapUpdate, Source: event.SourceSyscall,
		HasResult: true, Result: 0,
		Process: &event.Process{PID: 1234, TID: 1235, PPID: 1, UID: 0, GID: 0, Comm: "cilium-agent", Exe: "/usr/bin/cilium-agent", CgroupID: 4242},
		Map:     &event.Map{ID: 42, Name: "cilium_policy", Type: 1, KeySize: 8, ValueSize: 8, MaxEntries: 16384},
		HasFD:   true, FD: 17,
		Key: []byte{1, 2, 3, 4, 5, 6, 7, 8}, HasKey: true, KeyTotal: 8,
		Value: []byte{8, 7, 6, 5, 4, 3, 2, 1}, HasValue: true, ValueTotal: 8,
		HasFlags: true,
	}
}

func BenchmarkJSON(b *testing.B) {
	w, _ := New("json", discard{})
	ev := benchEvent()
	b.ReportAllocs()
	for b.Loop() {
		ev.Time = ev.Time.Add(100 * time.Nanosecond)
		if err := w.Write(ev); err != nil {
			b.Fatal(err)
		}
	}
	w.Flush()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkText(b *testing.B) {
	w, _ := New("text", discard{})
	ev := benchEvent()
	b.ReportAllocs()
	for b.Loop() {
		if err := w.Write(ev); err != nil {
			b.Fatal(err)
		}
	}
	w.Flush()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
