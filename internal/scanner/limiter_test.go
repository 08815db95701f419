// Tests of the read-rate limiter, alone and under a live Reader.

package scanner

import (
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/bpfmon/bpfmon/internal/testutil"
)

func TestLimiterNilIsUnlimited(t *testing.T) {
	if l := NewLimiter(0); l != nil {
		t.Fatalf("NewLimiter(0) = %+v, want nil", l)
	}
	if l := NewLimiter(-1); l != nil {
		t.Fatalf("NewLimiter(-1) = %+v, want nil", l)
	}
	var l *Limiter
	start := time.Now()
	for i := 0; i < 1000; i++ {
		l.Wait(1 << 30)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("1000 waits for 1 GiB on a nil limiter took %v", d)
	}
}

// A request larger than the bucket is not refused or cut: it takes as long
// as its bytes take at the rate.
func TestLimiterRate(t *testing.T) {
	l := NewLimiter(1_000_000) // burst: 100 kB
	start := time.Now()
	l.Wait(100_000) // the burst, at once
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Fatalf("the first burst waited %v", d)
	}
	l.Wait(300_000) // bigger than the bucket: ~0.3 s
	l.Wait(1)
	d := time.Since(start)
	if d < 280*time.Millisecond || d > 2*time.Second {
		t.Fatalf("400 kB at 1 MB/s with a 100 kB burst took %v, want ~0.3 s", d)
	}
}

// At 1 MB/s, reading a ~1.2 MB map takes over a second and still hands
// every element to fn; without a limiter it takes a few milliseconds.
func TestLimiterSlowsRead(t *testing.T) {
	needRoot(t)
	const n, vs = 1200, 1020 // 1024 bytes per element with the key
	spec := &ebpf.MapSpec{Name: "scan_limited", Type: ebpf.Array, KeySize: 4, ValueSize: vs, MaxEntries: n}
	m := newTestMap(t, spec)
	want := make(map[string][]byte)
	for i := uint32(0); i < n; i++ {
		v := make([]byte, vs)
		for j := range v {
			v[j] = byte(i + uint32(j))
		}
		if err := m.Put(i, v); err != nil {
			t.Fatal(err)
		}
		want[string(u32(i))] = v
	}
	id := testutil.MapID(t, m)

	start := time.Now()
	_, got := readAll(t, newReader(t, nil), id)
	unlimited := time.Since(start)
	checkContents(t, got, want)
	if unlimited > 500*time.Millisecond {
		t.Fatalf("unlimited read of %d kB took %v", n, unlimited)
	}

	r := newReader(t, NewLimiter(1_000_000))
	start = time.Now()
	_, got = readAll(t, r, id)
	limited := time.Since(start)
	checkContents(t, got, want)
	if st := r.Stats(); st.Bytes != n*1024 {
		t.Fatalf("stats %+v: want %d bytes", st, n*1024)
	}
	// 1,228,800 bytes at 1 MB/s, less the 100 kB burst: ~1.13 s.
	if limited < time.Second || limited > 5*time.Second {
		t.Fatalf("read of %d bytes at 1 MB/s took %v, want ~1.1 s", n*1024, limited)
	}
	t.Logf("unlimited %v, at 1 MB/s %v", unlimited, limited)
}
