package bench

import (
	"slices"
	"strings"
	"testing"
)

func TestGoals(t *testing.T) {
	row := func(id string, x float64, s map[string][]float64) *Row {
		return &Row{ID: id, Title: id, X: x, Samples: s}
	}
	rep := &Report{Tables: []*Table{
		{ID: "fio-seq", Title: "seq", Rows: []*Row{
			row("w", 0, map[string][]float64{TargetThinpool: {80, 90, 100}, TargetPlain: {100, 100, 100}, TargetQcow2: {50}}),
			row("r", 0, map[string][]float64{TargetThinpool: {60}, TargetPlain: {100}, TargetQcow2: {70}}),
		}},
		{ID: "depth-seq", Title: "depth", Rows: []*Row{
			row("d1", 1, map[string][]float64{TargetThinpool: {100}}),
			row("d100", 100, map[string][]float64{TargetThinpool: {95}}),
		}},
		{ID: "snapshot", Title: "snap", Lower: true, Rows: []*Row{
			row("1", 1, map[string][]float64{TargetThinpool: {5}}),
			row("100", 100, map[string][]float64{TargetThinpool: {9}}),
		}},
		{ID: "container", Title: "ct", Lower: true, Rows: []*Row{
			row("modify", 0, map[string][]float64{TargetThinpool: {2}, TargetOverlayfs: {1000}}),
		}},
		{ID: "metadata", Title: "md", Lower: true, Rows: []*Row{
			row("seq", 0, map[string][]float64{TargetEngine: {10}, TargetDmThin: {100}}),
			row("snap", 0, map[string][]float64{TargetEngine: {200}, TargetDmThin: {100}}),
		}},
	}}
	goals := Goals(rep)
	want := map[string]struct {
		checks int
		met    bool
	}{
		"thinpool's loop device ≥ 0.7": {2, false}, // 0.9× and 0.6× of plain: the read misses
		"thinpool's loop device ≥ 1.0": {2, false}, // 90/50 and 60/70: the read misses
		"first-write IOPS into a snap": {0, false}, // no table: not measured
		"read throughput at the deepe": {1, true},  // 95/100
		"snapshot creation flat in or": {1, false}, // 9/5 = 1.8× > 1.5×
		"4 KiB modify of a 1 GiB imag": {1, true},  // 500×
		"metadata per mapped block ≤ ": {2, false}, // the snapshot row is twice dm-thin
	}
	for k, w := range want {
		i := slices.IndexFunc(goals, func(g Goal) bool { return strings.HasPrefix(g.Text, k) })
		if i < 0 {
			t.Fatalf("no goal starting %q", k)
		}
		g := goals[i]
		if len(g.Checks) != w.checks || g.Met() != w.met {
			t.Errorf("%s: %d checks, met %v; want %d, %v (%+v)", g.Text, len(g.Checks), g.Met(), w.checks, w.met, g.Checks)
		}
	}
	lines := strings.Join(GoalSummary(Goals(rep)), "\n")
	for _, s := range []string{"NOT met: thinpool's loop device ≥ 0.7×", "not measured: first-write", "met: 4 KiB modify", "seq: r 0.86×"} {
		if !strings.Contains(lines, s) {
			t.Errorf("summary lacks %q:\n%s", s, lines)
		}
	}
}
