// Read-rate limiting for the content scanner: a token bucket in bytes per
// second that delays reads and never skips them.

package scanner

import (
	"sync"
	"time"
)

// Limiter is a token bucket in bytes per second. Reader.Read calls Wait
// before it hands each batch to its callback, so a limited scan reads every
// element of every map and a big map simply takes longer. A nil *Limiter
// means unlimited. It is safe for concurrent use: waiters share the rate.
type Limiter struct {
	mu     sync.Mutex
	rate   float64 // bytes per second
	burst  float64 // bucket size in bytes
	tokens float64 // may go negative: a debt the next waiter sleeps off
	last   time.Time
}

// minBurst is the smallest bucket, so that a low rate still lets a whole
// batch through in one step instead of stalling per element.
const minBurst = 4096

// NewLimiter returns a limiter that allows bytesPerSec bytes per second on
// average, with bursts of up to a tenth of a second's worth (at least 4 KiB).
// It returns nil, which means unlimited, if bytesPerSec is 0 or negative.
func NewLimiter(bytesPerSec int64) *Limiter {
	if bytesPerSec <= 0 {
		return nil
	}
	rate := float64(bytesPerSec)
	burst := max(rate/10, minBurst)
	return &Limiter{rate: rate, burst: burst, tokens: burst, last: time.Now()}
}

// Wait blocks until n more bytes may be read. A request larger than the
// bucket is not refused: the caller waits for as long as n bytes take at the
// configured rate. On a nil receiver, or for n <= 0, it returns at once.
func (l *Limiter) Wait(n int) {
	if l == nil || n <= 0 {
		return
	}
	l.mu.Lock()
	now := time.Now()
	l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	l.last = now
	l.tokens -= float64(n)
	var d time.Duration
	if l.tokens < 0 {
		d = time.Duration(-l.tokens / l.rate * float64(time.Second))
	}
	l.mu.Unlock()
	if d > 0 {
		time.Sleep(d)
	}
}
