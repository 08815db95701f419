// Package sensors assembles bpfmon's sensors: which ones there are, in
// which order they start, and how much each is needed. It is the one
// place `bpfmon watch` and `bpfmon features` get them from, so what
// features reports is what watch runs.
package sensors

import (
	"github.com/bpfmon/bpfmon/internal/sensor"
	"github.com/bpfmon/bpfmon/internal/sensor/bpfsyscall"
	"github.com/bpfmon/bpfmon/internal/sensor/kernelwrite"
	"github.com/bpfmon/bpfmon/internal/sensor/lineage"
	"github.com/bpfmon/bpfmon/internal/sensor/lsm"
	"github.com/bpfmon/bpfmon/internal/sensor/netattach"
)

// Config configures the set.
type Config struct {
	Syscall bpfsyscall.Config
	Kernel  kernelwrite.Config
	// Enforce starts the enforcement sensor, and requires it.
	Enforce bool
	// Probe starts every sensor, none of them required: to report what
	// each gives on this kernel (bpfmon features).
	Probe bool
}

// New returns the set, not started. Each line registers a sensor; a
// sensor may use what the ones before it put in the sensor.Env (the LSM
// sensor, the syscall sensor's map file calibration).
func New(c Config) *sensor.Set {
	return sensor.NewSet(
		c.entry(bpfsyscall.New(c.Syscall), sensor.Required),
		c.entry(lineage.New(), sensor.Optional),
		c.entry(netattach.New(), sensor.Optional),
		c.entry(kernelwrite.New(c.Kernel), c.Kernel.Mode.Need()),
		c.entry(lsm.New(), c.enforce()),
	)
}

func (c Config) entry(s sensor.Sensor, need sensor.Need) sensor.Entry {
	if c.Probe {
		need = sensor.Optional
	}
	return sensor.Entry{Sensor: s, Need: need}
}

func (c Config) enforce() sensor.Need {
	if c.Enforce {
		return sensor.Required
	}
	return sensor.Off
}

// Syscall, Kernel and Enforcer return the set's running sensors of each
// kind, nil when that one is not running.
func Syscall(s *sensor.Set) *bpfsyscall.Sensor {
	x, _ := s.Started(bpfsyscall.Name).(*bpfsyscall.Sensor)
	return x
}

// Kernel: see Syscall.
func Kernel(s *sensor.Set) *kernelwrite.Sensor {
	x, _ := s.Started(kernelwrite.Name).(*kernelwrite.Sensor)
	return x
}

// Enforcer: see Syscall.
func Enforcer(s *sensor.Set) *lsm.Sensor {
	x, _ := s.Started(lsm.Name).(*lsm.Sensor)
	return x
}
