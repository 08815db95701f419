// Package pods names the Kubernetes pod of a container, for
// process.pod: on a node the first thing a responder asks is which pod
// did it, and events otherwise stop at a container id.
//
// The pod comes from the container runtime's CRI socket (containerd,
// CRI-O), the way Falco's container plugin does it: ContainerStatus gives
// the container's name and its sandbox, PodSandboxStatus the pod's
// namespace, name and uid as the kubelet asked for them. Neither the
// Kubernetes API nor a token is needed, and nothing comes from the
// process itself: a process can choose its comm and argv, not the
// metadata its runtime keeps.
//
// The event path never waits: Pod answers from a cache bounded by
// container id and, on a miss, queues the lookup for one goroutine and
// returns at once what the cgroup path says (the pod uid of kubelet's
// kubepods layout). Misses are counted (bpfmon_pod_lookup_misses_total).
//
// The runtime's answer stands only where the cgroup path names the same
// pod uid: a container id in a cgroup of another pod (a child cgroup a
// container made and named after another's container) gets its own
// path's uid and no namespace, so no process borrows another pod's name
// (policy owners by pod, internal/alert).
package pods

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/features"
)

// DefaultSockets are the CRI sockets probed when none is given, in
// order: containerd, CRI-O, k3s's containerd, cri-dockerd.
var DefaultSockets = []string{
	"/run/containerd/containerd.sock",
	"/run/crio/crio.sock",
	"/run/k3s/containerd/containerd.sock",
	"/run/cri-dockerd.sock",
}

// Sizes and times.
const (
	// DefaultCache is how many containers' pods are kept.
	DefaultCache = 4096
	// queueSize bounds the lookups waiting; past it, a miss is not
	// queued (the next event of the container asks again).
	queueSize   = 256
	callTimeout = 2 * time.Second
	// downFor is how long lookups pause after the runtime failed one.
	downFor = 5 * time.Second
)

// Config says which runtime to ask and whom to tell about misses.
type Config struct {
	// Socket is the CRI socket; "" probes DefaultSockets, "off" asks
	// no runtime (the pod uid from the cgroup path only).
	Socket string
	// Cache bounds the containers kept (DefaultCache if 0).
	Cache int
	// Miss, when set, is told of every event whose pod was not known
	// yet (bpfmon_pod_lookup_misses_total).
	Miss func()
	Log  *slog.Logger
}

// Resolver answers which pod a container is in.
type Resolver struct {
	cfg     Config
	socket  string // the socket that answered; "" when none did
	runtime string // its name and version
	why     string // why none answered
	conn    *grpc.ClientConn
	rt      cri.RuntimeServiceClient

	mu        sync.Mutex
	cache     map[string]entry
	order     []string // container ids, oldest first, for eviction
	pending   map[string]bool
	downUntil time.Time
	closed    bool
	queue     chan string
	done      chan struct{}
}

// entry is what is known of a container: pod is nil outside a pod;
// final once the runtime answered (or none will).
type entry struct {
	pod    *event.Pod
	cgroup string // the cgroup path it was first seen in
	final  bool
}

// New connects to the runtime (the given socket, or the first default
// that answers its Version call) and starts the lookup goroutine. A node
// without a runtime is no error: pods are then named by uid only.
func New(cfg Config) *Resolver {
	if cfg.Cache <= 0 {
		cfg.Cache = DefaultCache
	}
	r := &Resolver{cfg: cfg, cache: map[string]entry{}, pending: map[string]bool{},
		queue: make(chan string, queueSize), done: make(chan struct{})}
	var candidates []string
	switch cfg.Socket {
	case "off":
		r.why = "--cri-socket off"
	case "":
		candidates = DefaultSockets
	default:
		candidates = []string{cfg.Socket}
	}
	var errs []string
	for _, s := range candidates {
		if _, err := os.Stat(s); err != nil {
			if cfg.Socket != "" {
				errs = append(errs, err.Error())
			}
			continue
		}
		name, conn, err := dial(s)
		if err != nil {
			errs = append(errs, s+": "+err.Error())
			continue
		}
		r.socket, r.runtime, r.conn, r.rt = s, name, conn, cri.NewRuntimeServiceClient(conn)
		break
	}
	if r.rt == nil && r.why == "" {
		r.why = "no CRI socket answered (" + strings.Join(DefaultSockets, ", ") + ")"
		if len(errs) > 0 {
			r.why = strings.Join(errs, "; ")
		}
	}
	if r.rt != nil {
		go r.run()
	} else {
		close(r.done)
	}
	return r
}

// dial connects to a CRI socket and asks the runtime's name.
func dial(socket string) (string, *grpc.ClientConn, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	v, err := cri.NewRuntimeServiceClient(conn).Version(ctx, &cri.VersionRequest{})
	if err != nil {
		conn.Close()
		return "", nil, fmt.Errorf("CRI Version: %w", err)
	}
	return v.RuntimeName + " " + v.RuntimeVersion + " (CRI " + v.RuntimeApiVersion + ")", conn, nil
}

// Feature says which runtime answers, for bpfmon features.
func (r *Resolver) Feature() features.Feature {
	if r.rt == nil {
		return features.Feature{Name: "pod_metadata", Detail: r.why,
			Fallback: "the pod uid from the cgroup path (kubepods layout), without namespace or name"}
	}
	return features.Feature{Name: "pod_metadata", Available: true, Detail: r.runtime + " at " + r.socket}
}

// Close stops the lookups.
func (r *Resolver) Close() {
	if r.rt != nil {
		r.mu.Lock()
		r.closed = true
		close(r.queue)
		r.mu.Unlock()
		<-r.done
		r.conn.Close()
	}
}

// Pod returns the pod of the container, or nil outside one. It never
// waits: a container not looked up yet gets what its cgroup path says
// (the pod uid) while the runtime is asked.
func (r *Resolver) Pod(containerID, cgroup string) *event.Pod {
	if containerID == "" {
		return nil
	}
	r.mu.Lock()
	e, ok := r.cache[containerID]
	if ok && cgroup != e.cgroup {
		// The same container id in another cgroup: a child cgroup a
		// container made itself, or one named after another pod's
		// container. The answer holds only for the same pod uid.
		if c := fromCgroup(cgroup); c == nil || e.pod == nil || !strings.EqualFold(c.UID, e.pod.UID) {
			r.mu.Unlock()
			return c
		}
	}
	if ok && e.final {
		r.mu.Unlock()
		return e.pod
	}
	if !ok {
		e = entry{pod: fromCgroup(cgroup), cgroup: cgroup, final: r.rt == nil}
		r.put(containerID, e)
	}
	if !e.final && !r.closed && !r.pending[containerID] && time.Now().After(r.downUntil) {
		select {
		case r.queue <- containerID:
			r.pending[containerID] = true
		default:
		}
	}
	r.mu.Unlock()
	if !e.final && r.cfg.Miss != nil {
		r.cfg.Miss()
	}
	return e.pod
}

// put stores e, evicting the oldest container past the bound; r.mu held.
func (r *Resolver) put(id string, e entry) {
	if _, ok := r.cache[id]; !ok {
		if len(r.order) >= r.cfg.Cache {
			delete(r.cache, r.order[0])
			r.order = r.order[1:]
		}
		r.order = append(r.order, id)
	}
	r.cache[id] = e
}

// run answers the queued lookups.
func (r *Resolver) run() {
	defer close(r.done)
	for id := range r.queue {
		pod, err := r.lookup(id)
		r.mu.Lock()
		delete(r.pending, id)
		switch {
		case err == nil:
			e, ok := r.cache[id]
			switch {
			case !ok:
			case e.pod == nil || !strings.EqualFold(e.pod.UID, pod.UID):
				// The runtime's pod is not the one the kubelet's
				// cgroup path names (or it names none): a cgroup
				// named after another's container id. The cgroup's
				// answer stands, so that no process borrows another
				// pod's namespace (policy owners by pod).
				r.put(id, entry{pod: e.pod, cgroup: e.cgroup, final: true})
				if r.cfg.Log != nil {
					r.cfg.Log.Warn("pod lookup: the runtime's pod for the container is not the pod its cgroup path names; the cgroup's is kept",
						"part", "pods", "container", id, "cgroup", e.cgroup, "runtime_pod", pod.Namespace+"/"+pod.Name)
				}
			default:
				r.put(id, entry{pod: pod, cgroup: e.cgroup, final: true})
			}
		case status.Code(err) == codes.NotFound:
			// Not the runtime's container: keep the cgroup's answer.
			if e, ok := r.cache[id]; ok {
				r.put(id, entry{pod: e.pod, cgroup: e.cgroup, final: true})
			}
		default:
			r.downUntil = time.Now().Add(downFor)
			if r.cfg.Log != nil {
				r.cfg.Log.Warn("pod lookup failed; events name the pod uid from the cgroup path meanwhile",
					"part", "pods", "runtime", r.runtime, "error", err.Error())
			}
		}
		r.mu.Unlock()
	}
}

// lookup asks the runtime: ContainerStatus, then PodSandboxStatus.
func (r *Resolver) lookup(id string) (*event.Pod, error) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	cs, err := r.rt.ContainerStatus(ctx, &cri.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		return nil, err
	}
	sandbox := sandboxID(cs.Info)
	if sandbox == "" {
		// Not in the verbose info (a runtime that leaves it out): the
		// container list has it.
		l, err := r.rt.ListContainers(ctx, &cri.ListContainersRequest{Filter: &cri.ContainerFilter{Id: id}})
		if err != nil {
			return nil, err
		}
		if len(l.Containers) != 1 {
			return nil, status.Error(codes.NotFound, "container not listed")
		}
		sandbox = l.Containers[0].PodSandboxId
	}
	ps, err := r.rt.PodSandboxStatus(ctx, &cri.PodSandboxStatusRequest{PodSandboxId: sandbox})
	if err != nil {
		return nil, err
	}
	md := ps.GetStatus().GetMetadata()
	if md == nil {
		return nil, errors.New("PodSandboxStatus without metadata")
	}
	return &event.Pod{Namespace: md.Namespace, Name: md.Name, UID: md.Uid, Container: cs.GetStatus().GetMetadata().GetName()}, nil
}

// sandboxID is the sandbox id in ContainerStatus's verbose info
// (containerd and CRI-O both give "sandboxID").
func sandboxID(info map[string]string) string {
	var v struct {
		SandboxID string `json:"sandboxID"`
	}
	if json.Unmarshal([]byte(info["info"]), &v) != nil {
		return ""
	}
	return v.SandboxID
}

// fromCgroup is the pod uid in a cgroup path, nil if there is none: the
// kubelet's pod cgroup under kubepods, /kubepods/<qos>/pod<uid>/
// (cgroupfs) or kubepods-<qos>-pod<uid with _>.slice (systemd). Parsed by
// hand: it runs on the event path for every container seen first.
func fromCgroup(cgroup string) *event.Pod {
	i := strings.Index(cgroup, "kubepods")
	if i < 0 || (i > 0 && cgroup[i-1] != '/') {
		return nil
	}
	for rest := cgroup[i:]; rest != ""; {
		var seg string
		seg, rest, _ = strings.Cut(rest, "/")
		seg = strings.TrimSuffix(seg, ".slice")
		j := strings.LastIndex(seg, "pod")
		if j < 0 || (j > 0 && seg[j-1] != '-') || !isUID(seg[j+3:]) {
			continue
		}
		uid := seg[j+3:]
		if strings.IndexByte(uid, '_') >= 0 {
			uid = strings.ReplaceAll(uid, "_", "-")
		}
		return &event.Pod{UID: uid}
	}
	return nil
}

// isUID says whether s is a pod uid: 8-4-4-4-12 hex digits, the dashes
// written - or _ (systemd's slice names).
func isUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' && c != '_' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}
