package bench_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/thinpool/thinpool/bench"
)

// TestSnapshotMetadataWorkloads runs the snapshot and metadata workloads
// for real: as root, with THINPOOL_BENCH=1 and bin/thinctl built (go build
// -o bin/thinctl ./cmd/thinctl). It uses the quick configuration (origins
// of 1 and 10 GiB, 256 MiB mapped); THINPOOL_BENCH_FULL=1 uses the default
// one (origins up to 100 GiB, 4 GiB mapped, 3 runs). THINPOOL_BENCH_DIR
// sets where the work directory goes.
func TestSnapshotMetadataWorkloads(t *testing.T) {
	if os.Geteuid() != 0 || os.Getenv("THINPOOL_BENCH") != "1" {
		t.Skip("needs root and THINPOOL_BENCH=1")
	}
	thinctl, err := filepath.Abs("../bin/thinctl")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(thinctl); err != nil {
		t.Skip("no bin/thinctl: go build -o bin/thinctl ./cmd/thinctl")
	}
	cfg := bench.QuickConfig()
	if os.Getenv("THINPOOL_BENCH_FULL") == "1" {
		cfg = bench.DefaultConfig()
	}
	cfg.Workloads = []string{"snapshot", "metadata"}
	cfg.Thinctl = thinctl
	cfg.Log = os.Stderr
	if s := os.Getenv("THINPOOL_BENCH_DIR"); s != "" {
		cfg.Dir = s
	}
	start := time.Now()
	rep, err := bench.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("took %s", time.Since(start).Round(time.Second))
	var sum bytes.Buffer
	if err := rep.WriteSummary(&sum); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + sum.String())
	for _, tc := range []struct {
		table   string
		targets []string
	}{
		{"snapshot", []string{bench.TargetEngine, bench.TargetThinpool, bench.TargetQcow2, bench.TargetQcow2Int}},
		{"metadata", []string{bench.TargetEngine, bench.TargetDmThin}},
	} {
		tb := rep.Table(tc.table)
		if tb == nil {
			t.Fatalf("no table %s", tc.table)
		}
		if len(tb.Notes) > 0 {
			t.Errorf("%s: %v", tc.table, tb.Notes)
		}
		if len(tb.Rows) == 0 {
			t.Errorf("%s: no rows", tc.table)
		}
		for _, r := range tb.Rows {
			for _, tg := range tc.targets {
				if note := r.Notes[tg]; note != "" {
					t.Logf("%s %s %s: %s", tc.table, r.ID, tg, note)
				}
				if tg != bench.TargetEngine && rep.Target(tg).Skipped != "" {
					continue
				}
				if len(r.Samples[tg]) != cfg.Runs {
					t.Errorf("%s %s %s: %d samples, want %d (%s)", tc.table, r.ID, tg, len(r.Samples[tg]), cfg.Runs, r.Notes[tg])
				}
			}
		}
	}
}
