package pods

import (
	"fmt"
	"testing"
)

// BenchmarkPod is the event path's cost of naming a pod: a container
// already looked up (a hit), and one seen for the first time (a miss:
// the pod uid parsed from the cgroup path, the container cached, the
// oldest evicted past the bound; the runtime's lookup runs elsewhere).
func BenchmarkPod(b *testing.B) {
	const uid = "1f0c3a2b-4d5e-4f60-8a7b-9c0d1e2f3a4b"
	ids := make([]string, 1<<16)
	cgs := make([]string, len(ids))
	for i := range ids {
		ids[i] = fmt.Sprintf("%064x", i)
		cgs[i] = "/kubepods/besteffort/pod" + uid + "/" + ids[i]
	}
	b.Run("hit", func(b *testing.B) {
		r := New(Config{Socket: "off"})
		r.Pod(ids[0], cgs[0])
		b.ReportAllocs()
		for b.Loop() {
			if r.Pod(ids[0], cgs[0]) == nil {
				b.Fatal("no pod")
			}
		}
	})
	b.Run("miss", func(b *testing.B) {
		r := New(Config{Socket: "off"})
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if r.Pod(ids[i%len(ids)], cgs[i%len(ids)]) == nil {
				b.Fatal("no pod")
			}
			i++
		}
	})
}
