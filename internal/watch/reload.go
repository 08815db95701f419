package watch

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/bpfmon/bpfmon/internal/alert"
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/metrics"
	"github.com/bpfmon/bpfmon/internal/policy"
)

// reloader loads the policy again when asked (SIGHUP, Options.Reload).
// A policy that does not load (a syntax error, a file gone) leaves the
// one in force as it is: the error is logged with its FILE:LINE:COL,
// written as a part_error event (part policy) and counted. One that
// loads replaces the old one in one step (alert.Engine.Reload: which
// maps are protected, their owners, the rules, the rate limit and the
// enforcement maps), and a policy_reloaded event says what changed.
type reloader struct {
	opts      Options
	log       *slog.Logger
	alerts    *alert.Engine
	inventory func(inventory.Options) ([]inventory.Map, error)
	out       *sink
	sv        *supervisor
}

func (r *reloader) run(stop <-chan struct{}) {
	if r.opts.Reload == nil {
		return
	}
	for {
		select {
		case <-stop:
			return
		case <-r.opts.Reload:
			r.reload()
		}
	}
}

func (r *reloader) reload() {
	path := r.opts.PolicyPath
	if path == "" {
		r.log.Info("SIGHUP: no --policy to load again; the --protect flags stay as they are", "part", metrics.PartPolicy)
		return
	}
	pol, err := policy.Load(path)
	if err != nil {
		err = fmt.Errorf("reloading the policy failed, the policy in force stays: %w", err)
		r.log.Error(err.Error(), "part", metrics.PartPolicy)
		if m := r.opts.Metrics; m != nil {
			m.PartError(metrics.PartPolicy, err)
		}
		r.sv.event(r.out.writeNow, metrics.PartPolicy, err.Error())
		return
	}
	pol.AddProtect(r.opts.Protect...)
	// The maps pol may select, read now: a map created since the last
	// refresh is protected by the reload itself.
	maps, err := r.inventory(inventory.Options{SkipHolders: true})
	if err != nil {
		r.log.Warn("reloading the policy: reading the map inventory: "+err.Error()+"; maps it selects are protected at the next refresh", "part", metrics.PartPolicy)
	}
	changes := r.alerts.Reload(pol, maps)
	if m := r.opts.Metrics; m != nil {
		m.Rules(enabledRules(pol))
	}
	if changes == "" {
		changes = "no change"
	}
	r.log.Info("policy reloaded (SIGHUP)", "part", metrics.PartPolicy, "path", path, "changes", changes)
	logProtected(r.log, pol, r.alerts.Protected())
	_ = r.out.writeNow(&event.Event{Time: time.Now(), Type: event.PolicyReloaded, Source: event.SourceSelf, Path: path,
		Reason: "policy reloaded: " + changes})
}
