package syslogout

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/output"
)

// BenchmarkOutputs is the cost per event of the syslog output beside the
// file output's, in one run: the JSON writer to a file (what --output
// costs), syslog's Write alone (what the event path pays: render and
// queue) and syslog to a loopback TCP receiver including the sender's
// work (the run ends once the receiver acknowledged everything; lost/op
// says whether the sender kept up with the queue).
func BenchmarkOutputs(b *testing.B) {
	ev := alertEvent(7)
	ev.Process = &event.Process{PID: 10, TID: 10, CgroupID: 7, Comm: "writer", Exe: "/usr/bin/writer"}
	ev.Key, ev.HasKey = []byte{1, 0, 0, 0}, true
	ev.Value, ev.HasValue = []byte{1, 2, 3, 4, 1, 0, 0, 0}, true
	b.Run("file", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "out"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		w, _ := output.New("json", f)
		b.ReportAllocs()
		for b.Loop() {
			w.Write(ev)
		}
		w.Flush()
	})
	receiver := func(b *testing.B) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { io.Copy(io.Discard, c); c.Close() }()
			}
		}()
		return ln.Addr().String()
	}
	b.Run("syslog-write", func(b *testing.B) {
		w, err := newWriter(Config{URL: "tcp://" + receiver(b), Queue: 1 << 16})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			w.Write(ev)
			if w.n == len(w.queue) { // no sender: empty it, as it would
				w.mu.Lock()
				w.head, w.n = 0, 0
				w.mu.Unlock()
			}
		}
	})
	b.Run("syslog-tcp", func(b *testing.B) {
		w, err := New(Config{URL: "tcp://" + receiver(b)})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			w.Write(ev)
		}
		_, lost := w.Close(10 * time.Second)
		b.ReportMetric(float64(lost)/float64(b.N), "lost/op")
	})
}
