package bench

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// ours are the targets the ratios are taken of; refs the ones they are
// taken against, when a table has them.
var (
	ours = []string{TargetThinpool, TargetEngine}
	refs = []string{TargetPlain, TargetQcow2, TargetOverlayfs, TargetDmThin}
)

// Columns returns the targets that have a value or a note in t, in the
// report's target order.
func (r *Report) Columns(t *Table) []string {
	var cols []string
	for _, tg := range r.Targets {
		for _, row := range t.Rows {
			if len(row.Samples[tg.ID]) > 0 || row.Notes[tg.ID] != "" {
				cols = append(cols, tg.ID)
				break
			}
		}
	}
	return cols
}

// RatioColumns returns the pairs (ours, ref) whose ratio t shows: each of
// thinpool and engine that has values against each reference that has.
func (r *Report) RatioColumns(t *Table) [][2]string {
	has := func(id string) bool {
		for _, row := range t.Rows {
			if len(row.Samples[id]) > 0 {
				return true
			}
		}
		return false
	}
	var pairs [][2]string
	for _, o := range ours {
		if !has(o) {
			continue
		}
		for _, ref := range refs {
			if has(ref) {
				pairs = append(pairs, [2]string{o, ref})
			}
		}
	}
	return pairs
}

// WriteSummary prints every table as aligned text: the medians of each
// target and the ratios of thinpool (and the engine) against the
// references. It is what thinctl bench prints.
func (r *Report) WriteSummary(w io.Writer) error {
	for _, t := range r.Tables {
		better := "higher is better"
		if t.Lower {
			better = "lower is better"
		}
		fmt.Fprintf(w, "%s (%s, %s)\n", t.Title, t.Unit, better)
		for _, n := range t.Notes {
			fmt.Fprintf(w, "  %s\n", n)
		}
		if len(t.Rows) == 0 {
			fmt.Fprintln(w)
			continue
		}
		cols, pairs := r.Columns(t), r.RatioColumns(t)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		head := append([]string{""}, cols...)
		for _, p := range pairs {
			head = append(head, shortName(p[0])+"/"+shortName(p[1]))
		}
		fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
		for _, row := range t.Rows {
			cells := []string{row.Title}
			for _, c := range cols {
				s := row.Stats(c)
				if s.N == 0 {
					cells = append(cells, "–")
					continue
				}
				cells = append(cells, FormatValue(s.Median))
			}
			for _, p := range pairs {
				cells = append(cells, FormatRatio(t.Ratio(row, p[0], p[1])))
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "Goals")
	for _, line := range GoalSummary(Goals(r)) {
		fmt.Fprintf(w, "  %s\n", line)
	}
	return nil
}

func shortName(id string) string {
	switch id {
	case TargetThinpool:
		return "thin"
	case TargetOverlayfs:
		return "overlay"
	}
	return id
}

// FormatValue prints a measurement with three significant digits, and
// thousands as "12.3k".
func FormatValue(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.3gk", v/1e3)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// FormatRatio prints a ratio as "1.23×" ("–" when there is none).
func FormatRatio(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "–"
	}
	if x >= 100 {
		return fmt.Sprintf("%.0f×", x)
	}
	return fmt.Sprintf("%.2f×", x)
}
