package report

import (
	"cmp"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"

	"github.com/thinpool/thinpool/bench"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// barCharts are the IDs of the tables without an X that get a bar chart.
var barCharts = []string{"firstwrite"}

// The size of every plot.
const (
	plotWidth  = 16 * vg.Centimeter
	plotHeight = 10 * vg.Centimeter
)

// PlotFile is the file name of the plot of t: its ID, made safe for a file
// name, with ".svg".
func PlotFile(t *bench.Table) string {
	id := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '-'
	}, t.ID)
	return strings.TrimLeft(id, ".") + ".svg"
}

// Plots draws a plot for each table of rep that has one into dir (a line
// plot per series table, a bar chart per table in barCharts) and returns
// their file names. A table without values gets no plot.
func Plots(rep *bench.Report, dir string) ([]string, error) {
	var files []string
	for _, t := range rep.Tables {
		var p *plot.Plot
		switch {
		case t.XLabel != "":
			p = seriesPlot(rep, t)
		case slices.Contains(barCharts, t.ID):
			p = barPlot(rep, t)
		}
		if p == nil {
			continue
		}
		f := PlotFile(t)
		if err := p.Save(plotWidth, plotHeight, filepath.Join(dir, f)); err != nil {
			return files, fmt.Errorf("report: plot %s: %w", t.ID, err)
		}
		files = append(files, f)
	}
	return files, nil
}

// newPlot is a plot of t with its title, Y label and legend set up.
func newPlot(t *bench.Table) *plot.Plot {
	p := plot.New()
	p.Title.Text = t.Title
	p.Y.Label.Text = unitLine(t)
	p.Legend.Top = true
	p.Y.Tick.Marker = relabel{plot.DefaultTicks{}, t.Unit}
	return p
}

// relabel formats the labels of a Ticker's ticks with num.
type relabel struct {
	plot.Ticker
	unit string
}

var _ plot.Ticker = relabel{}

func (r relabel) Ticks(lo, hi float64) []plot.Tick {
	ts := r.Ticker.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = num(ts[i].Value, r.unit)
		}
	}
	return ts
}

// seriesPlot draws a line with points per target, X against the median,
// with the range of the runs as error bars. It returns nil when no target
// has values.
func seriesPlot(rep *bench.Report, t *bench.Table) *plot.Plot {
	p := newPlot(t)
	p.X.Label.Text = t.XLabel
	xs, nominal := rowXs(t)
	if nominal {
		var names []string
		for _, r := range t.Rows {
			names = append(names, r.Title)
		}
		p.NominalX(names...)
	}
	ylo, yhi := math.Inf(1), math.Inf(-1)
	lines := 0
	for i, tg := range columns(rep, t) {
		var pts plotter.XYs
		var errs plotter.YErrors
		spread := false
		for _, j := range byX(xs) {
			s := t.Rows[j].Stats(tg.ID)
			if s.N == 0 {
				continue
			}
			pts = append(pts, plotter.XY{X: xs[j], Y: s.Median})
			errs = append(errs, struct{ Low, High float64 }{s.Median - s.Min, s.Max - s.Median})
			spread = spread || s.Min != s.Max
			ylo, yhi = min(ylo, s.Min), max(yhi, s.Max)
		}
		if len(pts) == 0 {
			continue
		}
		l, sc, err := plotter.NewLinePoints(pts)
		if err != nil {
			continue // NaN or Inf samples: nothing sensible to draw
		}
		c := colorIndex(rep, tg.ID, i)
		l.Color = plotutil.Color(c)
		l.Dashes = plotutil.Dashes(c)
		sc.Color = plotutil.Color(c)
		sc.Shape = plotutil.Shape(c)
		p.Add(l, sc)
		if spread {
			eb := &plotter.YErrorBars{XYs: pts, YErrors: errs, LineStyle: l.LineStyle, CapWidth: plotter.DefaultCapWidth}
			eb.LineStyle.Dashes = nil
			p.Add(eb)
		}
		p.Legend.Add(tg.Name, l, sc)
		lines++
	}
	if lines == 0 {
		return nil
	}
	if nominal {
		p.X.Min, p.X.Max = -0.5, float64(len(xs))-0.5
	} else {
		scaleX(p, xs)
	}
	scaleY(p, ylo, yhi, lines, t.Unit)
	return p
}

// scaleX sets the X range to the rows' X values, log when they span two
// decades or more, with a tick at each value when there are few.
func scaleX(p *plot.Plot, xs []float64) {
	lo, hi := slices.Min(xs), slices.Max(xs)
	if lo > 0 && hi/lo >= 100 {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = relabel{plot.LogTicks{Prec: -1}, ""}
		p.X.Min, p.X.Max = lo/1.5, hi*1.5
	} else {
		pad := (hi - lo) * 0.05
		p.X.Min, p.X.Max = lo-pad, hi+pad
	}
	if len(xs) <= 12 {
		var ticks plot.ConstantTicks
		for _, x := range xs {
			ticks = append(ticks, plot.Tick{Value: x, Label: compact(x)})
		}
		p.X.Tick.Marker = ticks
	}
}

// rowXs are the X positions of t's rows: their X values, or their indexes
// when the X values do not tell the rows apart (nominal).
func rowXs(t *bench.Table) (xs []float64, nominal bool) {
	seen := map[float64]bool{}
	for _, r := range t.Rows {
		xs = append(xs, r.X)
		seen[r.X] = true
	}
	if len(seen) == len(xs) {
		return xs, false
	}
	for i := range xs {
		xs[i] = float64(i)
	}
	return xs, true
}

// byX are the indexes of xs in increasing order of their value.
func byX(xs []float64) []int {
	idx := make([]int, len(xs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(xs[a], xs[b]) })
	return idx
}

// scaleY sets the Y range to [lo, hi] of the data plus room at the top for
// the legend's entries: from 0 on a linear scale, log when the values
// span two decades or more.
func scaleY(p *plot.Plot, lo, hi float64, entries int, unit string) {
	room := 0.08 * float64(entries+1)
	if lo > 0 && hi/lo >= 100 {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = relabel{plot.LogTicks{Prec: -1}, unit}
		p.Y.Min, p.Y.Max = lo/1.2, hi*math.Pow(hi/lo*1.2, room)
		return
	}
	if lo > 0 {
		lo = 0
	}
	if hi <= lo {
		hi = lo + 1
	}
	p.Y.Min, p.Y.Max = lo, hi+(hi-lo)*room
}

// barPlot draws grouped bars: a group per row, a bar per target, as high as
// its median. It returns nil when no target has values.
func barPlot(rep *bench.Report, t *bench.Table) *plot.Plot {
	var cols []*bench.Target
	for _, c := range columns(rep, t) {
		if hasSamples(t, c.ID) {
			cols = append(cols, c)
		}
	}
	if len(cols) == 0 {
		return nil
	}
	p := newPlot(t)
	n := float64(len(cols))
	w := vg.Points(min(40, 320/(float64(len(t.Rows))*(n+1))))
	hi := 0.0
	for i, c := range cols {
		vals := make(plotter.Values, len(t.Rows))
		for j, r := range t.Rows {
			if s := r.Stats(c.ID); s.N > 0 && !math.IsNaN(s.Median) && !math.IsInf(s.Median, 0) {
				vals[j] = s.Median
				hi = max(hi, s.Median)
			}
		}
		bc, err := plotter.NewBarChart(vals, w)
		if err != nil {
			continue
		}
		bc.Color = plotutil.Color(colorIndex(rep, c.ID, i))
		bc.LineStyle.Width = 0
		bc.Offset = w * vg.Length(float64(i)-(n-1)/2)
		p.Add(bc)
		p.Legend.Add(c.Name, bc)
	}
	var names []string
	for _, r := range t.Rows {
		names = append(names, r.Title)
	}
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.5, float64(len(t.Rows))-0.5
	scaleY(p, 0, hi, len(cols), t.Unit)
	return p
}

// colorIndex is the index of target's color and shape: its place in the
// report's targets, so a target looks the same in every plot, or fallback
// past them for a target the report does not list.
func colorIndex(rep *bench.Report, target string, fallback int) int {
	if i := slices.IndexFunc(rep.Targets, func(t *bench.Target) bool { return t.ID == target }); i >= 0 {
		return i
	}
	return len(rep.Targets) + fallback
}
