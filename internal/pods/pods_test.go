package pods

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/testutil/critest"
)

func TestFromCgroup(t *testing.T) {
	const uid = "1f0c3a2b-4d5e-4f60-8a7b-9c0d1e2f3a4b"
	for _, c := range []struct{ path, want string }{
		{"/kubepods/besteffort/pod" + uid + "/" + strings.Repeat("a", 64), uid},
		{"/kubepods/pod" + uid + "/" + strings.Repeat("a", 64), uid},
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + strings.ReplaceAll(uid, "-", "_") + ".slice/cri-containerd-" + strings.Repeat("b", 64) + ".scope", uid},
		{"/kubepods.slice/kubepods-pod" + strings.ReplaceAll(uid, "-", "_") + ".slice/crio-" + strings.Repeat("b", 64) + ".scope", uid},
		{"/system.slice/docker-" + strings.Repeat("c", 64) + ".scope", ""},
		{"/user.slice/pod" + uid + "/x", ""}, // not under kubepods
		{"", ""},
	} {
		got := fromCgroup(c.path)
		if (got == nil) != (c.want == "") || (got != nil && got.UID != c.want) {
			t.Errorf("fromCgroup(%q) = %+v, want uid %q", c.path, got, c.want)
		}
	}
}

// TestCacheBound: the cache keeps at most its bound of containers, the
// oldest leaving first.
func TestCacheBound(t *testing.T) {
	r := New(Config{Socket: "off", Cache: 3})
	for _, id := range []string{"a", "b", "c", "d"} {
		r.Pod(id, "/kubepods/pod1f0c3a2b-4d5e-4f60-8a7b-9c0d1e2f3a4b/"+id)
	}
	if len(r.cache) != 3 || len(r.order) != 3 {
		t.Errorf("%d containers kept, want 3", len(r.cache))
	}
	if _, ok := r.cache["a"]; ok {
		t.Error("the oldest container was kept")
	}
}

// TestOtherCgroup: a container id seen first in one pod's cgroup and
// then in another pod's is named by each path's own pod uid, not by the
// first answer.
func TestOtherCgroup(t *testing.T) {
	r := New(Config{Socket: "off"})
	id := strings.Repeat("c", 64)
	a, b := "1f0c3a2b-4d5e-4f60-8a7b-9c0d1e2f3a4b", "2f0c3a2b-4d5e-4f60-8a7b-9c0d1e2f3a4b"
	if p := r.Pod(id, "/kubepods/pod"+a+"/"+id); p == nil || p.UID != a {
		t.Fatalf("first: %+v, want uid %s", p, a)
	}
	if p := r.Pod(id, "/kubepods/pod"+b+"/x/"+id); p == nil || p.UID != b {
		t.Errorf("in pod %s: %+v, want its uid", b, p)
	}
	if p := r.Pod(id, "/system.slice/"+id); p != nil {
		t.Errorf("outside kubepods: %+v, want none", p)
	}
	if p := r.Pod(id, "/kubepods/pod"+a+"/"+id+"/init.scope"); p == nil || p.UID != a {
		t.Errorf("a child cgroup of the same pod: %+v, want uid %s", p, a)
	}
}

// TestContainerd: a real containerd (Debian's, run privately) with a pod
// the test starts as the kubelet would: the first lookup answers at once
// with the uid from the cgroup path and counts a miss; then the runtime's
// answer names namespace, name, uid and container. An id the runtime does
// not know keeps the cgroup's answer. With containerd stopped, a new
// resolver still names the pod uid.
func TestContainerd(t *testing.T) {
	rt := critest.Start(t)
	pod := rt.RunPod(t, "prod", "web-1", "app", nil, "/bin/sleep", "1000000")
	cgroup := "/kubepods/besteffort/pod" + pod.UID + "/" + pod.ContainerID
	misses := 0
	r := New(Config{Socket: rt.Socket, Miss: func() { misses++ }})
	defer r.Close()
	if f := r.Feature(); !f.Available || !strings.Contains(f.Detail, "containerd") {
		t.Errorf("feature %+v: want available, naming containerd", f)
	}
	start := time.Now()
	first := r.Pod(pod.ContainerID, cgroup)
	if d := time.Since(start); d > 10*time.Millisecond {
		t.Errorf("the first lookup took %v: it must not wait for the runtime", d)
	}
	if first == nil || first.UID != pod.UID || first.Name != "" || misses != 1 {
		t.Errorf("first lookup: %+v, %d misses; want uid %s from the cgroup path, 1 miss", first, misses, pod.UID)
	}
	want := event.Pod{Namespace: "prod", Name: "web-1", UID: pod.UID, Container: "app"}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if p := r.Pod(pod.ContainerID, cgroup); p != nil && *p == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pod %+v from containerd within 10s", want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	n := misses
	r.Pod(pod.ContainerID, cgroup)
	if misses != n {
		t.Error("a cached pod counted as a miss")
	}

	other := strings.Repeat("e", 64)
	r.Pod(other, "/system.slice/x/"+other)
	for i := 0; ; i++ {
		r.mu.Lock()
		e := r.cache[other]
		r.mu.Unlock()
		if e.final {
			if e.pod != nil {
				t.Errorf("a container containerd does not know: %+v, want no pod", e.pod)
			}
			break
		}
		if i > 1000 {
			t.Fatal("a container containerd does not know was never settled")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The container's id in a cgroup of another pod (a child cgroup made
	// in it, named after this container): the runtime's pod is not the
	// one the path names, so the path's uid alone is the answer, and no
	// namespace (policy owners by pod) is borrowed.
	stranger := "0b1c2d3e-0000-4000-8000-00000000000f"
	fake := "/kubepods/besteffort/pod" + stranger + "/" + strings.Repeat("f", 64) + "/" + pod.ContainerID
	r2 := New(Config{Socket: rt.Socket})
	defer r2.Close()
	r2.Pod(pod.ContainerID, fake)
	for i := 0; ; i++ {
		r2.mu.Lock()
		e := r2.cache[pod.ContainerID]
		r2.mu.Unlock()
		if e.final {
			if e.pod == nil || e.pod.Namespace != "" || e.pod.UID != stranger {
				t.Errorf("the container's id under pod %s: %+v, want that uid only", stranger, e.pod)
			}
			break
		}
		if i > 1000 {
			t.Fatal("the container in a stranger's cgroup was never settled")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// And the other way: the real pod known, a stranger's cgroup with its
	// container id gets its own path's uid.
	if p := r.Pod(pod.ContainerID, fake); p == nil || p.Namespace != "" || p.UID != stranger {
		t.Errorf("a cached pod for the container's id under pod %s: %+v, want that uid only", stranger, p)
	}

	rt.Stop(t)
	if _, err := os.Stat(rt.Socket); err == nil {
		t.Fatal("containerd's socket is still there")
	}
	down := New(Config{Socket: rt.Socket})
	defer down.Close()
	if f := down.Feature(); f.Available {
		t.Errorf("feature with containerd stopped: %+v, want unavailable", f)
	}
	if p := down.Pod(pod.ContainerID, cgroup); p == nil || p.UID != pod.UID {
		t.Errorf("with containerd stopped: %+v, want uid %s from the cgroup path", p, pod.UID)
	}
}
