package daemon

import (
	"math"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/thinpool/thinpool/thinpool"
	"github.com/thinpool/thinpool/volumes"
)

// Low space, as LVM handles it: dmeventd warns when a thin pool's data or
// metadata use crosses 80%, 90% and 95%, and with
// thin_pool_autoextend_threshold and thin_pool_autoextend_percent set (see
// volumes.Autoextend) it extends the pool when use crosses the threshold.
//
// REF: https://man7.org/linux/man-pages/man7/lvmthin.7.html ("Automatically
// extend thin pool LV", "Thin pool usage monitoring").

// SpaceThresholds are the percentages of data or metadata use at which the
// daemon logs a warning, as dmeventd does: once per crossing, re-armed when
// use falls back below.
var SpaceThresholds = []float64{80, 90, 95}

// SpaceCheckPeriod is how often the daemon looks at the pool's use. A
// write that finds the pool full extends it at once (see thinDev.WriteAt).
const SpaceCheckPeriod = 250 * time.Millisecond

// spaceMonitor logs threshold crossings and applies the autoextend policy.
type spaceMonitor struct {
	pool *thinpool.Pool
	logf func(string, ...any)

	mu sync.Mutex // serialises checks and grows
	// grows counts the data area's autoextends, so that writes that found
	// the pool full together grow it once.
	grows uint64
	// level is how many of SpaceThresholds data and metadata use are at
	// or above, as last logged.
	dataLevel, metaLevel int
	// refused is set while an autoextend was refused (the host file system
	// is too full, or the metadata reserve is used up), so that it is
	// logged once, not on every check.
	dataRefused, metaRefused bool
	// policyErr is the last error reading the policy, logged once.
	policyErr string
}

func usePercent(used, total float64) float64 {
	if total <= 0 {
		return 0
	}
	return used * 100 / total
}

func level(pct float64) int {
	n := 0
	for _, t := range SpaceThresholds {
		if pct >= t {
			n++
		}
	}
	return n
}

// growCount returns how many times the data area has been autoextended.
func (s *spaceMonitor) growCount() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.grows
}

// check logs crossings and grows the pool as its policy says. It reports
// whether the data area grew.
func (s *spaceMonitor) check(full bool) bool { return s.checkAfter(full, math.MaxUint64) }

// checkAfter is check for a write that found no free block (full) after
// the data area had grown seen times: the data area then grows even if the
// periodic check has not yet seen the threshold crossed, unless it grew
// since (another write's grow came first).
func (s *spaceMonitor) checkAfter(full bool, seen uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if full && seen != math.MaxUint64 && s.grows != seen {
		return true
	}
	policy, err := volumes.ReadAutoextend(s.pool)
	switch {
	case err != nil && err.Error() != s.policyErr:
		s.logf("autoextend: read the pool's policy: %v", err)
		s.policyErr = err.Error()
	case err == nil:
		s.policyErr = ""
	}
	u := s.pool.Usage()
	dataPct := usePercent(float64(u.UsedBlocks), float64(u.DataBlocks))
	metaPct := usePercent(float64(u.MetadataState), float64(u.MetadataLimit))
	s.dataLevel = s.warn("data", dataPct, s.dataLevel)
	s.metaLevel = s.warn("metadata", metaPct, s.metaLevel)
	if !policy.Enabled() {
		return false
	}
	grew := false
	if full || dataPct >= float64(policy.Threshold) {
		grew = s.growData(u, policy)
	} else {
		s.dataRefused = false
	}
	if metaPct >= float64(policy.Threshold) {
		s.growMetadata(u, policy)
	} else {
		s.metaRefused = false
	}
	if grew {
		u = s.pool.Usage()
		s.dataLevel = s.warn("data", usePercent(float64(u.UsedBlocks), float64(u.DataBlocks)), s.dataLevel)
	}
	return grew
}

// warn logs when use crosses a threshold upwards, and notes when it falls
// back below one (which re-arms it). It returns the new level.
func (s *spaceMonitor) warn(what string, pct float64, was int) int {
	now := level(pct)
	switch {
	case now > was:
		s.logf("WARNING: pool %s %s space is now %.2f%% full (crossed %.0f%%)", s.pool.Path(), what, pct, SpaceThresholds[now-1])
	case now < was:
		s.logf("pool %s %s space is now %.2f%% full, below %.0f%% again", s.pool.Path(), what, pct, SpaceThresholds[now])
	}
	return now
}

// growData grows the data area by policy.Percent of its size, as many
// times as it takes to bring use below the threshold, if the host file
// system that holds the pool file has that much room.
func (s *spaceMonitor) growData(u thinpool.Usage, policy volumes.Autoextend) bool {
	bs := u.BlockSize
	cur := int64(u.DataBlocks) * bs
	target := cur
	for {
		step := max(bs, (target/100*int64(policy.Percent)+bs-1)/bs*bs)
		if target > math.MaxInt64/4-step {
			break
		}
		target += step
		if usePercent(float64(u.UsedBlocks), float64(target/bs)) < float64(policy.Threshold) {
			break
		}
	}
	grow := target - cur
	if grow <= 0 {
		return false
	}
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(s.pool.Path()), &st); err != nil {
		if !s.dataRefused {
			s.logf("autoextend: cannot grow pool %s: statfs of its file system: %v", s.pool.Path(), err)
		}
		s.dataRefused = true
		return false
	}
	if free := int64(st.Bavail) * st.Bsize; free < grow {
		if !s.dataRefused {
			s.logf("autoextend: cannot grow pool %s by %d bytes: its file system has only %d bytes free", s.pool.Path(), grow, free)
		}
		s.dataRefused = true
		return false
	}
	if err := s.pool.Grow(target); err != nil {
		if !s.dataRefused {
			s.logf("autoextend: grow pool %s to %d bytes: %v", s.pool.Path(), target, err)
		}
		s.dataRefused = true
		return false
	}
	s.dataRefused = false
	s.grows++
	s.logf("autoextend: grew pool %s data space from %d to %d bytes (+%d%% as many times as needed; %d of %d blocks used)",
		s.pool.Path(), cur, target, policy.Percent, u.UsedBlocks, target/bs)
	return true
}

// growMetadata grows the metadata area by policy.Percent, up to the
// reserve fixed when the pool was created.
func (s *spaceMonitor) growMetadata(u thinpool.Usage, policy volumes.Autoextend) {
	step := (u.MetadataSize*int64(policy.Percent)/100 + 4095) &^ 4095
	target := min(u.MetadataReserve, u.MetadataSize+max(4096, step)) &^ 4095
	if target <= u.MetadataSize {
		if !s.metaRefused {
			s.logf("autoextend: cannot grow pool %s metadata: its area (%d bytes) is at the reserve fixed at creation", s.pool.Path(), u.MetadataSize)
		}
		s.metaRefused = true
		return
	}
	if err := s.pool.GrowMetadata(target); err != nil {
		if !s.metaRefused {
			s.logf("autoextend: grow pool %s metadata to %d bytes: %v", s.pool.Path(), target, err)
		}
		s.metaRefused = true
		return
	}
	s.metaRefused = false
	s.logf("autoextend: grew pool %s metadata area from %d to %d bytes", s.pool.Path(), u.MetadataSize, target)
}
