package daemon

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/thinpool/thinpool/thinpool"
	"github.com/thinpool/thinpool/volumes"
)

// logRecorder collects what the space monitor logs.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *logRecorder) logf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, fmt.Sprintf(format, args...))
}

// take returns the lines logged since the last take.
func (r *logRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.lines
	r.lines = nil
	return l
}

func mustCreatePool(t *testing.T, size int64) *thinpool.Pool {
	t.Helper()
	p, err := thinpool.Create(filepath.Join(t.TempDir(), "pool.img"), thinpool.Options{DataSize: size})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r, err := p.Check()
		if err != nil || len(r.Errors) > 0 || len(r.Leaks) > 0 {
			t.Errorf("check: %v %+v", err, r)
		}
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

const blk = 64 << 10

// TestSpaceWarnings: crossing 80, 90 and 95% is logged once each, and
// falling back below re-arms the warning, as dmeventd does.
func TestSpaceWarnings(t *testing.T) {
	p := mustCreatePool(t, 100*blk)
	d, err := p.CreateThin("a", 100*blk, nil)
	if err != nil {
		t.Fatal(err)
	}
	var log logRecorder
	s := &spaceMonitor{pool: p, logf: log.logf}
	fill := func(blocks int) {
		t.Helper()
		if _, err := d.WriteAt(make([]byte, blocks*blk), 0); err != nil {
			t.Fatal(err)
		}
		if err := d.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		blocks int
		want   []string // substrings, one per line logged
	}{
		{79, nil},
		{80, []string{"data space is now 80.00% full (crossed 80%)"}},
		{85, nil}, // once per crossing
		{96, []string{"data space is now 96.00% full (crossed 95%)"}},
		{96, nil},
	}
	for _, st := range steps {
		fill(st.blocks)
		if grew := s.check(false); grew {
			t.Fatal("grew without a policy")
		}
		got := log.take()
		if len(got) != len(st.want) {
			t.Fatalf("at %d%%: logged %q, want %q", st.blocks, got, st.want)
		}
		for i := range got {
			if !strings.Contains(got[i], st.want[i]) || !strings.HasPrefix(got[i], "WARNING: pool ") {
				t.Fatalf("at %d%%: logged %q, want %q", st.blocks, got[i], st.want[i])
			}
		}
	}
	if err := p.Delete("a"); err != nil {
		t.Fatal(err)
	}
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	s.check(false)
	if got := log.take(); len(got) != 1 || !strings.Contains(got[0], "below 80% again") {
		t.Fatalf("after emptying: %q", got)
	}
	d, err = p.CreateThin("a", 100*blk, nil)
	if err != nil {
		t.Fatal(err)
	}
	fill(81)
	s.check(false)
	if got := log.take(); len(got) != 1 || !strings.Contains(got[0], "crossed 80%") {
		t.Fatalf("re-armed warning: %q", got)
	}
}

// TestAutoextend: past the threshold the pool grows by the percent, as
// often as needed to go below it; a write that finds the pool full grows
// it and succeeds.
func TestAutoextend(t *testing.T) {
	p := mustCreatePool(t, 100*blk)
	if err := volumes.SetAutoextend(p, volumes.Autoextend{Threshold: 80, Percent: 20}); err != nil {
		t.Fatal(err)
	}
	d, err := p.CreateThin("a", 1000*blk, nil)
	if err != nil {
		t.Fatal(err)
	}
	var log logRecorder
	s := &spaceMonitor{pool: p, logf: log.logf}
	if _, err := d.WriteAt(make([]byte, 79*blk), 0); err != nil {
		t.Fatal(err)
	}
	if s.check(false) || p.Usage().DataBlocks != 100 {
		t.Fatalf("grew below the threshold: %d blocks", p.Usage().DataBlocks)
	}
	if _, err := d.WriteAt(make([]byte, blk), 79*blk); err != nil {
		t.Fatal(err)
	}
	if !s.check(false) {
		t.Fatalf("did not grow at 80%%: %q", log.take())
	}
	if got := p.Usage().DataBlocks; got != 120 {
		t.Fatalf("grew to %d blocks, want 120 (+20%%)", got)
	}
	logged := strings.Join(log.take(), "\n")
	if !strings.Contains(logged, "crossed 80%") || !strings.Contains(logged, "autoextend: grew pool") {
		t.Fatalf("log:\n%s", logged)
	}

	// A write the pool has no room for: through thinDev it grows the pool.
	dev := thinDev{t: d, space: s}
	big := make([]byte, 60*blk)
	if _, err := d.WriteAt(big, 100*blk); !errors.Is(err, thinpool.ErrNoSpace) {
		t.Fatalf("direct write past the pool: %v, want ErrNoSpace", err)
	}
	if _, err := dev.WriteAt(big, 100*blk); err != nil {
		t.Fatalf("write through thinDev: %v", err)
	}
	if got := p.Usage().DataBlocks; got != 144 {
		t.Fatalf("the full write grew the pool to %d blocks, want 144 (+20%% once)", got)
	}
	s.check(false) // 140 of 144 used: the periodic check grows again
	u := p.Usage()
	if pct := usePercent(float64(u.UsedBlocks), float64(u.DataBlocks)); pct >= 80 {
		t.Fatalf("after growing: %d of %d blocks used (%.0f%%)", u.UsedBlocks, u.DataBlocks, pct)
	}

	// Autoextend off: a full pool stays full.
	if err := volumes.SetAutoextend(p, volumes.Autoextend{}); err != nil {
		t.Fatal(err)
	}
	n := u.DataBlocks
	if _, err := dev.WriteAt(make([]byte, int(n-u.UsedBlocks+1)*blk), 200*blk); !errors.Is(err, thinpool.ErrNoSpace) {
		t.Fatalf("with autoextend off: %v, want ErrNoSpace", err)
	}
	if p.Usage().DataBlocks != n {
		t.Fatalf("grew with autoextend off")
	}
}

// TestAutoextendNoHostRoom: the pool does not grow past what its host file
// system can hold, and says so once.
func TestAutoextendNoHostRoom(t *testing.T) {
	p := mustCreatePool(t, 100*blk)
	// 1000% of a fifth of the free space cannot fit.
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(p.Path()), &st); err != nil {
		t.Fatal(err)
	}
	if err := p.Grow(max(200*blk, int64(st.Bavail)*st.Bsize/5/blk*blk)); err != nil {
		t.Fatal(err)
	}
	if err := volumes.SetAutoextend(p, volumes.Autoextend{Threshold: 50, Percent: 1000}); err != nil {
		t.Fatal(err)
	}
	var log logRecorder
	s := &spaceMonitor{pool: p, logf: log.logf}
	u := p.Usage()
	for try := range 2 { // the second try must neither grow nor log again
		if s.growData(u, volumes.Autoextend{Threshold: 50, Percent: 1000}) {
			t.Fatalf("try %d grew past the host's free space", try)
		}
	}
	if got := log.take(); len(got) != 1 || !strings.Contains(got[0], "its file system has only") {
		t.Fatalf("log %q", got)
	}
}

// TestAutoextendMetadata: metadata use past the threshold is logged and
// grows the metadata area by the percent, up to its reserve.
func TestAutoextendMetadata(t *testing.T) {
	p, err := thinpool.Create(filepath.Join(t.TempDir(), "pool.img"), thinpool.Options{DataSize: 100 * blk, MetadataSize: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := volumes.SetAutoextend(p, volumes.Autoextend{Threshold: 80, Percent: 50}); err != nil {
		t.Fatal(err)
	}
	var log logRecorder
	s := &spaceMonitor{pool: p, logf: log.logf}
	big := strings.Repeat("x", 32<<10)
	for i := 0; ; i++ {
		u := p.Usage()
		if usePercent(float64(u.MetadataState), float64(u.MetadataLimit)) >= 81 {
			break
		}
		if _, err := p.CreateThin(fmt.Sprintf("d%d", i), blk, map[string]string{"big": big}); err != nil {
			t.Fatalf("device %d: %v (metadata %d of %d)", i, err, u.MetadataState, u.MetadataLimit)
		}
	}
	before := p.Usage()
	s.check(false)
	after := p.Usage()
	logged := strings.Join(log.take(), "\n")
	if after.MetadataSize != before.MetadataSize+before.MetadataSize/2 {
		t.Fatalf("metadata area %d -> %d, want +50%%\n%s", before.MetadataSize, after.MetadataSize, logged)
	}
	if !strings.Contains(logged, "metadata space is now") || !strings.Contains(logged, "autoextend: grew pool "+p.Path()+" metadata area from") {
		t.Fatalf("log:\n%s", logged)
	}
	if after.DataBlocks != before.DataBlocks {
		t.Fatalf("metadata use grew the data area")
	}
	r, err := p.Check()
	if err != nil || len(r.Errors) > 0 {
		t.Fatalf("check: %v %+v", err, r)
	}
}

// TestAutoextendPolicyNotOurs: a device of the user's that happens to be
// called thinpool.config is not taken for the policy, is not overwritten,
// and the daemon says so once, not on every check.
func TestAutoextendPolicyNotOurs(t *testing.T) {
	p := mustCreatePool(t, 100*blk)
	if _, err := p.CreateThin("thinpool.config", blk, map[string]string{"mine": "yes"}); err != nil {
		t.Fatal(err)
	}
	if err := volumes.SetAutoextend(p, volumes.Autoextend{Threshold: 80, Percent: 20}); err == nil {
		t.Fatal("SetAutoextend took over a device of the user's")
	}
	if d, _ := p.Device("thinpool.config"); d.Info().Labels["mine"] != "yes" || len(d.Info().Labels) != 1 {
		t.Fatalf("labels %v", d.Info().Labels)
	}
	var log logRecorder
	s := &spaceMonitor{pool: p, logf: log.logf}
	for range 3 {
		if s.check(false) {
			t.Fatal("grew")
		}
	}
	if got := log.take(); len(got) != 1 || !strings.Contains(got[0], `device "thinpool.config" exists but is not the pool's configuration`) {
		t.Fatalf("log %q", got)
	}
}
