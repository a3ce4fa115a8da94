package report

import (
	"math"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/thinpool/thinpool/bench"
)

// num formats a value of unit compactly: three significant digits, whole
// numbers from 100 to 9999, k/M/G/T suffixes from 10000 on ("12.3k"), and
// binary units for a unit in bytes ("1.5 MiB").
func num(v float64, unit string) string {
	if isBytes(unit) && v >= 0 && !math.IsInf(v, 0) {
		return humanize.IBytes(uint64(math.Round(v)))
	}
	return compact(v)
}

// isBytes reports whether unit counts bytes ("bytes", "bytes/GiB", "B").
func isBytes(unit string) bool {
	u := strings.ToLower(unit)
	return u == "b" || strings.HasPrefix(u, "b/") || strings.HasPrefix(u, "byte")
}

// compact formats v with three significant digits; see num.
func compact(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "–"
	case a < 99.95:
		return strconv.FormatFloat(v, 'g', 3, 64)
	case a < 9999.5:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	suffixes := []string{"k", "M", "G", "T"}
	for i, s := range suffixes {
		d := math.Pow(1000, float64(i+1))
		if a/d < 999.5 || i == len(suffixes)-1 {
			return strconv.FormatFloat(v/d, 'g', 3, 64) + s
		}
	}
	panic("unreachable")
}

// times formats a ratio without its sign: "1.23", "0.058", "154".
func times(r float64) string {
	if r >= 99.95 {
		return strconv.FormatFloat(r, 'f', 0, 64)
	}
	return strconv.FormatFloat(r, 'g', 3, 64)
}

// cell formats one target's samples: "median (min–max)", or the median
// alone when there is a single sample or no spread. It is "" when there are
// no samples.
func cell(s bench.Stats, unit string) string {
	switch {
	case s.N == 0:
		return ""
	case s.N == 1 || s.Min == s.Max:
		return num(s.Median, unit)
	}
	return num(s.Median, unit) + " (" + num(s.Min, unit) + "–" + num(s.Max, unit) + ")"
}

// ratio is how many times better one target did than a reference in one
// row (see bench.Table.Ratio).
type ratio struct {
	// Median is the ratio of the medians; NaN when either has no value.
	Median float64
	// Min and Max are the lowest and highest ratio within one run, sample
	// i of the target against sample i of the reference. Paired is false
	// when the runs cannot be paired (different sample counts, a single
	// run, a zero sample).
	Min, Max float64
	Paired   bool
}

// rowRatio is the ratio of target to ref in row r of t.
func rowRatio(t *bench.Table, r *bench.Row, target, ref string) ratio {
	q := ratio{Median: t.Ratio(r, target, ref)}
	a, b := r.Samples[target], r.Samples[ref]
	if math.IsNaN(q.Median) || len(a) != len(b) || len(a) < 2 {
		return q
	}
	q.Min, q.Max = math.Inf(1), math.Inf(-1)
	for i := range a {
		if a[i] == 0 || b[i] == 0 {
			return ratio{Median: q.Median}
		}
		x := a[i] / b[i]
		if t.Lower {
			x = b[i] / a[i]
		}
		q.Min, q.Max = min(q.Min, x), max(q.Max, x)
	}
	q.Paired = true
	return q
}

// String formats q as "1.23× (1.1–1.4)", or "–" when there is no ratio.
func (q ratio) String() string {
	if math.IsNaN(q.Median) {
		return "–"
	}
	s := times(q.Median) + "×"
	if q.Paired {
		s += " (" + times(q.Min) + "–" + times(q.Max) + ")"
	}
	return s
}

// cellText makes s safe inside a markdown table cell.
func cellText(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.Join(strings.Fields(s), " ")
}

// fence returns a code fence longer than any run of backticks in text.
func fence(text string) string {
	f := "```"
	for strings.Contains(text, f) {
		f += "`"
	}
	return f
}
