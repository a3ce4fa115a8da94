package bench

import (
	"encoding/json"
	"io"
	"math"
	"slices"
	"time"
)

// Report is everything one harness run measured: the raw samples of every
// table, the machine and the configuration. It is written as JSON
// (bench/results/results.json) and rendered as markdown by bench/report.
type Report struct {
	Version  int       `json:"version"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Command is the command line that produced the report.
	Command string  `json:"command"`
	Commit  string  `json:"commit,omitempty"`
	Machine Machine `json:"machine"`
	Config  Config  `json:"config"`
	// Targets are the systems compared, in display order.
	Targets []*Target `json:"targets"`
	// Tables are the workloads' results, in the order they ran.
	Tables []*Table `json:"tables"`
}

// Machine describes where the report was measured.
type Machine struct {
	Kernel    string            `json:"kernel"`
	CPU       string            `json:"cpu"`
	Cores     int               `json:"cores"`
	MemoryB   int64             `json:"memory_bytes"`
	WorkDir   string            `json:"work_dir"`
	WorkFS    string            `json:"work_fs"`      // file system and device of WorkDir
	LoadAvg   [2]string         `json:"load_average"` // at the start and at the end
	Tools     map[string]string `json:"tools"`        // tool → version line
	GoVersion string            `json:"go_version"`
}

// Target is one system the workloads run against.
type Target struct {
	ID   string `json:"id"`   // short key: plain, thinpool, engine, qcow2, overlayfs
	Name string `json:"name"` // what the report calls it
	// About says what the target is, in one sentence.
	About string `json:"about"`
	// Setup are the shell commands that set the target up (for the report).
	Setup []string `json:"setup,omitempty"`
	// Skipped is why the target was not measured at all (a missing tool).
	Skipped string `json:"skipped,omitempty"`
}

// Table is one workload's results: rows of cases, a column per target.
type Table struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	// Unit of the samples ("MiB/s", "IOPS", "ms", "bytes/GiB").
	Unit string `json:"unit"`
	// Lower is set when a smaller value is better (latencies, sizes).
	Lower bool `json:"lower_is_better,omitempty"`
	// XLabel names the rows' X values when the table is a series to plot
	// (snapshot depth, origin size in GiB).
	XLabel string `json:"x_label,omitempty"`
	// Method says how it was measured (markdown).
	Method string `json:"method"`
	// Commands are the exact commands or job files used (for the report).
	Commands []string `json:"commands,omitempty"`
	// Goal is the target the project set for this workload, if any.
	Goal string `json:"goal,omitempty"`
	// Notes are remarks on the whole table (a workload that failed).
	Notes []string `json:"notes,omitempty"`
	Rows  []*Row   `json:"rows"`
}

// Row is one case of a table.
type Row struct {
	ID    string  `json:"id"`
	Title string  `json:"title"`
	X     float64 `json:"x,omitempty"`
	// Samples holds, per target ID, one value per run.
	Samples map[string][]float64 `json:"samples"`
	// Notes holds, per target ID, why there is no value or what to know
	// about it.
	Notes map[string]string `json:"notes,omitempty"`
}

// Stats are the median, minimum and maximum of a row's samples for one
// target; N is the number of samples (0: no value).
type Stats struct {
	N                int
	Median, Min, Max float64
}

// Stats summarises the samples of target.
func (r *Row) Stats(target string) Stats {
	v := slices.Clone(r.Samples[target])
	if len(v) == 0 {
		return Stats{}
	}
	slices.Sort(v)
	s := Stats{N: len(v), Min: v[0], Max: v[len(v)-1]}
	if len(v)%2 == 1 {
		s.Median = v[len(v)/2]
	} else {
		s.Median = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return s
}

// Ratio is the median of target over the median of ref, as "how many times
// better": for a lower-is-better table it is ref/target. It is NaN when
// either has no value.
func (t *Table) Ratio(r *Row, target, ref string) float64 {
	a, b := r.Stats(target), r.Stats(ref)
	if a.N == 0 || b.N == 0 || a.Median == 0 || b.Median == 0 {
		return math.NaN()
	}
	if t.Lower {
		return b.Median / a.Median
	}
	return a.Median / b.Median
}

// Table returns the table with the given ID, or nil.
func (r *Report) Table(id string) *Table {
	for _, t := range r.Tables {
		if t.ID == id {
			return t
		}
	}
	return nil
}

// Target returns the target with the given ID, or nil.
func (r *Report) Target(id string) *Target {
	for _, t := range r.Targets {
		if t.ID == id {
			return t
		}
	}
	return nil
}

// Row returns the row with the given ID, or nil.
func (t *Table) Row(id string) *Row {
	for _, r := range t.Rows {
		if r.ID == id {
			return r
		}
	}
	return nil
}

// ReadReport decodes a report written by WriteJSON.
func ReadReport(r io.Reader) (*Report, error) {
	var rep Report
	if err := json.NewDecoder(r).Decode(&rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}
