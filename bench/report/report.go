// Package report renders a *bench.Report as markdown (REPORT.md) with SVG
// plots beside it.
//
// The report shows every table of the harness in its own section: a cell
// per target with the median of the runs and their range, and ratio
// columns of thinpool (and of its engine) against each reference target.
// Tables whose XLabel is set are series and get a line plot; the
// first-write table gets a bar chart. Nothing in the report is hard-coded
// to the harness's numbers: tables, rows and targets are whatever the
// report holds.
//
// The functions do not modify the report; they are safe to call
// concurrently on the same report.
package report

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/thinpool/thinpool/bench"
)

// File is the name of the markdown file Write makes.
const File = "REPORT.md"

// ours are the targets compared against the others, in column order.
var ours = []string{bench.TargetThinpool, bench.TargetEngine}

// Write writes REPORT.md and the plots of rep into dir, which must exist.
func Write(rep *bench.Report, dir string) error {
	plots, err := Plots(rep, dir)
	if err != nil {
		return err
	}
	md := Markdown(rep, plots)
	if err := os.WriteFile(filepath.Join(dir, File), []byte(md), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// Markdown renders rep. plots are the file names of the plots made by
// Plots; each is linked, relative to the markdown file, in its table's
// section.
func Markdown(rep *bench.Report, plots []string) string {
	var b strings.Builder
	writeHeader(&b, rep)
	writeHeadline(&b, rep)
	writeGoals(&b, rep)
	writeTargets(&b, rep)
	for _, t := range rep.Tables {
		writeTable(&b, rep, t, plots)
	}
	return b.String()
}

// writeHeader writes the title, how the report was made, and where.
func writeHeader(b *strings.Builder, rep *bench.Report) {
	b.WriteString("# thinpool benchmarks\n\n")
	b.WriteString("Produced by `make bench` (after `make bench-deps` installed the tools the reference targets need): " +
		"`thinctl bench` ran every workload against every target in the same work directory and wrote `results.json`, " +
		"and `go run ./bench/cmd/benchreport` rendered this file and its plots from it. " +
		"Each cell is the median of the runs, with the lowest and highest run in brackets. " +
		"A ratio says how many times better thinpool did than a reference: above 1× thinpool is better, " +
		"also for the tables where lower is better (there the ratio is reference / thinpool). " +
		"It is the ratio of the medians; in brackets, the lowest and highest ratio within one run.\n\n")

	fmt.Fprintf(b, "- **Date:** %s\n", dateRange(rep.Started, rep.Finished))
	if rep.Commit != "" {
		fmt.Fprintf(b, "- **Commit:** %s\n", rep.Commit)
	}
	if rep.Command != "" {
		fmt.Fprintf(b, "- **Command:** `%s`\n", rep.Command)
	}
	fmt.Fprintf(b, "- **Machine:** %s\n", machine(rep.Machine))
	if len(rep.Machine.Tools) > 0 {
		b.WriteString("- **Tools:**\n")
		for _, tool := range slices.Sorted(maps.Keys(rep.Machine.Tools)) {
			fmt.Fprintf(b, "  - %s: `%s`\n", tool, rep.Machine.Tools[tool])
		}
	}
	fmt.Fprintf(b, "- **Configuration:** %s\n\n", config(rep.Config))
}

// dateRange formats the start and end of the run, with its duration.
func dateRange(start, end time.Time) string {
	switch {
	case start.IsZero():
		return "unknown"
	case end.IsZero() || end.Before(start):
		return start.Format(time.RFC3339) + " (unfinished)"
	}
	return fmt.Sprintf("%s – %s (%s)", start.Format(time.RFC3339), end.Format(time.RFC3339), end.Sub(start).Round(time.Second))
}

// machine describes m in one line.
func machine(m bench.Machine) string {
	var parts []string
	add := func(format string, args ...any) { parts = append(parts, fmt.Sprintf(format, args...)) }
	if m.Kernel != "" {
		add("Linux %s", m.Kernel)
	}
	if m.CPU != "" {
		add("%s", m.CPU)
	}
	if m.Cores > 0 {
		add("%d cores", m.Cores)
	}
	if m.MemoryB > 0 {
		add("%s RAM", humanize.IBytes(uint64(m.MemoryB)))
	}
	s := strings.Join(parts, ", ")
	var more []string
	if m.WorkDir != "" || m.WorkFS != "" {
		w := "work directory"
		if m.WorkDir != "" {
			w += " " + m.WorkDir
		}
		if m.WorkFS != "" {
			w += " on " + m.WorkFS
		}
		more = append(more, w)
	}
	if m.LoadAvg[0] != "" || m.LoadAvg[1] != "" {
		more = append(more, fmt.Sprintf("load average %s at the start, %s at the end", orDash(m.LoadAvg[0]), orDash(m.LoadAvg[1])))
	}
	if m.GoVersion != "" {
		more = append(more, m.GoVersion)
	}
	if len(more) > 0 {
		if s != "" {
			s += "; "
		}
		s += strings.Join(more, "; ")
	}
	return orDash(s)
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// config describes c in one line.
func config(c bench.Config) string {
	sizes := func(v []int64) string {
		var s []string
		for _, x := range v {
			s = append(s, humanize.IBytes(uint64(x)))
		}
		return strings.Join(s, ", ")
	}
	ints := func(v []int) string {
		var s []string
		for _, x := range v {
			s = append(s, fmt.Sprint(x))
		}
		return strings.Join(s, ", ")
	}
	all := func(v []string) string {
		if len(v) == 0 {
			return "all"
		}
		return strings.Join(v, ", ")
	}
	var parts []string
	add := func(format string, args ...any) { parts = append(parts, fmt.Sprintf(format, args...)) }
	if c.Quick {
		add("quick (--quick)")
	}
	add("%d runs", c.Runs)
	if c.Runtime > 0 {
		add("runtime %s after a %s ramp", c.Runtime, c.Ramp)
	}
	if c.Size > 0 {
		add("fio working set %s", humanize.IBytes(uint64(c.Size)))
	}
	if c.OriginSize > 0 {
		add("origin size %s", humanize.IBytes(uint64(c.OriginSize)))
	}
	if len(c.Depths) > 0 {
		add("snapshot depths %s", ints(c.Depths))
	}
	if len(c.SnapshotOrigins) > 0 {
		add("snapshot origins %s", sizes(c.SnapshotOrigins))
	}
	if c.MetadataSize > 0 {
		add("metadata workload maps %s", humanize.IBytes(uint64(c.MetadataSize)))
	}
	if c.ImageFileSize > 0 {
		add("container image file %s", humanize.IBytes(uint64(c.ImageFileSize)))
	}
	add("targets: %s", all(c.Targets))
	add("workloads: %s", all(c.Workloads))
	return strings.Join(parts, "; ")
}

// writeHeadline writes, for each table, how thinpool compares with each
// reference.
func writeHeadline(b *strings.Builder, rep *bench.Report) {
	b.WriteString("## Headline\n\n")
	var lines []string
	for _, t := range rep.Tables {
		if l := headline(rep, t); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		b.WriteString("No table has values for both thinpool and a reference target.\n\n")
		return
	}
	for _, l := range lines {
		b.WriteString("- " + l + "\n")
	}
	b.WriteString("\n")
}

// headline is the headline line of t, or "" when t compares nothing.
func headline(rep *bench.Report, t *bench.Table) string {
	us := ""
	for _, id := range ours {
		if hasSamples(t, id) {
			us = id
			break
		}
	}
	if us == "" {
		return ""
	}
	var parts []string
	for _, ref := range refs(rep, t) {
		type point struct {
			r   float64
			row string
		}
		var pts []point
		for _, r := range t.Rows {
			if q := t.Ratio(r, us, ref.ID); !math.IsNaN(q) {
				pts = append(pts, point{q, r.Title})
			}
		}
		switch len(pts) {
		case 0:
			continue
		case 1:
			parts = append(parts, fmt.Sprintf("%s×", times(pts[0].r))+" vs "+ref.Name)
			continue
		}
		lo := slices.MinFunc(pts, func(a, b point) int { return cmp.Compare(a.r, b.r) })
		hi := slices.MaxFunc(pts, func(a, b point) int { return cmp.Compare(a.r, b.r) })
		logSum := 0.0
		for _, p := range pts {
			logSum += math.Log(p.r)
		}
		gm := math.Exp(logSum / float64(len(pts)))
		parts = append(parts, fmt.Sprintf("%s× (%s) to %s× (%s) vs %s, geometric mean %s× over %d rows",
			times(lo.r), lo.row, times(hi.r), hi.row, ref.Name, times(gm), len(pts)))
	}
	if len(parts) == 0 {
		return ""
	}
	return fmt.Sprintf("**%s** (%s): %s %s", t.Title, unitLine(t), targetName(rep, us), strings.Join(parts, "; "))
}

// unitLine is the unit of t and which way is better.
func unitLine(t *bench.Table) string {
	better := "higher is better"
	if t.Lower {
		better = "lower is better"
	}
	if t.Unit == "" {
		return better
	}
	return t.Unit + ", " + better
}

// writeTargets lists the targets, with their setup or why they were
// skipped.
func writeTargets(b *strings.Builder, rep *bench.Report) {
	b.WriteString("## Targets\n\n")
	for _, tg := range rep.Targets {
		fmt.Fprintf(b, "- **%s** (`%s`): %s\n", tg.Name, tg.ID, tg.About)
		if tg.Skipped != "" {
			fmt.Fprintf(b, "  *Skipped:* %s\n", tg.Skipped)
		}
		if len(tg.Setup) > 0 {
			code := strings.Join(tg.Setup, "\n")
			f := fence(code)
			fmt.Fprintf(b, "  %s\n", f)
			for _, l := range strings.Split(code, "\n") {
				fmt.Fprintf(b, "  %s\n", l)
			}
			fmt.Fprintf(b, "  %s\n", f)
		}
	}
	b.WriteString("\n")
}

// writeTable writes the section of table t.
func writeTable(b *strings.Builder, rep *bench.Report, t *bench.Table, plots []string) {
	fmt.Fprintf(b, "## %s\n\n", orDash(t.Title))
	if t.Method != "" {
		b.WriteString(strings.TrimSpace(t.Method) + "\n\n")
	}
	if t.Goal != "" {
		fmt.Fprintf(b, "**Goal:** %s\n\n", t.Goal)
	}
	cols := columns(rep, t)
	switch {
	case len(t.Rows) == 0:
		if len(t.Notes) == 0 {
			b.WriteString("No results.\n\n")
		}
	case len(cols) == 0:
		b.WriteString("No target measured this workload.\n\n")
	default:
		writeGrid(b, rep, t, cols)
	}
	for _, n := range t.Notes {
		fmt.Fprintf(b, "- %s\n", n)
	}
	if len(t.Notes) > 0 {
		b.WriteString("\n")
	}
	if f := PlotFile(t); slices.Contains(plots, f) {
		fmt.Fprintf(b, "![%s](%s)\n\n", t.Title, f)
	}
	if len(t.Commands) > 0 {
		code := strings.Join(t.Commands, "\n")
		f := fence(code)
		fmt.Fprintf(b, "<details><summary>Commands</summary>\n\n%s\n%s\n%s\n\n</details>\n\n", f, code, f)
	}
}

// writeGrid writes the markdown table of t with its caption and the
// footnotes of its cells.
func writeGrid(b *strings.Builder, rep *bench.Report, t *bench.Table, cols []*bench.Target) {
	fmt.Fprintf(b, "*%s; %s.*\n\n", unitLine(t), runsLine(t, cols))
	type pair struct{ us, ref *bench.Target }
	var pairs []pair
	for _, us := range cols {
		if !slices.Contains(ours, us.ID) || !hasSamples(t, us.ID) {
			continue
		}
		for _, ref := range refs(rep, t) {
			pairs = append(pairs, pair{us, ref})
		}
	}

	first := "Case"
	if t.XLabel != "" {
		first = t.XLabel
	}
	head := []string{cellText(first)}
	for _, c := range cols {
		head = append(head, cellText(c.Name))
	}
	for _, p := range pairs {
		head = append(head, cellText(p.us.Name+" / "+p.ref.Name))
	}
	b.WriteString("| " + strings.Join(head, " | ") + " |\n")
	b.WriteString(strings.Repeat("|---", len(head)) + "|\n")

	var notes []string
	for _, r := range t.Rows {
		line := []string{cellText(r.Title)}
		for _, c := range cols {
			s := cell(r.Stats(c.ID), t.Unit)
			note := r.Notes[c.ID]
			switch {
			case s == "" && note != "":
				s = cellText(note)
			case s == "":
				s = "–"
			case note != "":
				notes = append(notes, fmt.Sprintf("<sup>%d</sup> %s, %s: %s", len(notes)+1, c.Name, r.Title, note))
				s += fmt.Sprintf(" <sup>%d</sup>", len(notes))
			}
			line = append(line, s)
		}
		for _, p := range pairs {
			line = append(line, rowRatio(t, r, p.us.ID, p.ref.ID).String())
		}
		b.WriteString("| " + strings.Join(line, " | ") + " |\n")
	}
	b.WriteString("\n")
	if len(notes) > 0 {
		// One paragraph, a line per note (a backslash breaks the line).
		b.WriteString(strings.Join(notes, "\\\n") + "\n\n")
	}
}

// runsLine says how many runs a cell is the median of.
func runsLine(t *bench.Table, cols []*bench.Target) string {
	n := -1
	for _, r := range t.Rows {
		for _, c := range cols {
			k := len(r.Samples[c.ID])
			switch {
			case k == 0:
			case n == -1:
				n = k
			case n != k:
				return "median of the runs (min–max)"
			}
		}
	}
	switch n {
	case -1:
		return "no values"
	case 1:
		return "one run"
	}
	return fmt.Sprintf("median of %d runs (min–max)", n)
}

// columns are the targets that have samples or notes in t, in report
// order, then any target t has values for that the report does not list.
// Skipped targets get no column.
func columns(rep *bench.Report, t *bench.Table) []*bench.Target {
	used := func(id string) bool {
		for _, r := range t.Rows {
			if len(r.Samples[id]) > 0 || r.Notes[id] != "" {
				return true
			}
		}
		return false
	}
	var cols []*bench.Target
	for _, tg := range rep.Targets {
		if tg.Skipped == "" && used(tg.ID) {
			cols = append(cols, tg)
		}
	}
	var extra []string
	for _, r := range t.Rows {
		for id, v := range r.Samples {
			if len(v) > 0 && rep.Target(id) == nil && !slices.Contains(extra, id) {
				extra = append(extra, id)
			}
		}
	}
	slices.Sort(extra)
	for _, id := range extra {
		cols = append(cols, &bench.Target{ID: id, Name: id})
	}
	return cols
}

// refs are the columns of t with samples that are not ours.
func refs(rep *bench.Report, t *bench.Table) []*bench.Target {
	var rs []*bench.Target
	for _, c := range columns(rep, t) {
		if !slices.Contains(ours, c.ID) && hasSamples(t, c.ID) {
			rs = append(rs, c)
		}
	}
	return rs
}

// hasSamples reports whether any row of t has a sample of target.
func hasSamples(t *bench.Table, target string) bool {
	for _, r := range t.Rows {
		if len(r.Samples[target]) > 0 {
			return true
		}
	}
	return false
}

// targetName is the report's name of target, or its ID.
func targetName(rep *bench.Report, id string) string {
	if tg := rep.Target(id); tg != nil && tg.Name != "" {
		return tg.Name
	}
	return id
}

// writeGoals writes the project's goals and whether the report meets them.
func writeGoals(b *strings.Builder, rep *bench.Report) {
	goals := bench.Goals(rep)
	b.WriteString("## Goals\n\n")
	b.WriteString("The goals set for thinpool, checked against the medians above (thinpool's loop device unless the row says otherwise).\n\n")
	b.WriteString("| Goal | Measured | Wanted | Met |\n|---|---|---|---|\n")
	for _, g := range goals {
		if len(g.Checks) == 0 {
			fmt.Fprintf(b, "| **%s** | not measured | | – |\n", g.Text)
			continue
		}
		for i, c := range g.Checks {
			text := ""
			if i == 0 {
				text = "**" + g.Text + "**"
			}
			met := "yes"
			if !c.Met {
				met = "**no**"
			}
			fmt.Fprintf(b, "| %s | %s: %s | %s | %s |\n", text, c.What, bench.FormatRatio(c.Value), c.Want, met)
		}
	}
	b.WriteString("\n")
}
