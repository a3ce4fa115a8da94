package bench

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Goal is one of the targets the project set itself (issue 6), checked
// against a report.
type Goal struct {
	Text string // the goal
	// Checks are the measured values the goal is judged on, one per row
	// or pair of rows.
	Checks []Check
}

// Check is one measured comparison.
type Check struct {
	What  string  // the row(s) compared
	Value float64 // the measured ratio
	Want  string  // the condition, e.g. "≥ 0.7×"
	Met   bool
}

// Met reports whether every check passed (false if there was none).
func (g Goal) Met() bool {
	if len(g.Checks) == 0 {
		return false
	}
	for _, c := range g.Checks {
		if !c.Met {
			return false
		}
	}
	return true
}

// Goals checks the project's goals against rep: each is judged on the
// medians of thinpool's loop device (the snapshot goal also on the engine;
// the metadata goal on the engine, the only target with metadata). A goal
// without the tables it needs has no checks.
func Goals(rep *Report) []Goal {
	atLeast := func(g *Goal, t *Table, ref string, min float64) {
		if t == nil {
			return
		}
		for _, r := range t.Rows {
			x := t.Ratio(r, TargetThinpool, ref)
			if math.IsNaN(x) {
				continue
			}
			g.Checks = append(g.Checks, Check{What: t.Title + ": " + r.Title, Value: x, Want: fmt.Sprintf("≥ %.1f×", min), Met: x >= min})
		}
	}
	var goals []Goal

	g := Goal{Text: "thinpool's loop device ≥ 0.7× the plain loop device for sequential I/O"}
	atLeast(&g, rep.Table("fio-seq"), TargetPlain, 0.7)
	goals = append(goals, g)

	g = Goal{Text: "thinpool's loop device ≥ 1.0× qcow2 on every fio workload"}
	atLeast(&g, rep.Table("fio-seq"), TargetQcow2, 1)
	atLeast(&g, rep.Table("fio-rand"), TargetQcow2, 1)
	goals = append(goals, g)

	g = Goal{Text: "first-write IOPS into a snapshot ≥ 1.5× the qcow2 overlay"}
	atLeast(&g, rep.Table("firstwrite"), TargetQcow2, 1.5)
	goals = append(goals, g)

	g = Goal{Text: "read throughput at the deepest snapshot within 10% of depth 1"}
	for _, id := range []string{"depth-seq", "depth-rand"} {
		t := rep.Table(id)
		if t == nil || len(t.Rows) < 2 {
			continue
		}
		first, last := t.Rows[0].Stats(TargetThinpool), t.Rows[len(t.Rows)-1].Stats(TargetThinpool)
		if first.N == 0 || last.N == 0 {
			continue
		}
		x := last.Median / first.Median
		g.Checks = append(g.Checks, Check{What: fmt.Sprintf("%s: %s vs %s", t.Title, t.Rows[len(t.Rows)-1].Title, t.Rows[0].Title), Value: x, Want: "≥ 0.9×", Met: x >= 0.9})
	}
	goals = append(goals, g)

	g = Goal{Text: "snapshot creation flat in origin size (largest origin within 1.5× of the smallest)"}
	if t := rep.Table("snapshot"); t != nil && len(t.Rows) >= 2 {
		for _, tg := range []string{TargetThinpool, TargetEngine} {
			first, last := t.Rows[0].Stats(tg), t.Rows[len(t.Rows)-1].Stats(tg)
			if first.N == 0 || last.N == 0 {
				continue
			}
			x := last.Median / first.Median
			g.Checks = append(g.Checks, Check{What: fmt.Sprintf("%s: %s, %s vs %s", t.Title, tg, t.Rows[len(t.Rows)-1].Title, t.Rows[0].Title), Value: x, Want: "≤ 1.5×", Met: x <= 1.5})
		}
	}
	goals = append(goals, g)

	g = Goal{Text: "4 KiB modify of a 1 GiB image file ≥ 100× faster than overlayfs copy-up"}
	if t := rep.Table("container"); t != nil {
		if r := t.Row("modify"); r != nil {
			if x := t.Ratio(r, TargetThinpool, TargetOverlayfs); !math.IsNaN(x) {
				g.Checks = append(g.Checks, Check{What: t.Title + ": " + r.Title, Value: x, Want: "≥ 100×", Met: x >= 100})
			}
		}
	}
	goals = append(goals, g)

	g = Goal{Text: "metadata per mapped block ≤ dm-thin's estimate"}
	if t := rep.Table("metadata"); t != nil {
		for _, r := range t.Rows {
			if x := t.Ratio(r, TargetEngine, TargetDmThin); !math.IsNaN(x) {
				g.Checks = append(g.Checks, Check{What: t.Title + ": " + r.Title, Value: x, Want: "≥ 1.0× (dm-thin / ours)", Met: x >= 1})
			}
		}
	}
	goals = append(goals, g)
	return goals
}

// GoalSummary is one line per goal: met, not met (with the checks that
// failed) or not measured.
func GoalSummary(goals []Goal) []string {
	var lines []string
	for _, g := range goals {
		switch {
		case len(g.Checks) == 0:
			lines = append(lines, "not measured: "+g.Text)
		case g.Met():
			lo := slices.MinFunc(g.Checks, func(a, b Check) int { return cmp.Compare(a.Value, b.Value) })
			hi := slices.MaxFunc(g.Checks, func(a, b Check) int { return cmp.Compare(a.Value, b.Value) })
			r := FormatRatio(lo.Value)
			if hi.Value != lo.Value {
				r += " to " + FormatRatio(hi.Value)
			}
			lines = append(lines, fmt.Sprintf("met: %s (%s)", g.Text, r))
		default:
			var miss []string
			for _, c := range g.Checks {
				if !c.Met {
					miss = append(miss, fmt.Sprintf("%s %s", c.What, FormatRatio(c.Value)))
				}
			}
			lines = append(lines, fmt.Sprintf("NOT met: %s — %s", g.Text, strings.Join(miss, "; ")))
		}
	}
	return lines
}
