package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Config says what a harness run measures and where.
type Config struct {
	// Dir is where the work directory is made. Every target keeps its
	// files there, so all of them sit on the same file system.
	Dir string `json:"dir"`
	// Runs is how many times each measurement is repeated.
	Runs int `json:"runs"`
	// Runtime caps each fio job (and its Go equivalent for the engine);
	// random jobs run for exactly this long after Ramp.
	Runtime time.Duration `json:"runtime_ns"`
	// Ramp is the unmeasured warm-up of time-based jobs.
	Ramp time.Duration `json:"ramp_ns"`
	// Size is the fio working set: the region of each device the block
	// workloads write and read.
	Size int64 `json:"size"`
	// OriginSize is the size of the fully written origin of the
	// first-write and depth workloads.
	OriginSize int64 `json:"origin_size"`
	// Depths are the snapshot chain lengths of the depth workload.
	Depths []int `json:"depths"`
	// SnapshotOrigins are the origin sizes (bytes) of the snapshot
	// creation workload.
	SnapshotOrigins []int64 `json:"snapshot_origins"`
	// MetadataSize is how much data the metadata workload maps.
	MetadataSize int64 `json:"metadata_size"`
	// ImageFileSize is the size of the big file in the container
	// workload's image.
	ImageFileSize int64 `json:"image_file_size"`
	// Targets and Workloads select what runs (nil: everything).
	Targets   []string `json:"targets"`
	Workloads []string `json:"workloads"`
	// Quick is the reduced set of thinctl bench --quick.
	Quick bool `json:"quick"`

	// Thinctl is the thinctl binary the thinpool target runs.
	Thinctl string `json:"-"`
	// Log receives one line per measurement (nil: discarded).
	Log io.Writer `json:"-"`
	// Progress is called before each step with the step's number (from
	// 0), the number of steps and what the step does.
	Progress func(step, steps int, what string) `json:"-"`
}

// DefaultConfig is what make bench runs.
func DefaultConfig() Config {
	return Config{
		Dir:             os.TempDir(),
		Runs:            3,
		Runtime:         10 * time.Second,
		Ramp:            2 * time.Second,
		Size:            2 << 30,
		OriginSize:      1 << 30,
		Depths:          []int{1, 10, 100},
		SnapshotOrigins: []int64{1 << 30, 10 << 30, 100 << 30},
		MetadataSize:    4 << 30,
		ImageFileSize:   1 << 30,
	}
}

// QuickConfig is thinctl bench --quick: every workload once, small, in
// under a minute.
func QuickConfig() Config {
	c := DefaultConfig()
	c.Quick = true
	c.Runs = 1
	c.Runtime = time.Second
	c.Ramp = 250 * time.Millisecond
	c.Size = 256 << 20
	c.OriginSize = 256 << 20
	c.Depths = []int{1, 10}
	c.SnapshotOrigins = []int64{1 << 30, 10 << 30}
	c.MetadataSize = 256 << 20
	c.ImageFileSize = 128 << 20
	return c
}

// Target IDs.
const (
	TargetThinpool  = "thinpool"
	TargetEngine    = "engine"
	TargetPlain     = "plain"
	TargetQcow2     = "qcow2"
	TargetQcow2Int  = "qcow2-internal"
	TargetOverlayfs = "overlayfs"
	TargetDmThin    = "dm-thin"
)

// targets are every target the harness knows, in display order.
var targets = []Target{
	{ID: TargetThinpool, Name: "thinpool", About: "a thin device of a fresh pool served by the thinpool daemon (thinctl daemon start; thinctl device attach): FUSE file + loop device with direct I/O", Setup: []string{
		"thinctl --pool pool.img pool create --size $((SIZE + 1 GiB))",
		"thinctl --pool pool.img daemon start",
		"thinctl --pool pool.img device create bench --size SIZE",
		"thinctl --pool pool.img device attach bench    # prints /dev/loopN",
		"thinctl --pool pool.img snapshot create bench snap    # snapshots",
	}},
	{ID: TargetEngine, Name: "thinpool engine (Go API)", About: "the same engine called directly from Go (thinpool.Thin.ReadAt/WriteAt), without FUSE and loop: the difference to thinpool is their cost", Setup: []string{
		"p, _ := thinpool.Create(\"pool.img\", thinpool.Options{DataSize: SIZE + 1<<30})",
		"d, _ := p.CreateThin(\"bench\", SIZE, nil)    // then d.WriteAt, d.ReadAt, d.Sync",
		"s, _ := p.Snapshot(\"bench\", \"snap\", false)    // snapshots",
	}},
	{ID: TargetPlain, Name: "plain loop (limit)", About: "a loop device (direct I/O) over a plain sparse file in the same directory: the physical limit of a loop device here", Setup: []string{
		"truncate -s SIZE disk.img",
		"losetup --direct-io=on -f --show disk.img",
	}},
	{ID: TargetQcow2, Name: "qcow2", About: "a qcow2 image with 64 KiB clusters (snapshots: backing-file overlays) exported by qemu-storage-daemon --export type=fuse, with a loop device on the export: the same path as ours. The loop device does buffered I/O: with loop direct I/O, qemu-storage-daemon 7.2's FUSE export stores wrong data when writes overlap in time (fio verify failed and mkfs.ext4 made a broken file system in every run of the first comparison, bench/blockdev.sh, removed since), so that path is not a fair reference", Setup: []string{
		"qemu-img create -f qcow2 -o cluster_size=65536 disk.qcow2 SIZE",
		"qemu-img create -f qcow2 -o cluster_size=65536 -b disk.qcow2 -F qcow2 snap.qcow2    # snapshots",
		"touch disk.export",
		"qemu-storage-daemon --blockdev driver=file,node-name=f0,filename=disk.qcow2 --blockdev driver=qcow2,node-name=q0,file=f0 --export type=fuse,id=e0,node-name=q0,mountpoint=disk.export,writable=on &",
		"losetup -f --show disk.export    # direct I/O off",
	}},
	{ID: TargetQcow2Int, Name: "qcow2 internal snapshot", About: "qemu-img snapshot -c: a qcow2 internal snapshot, for contrast with the backing-file overlay", Setup: []string{"qemu-img snapshot -c snap origin.qcow2"}},
	{ID: TargetOverlayfs, Name: "overlayfs", About: "overlayfs over directories on the same file system, as Docker's overlay2 driver uses it", Setup: []string{"mount -t overlay overlay -o lowerdir=LAYER_N:...:LAYER_1,upperdir=upper,workdir=work merged"}},
	{ID: TargetDmThin, Name: "dm-thin (estimate)", About: "thin_metadata_size from thin-provisioning-tools: the kernel dm-thin metadata size for the same pool", Setup: []string{"thin_metadata_size -b 64k -s SIZEb -m DEVICES -u b -n"}},
}

// harness is one run of the benchmarks.
type harness struct {
	ctx   context.Context
	cfg   Config
	rep   *Report
	work  string // the work directory
	step  int
	steps int
	// want is the set of targets selected and available.
	want map[string]bool
	// cleanups run in reverse order at the end, also after a failure.
	cleanups []func()
}

// workload is one benchmark: its tables, and how to run it.
type workload struct {
	id    string
	about string
	// steps is how many progress steps run makes.
	steps func(h *harness) int
	run   func(h *harness) error
}

// workloads are every workload, in the order they run. Each file of the
// package adds its own (init).
var workloads []workload

func register(w workload) { workloads = append(workloads, w) }

// Workloads lists the IDs of the workloads, in the order they run.
func Workloads() []string {
	var ids []string
	for _, w := range ordered() {
		ids = append(ids, w.id)
	}
	return ids
}

// order is the order workloads run in and the report shows them.
var order = []string{"fio", "firstwrite", "depth", "snapshot", "container", "metadata"}

func ordered() []workload {
	ws := slices.Clone(workloads)
	slices.SortStableFunc(ws, func(a, b workload) int {
		return slices.Index(order, a.id) - slices.Index(order, b.id)
	})
	return ws
}

// TargetIDs lists the IDs of the targets.
func TargetIDs() []string {
	var ids []string
	for _, t := range targets {
		ids = append(ids, t.ID)
	}
	return ids
}

// Run runs the selected workloads against the selected targets and returns
// the report. A workload that fails is recorded as a note in its tables and
// the others go on; Run returns an error only when nothing could run or ctx
// was cancelled.
func Run(ctx context.Context, cfg Config) (rep *Report, err error) {
	if cfg.Runs < 1 {
		return nil, errors.New("bench: runs must be at least 1")
	}
	for _, id := range cfg.Targets {
		if !slices.Contains(TargetIDs(), id) {
			return nil, fmt.Errorf("bench: unknown target %q (known: %s)", id, strings.Join(TargetIDs(), ", "))
		}
	}
	for _, id := range cfg.Workloads {
		if !slices.Contains(Workloads(), id) {
			return nil, fmt.Errorf("bench: unknown workload %q (known: %s)", id, strings.Join(Workloads(), ", "))
		}
	}
	work, err := os.MkdirTemp(cfg.Dir, "thinpool-bench.")
	if err != nil {
		return nil, fmt.Errorf("bench: work directory: %w", err)
	}
	h := &harness{ctx: ctx, cfg: cfg, work: work, want: map[string]bool{}}
	defer func() {
		h.cleanup()
		if e := os.RemoveAll(work); e != nil && err == nil {
			err = fmt.Errorf("bench: remove work directory: %w", e)
		}
	}()
	h.rep = &Report{Version: 1, Started: time.Now().UTC(), Config: cfg, Command: strings.Join(os.Args, " ")}
	h.rep.Machine = describeMachine(work)
	h.selectTargets()

	var run []workload
	for _, w := range ordered() {
		if len(cfg.Workloads) == 0 || slices.Contains(cfg.Workloads, w.id) {
			run = append(run, w)
			h.steps += w.steps(h)
		}
	}
	for _, w := range run {
		if err := ctx.Err(); err != nil {
			return h.rep, err
		}
		h.logf("== %s", w.id)
		if err := w.run(h); err != nil {
			if ctx.Err() != nil {
				return h.rep, ctx.Err()
			}
			h.logf("%s failed: %v", w.id, err)
			h.failed(w.id, err)
		}
		h.cleanup()
	}
	h.rep.Machine.LoadAvg[1] = loadAvg()
	h.rep.Finished = time.Now().UTC()
	return h.rep, nil
}

// selectTargets fills the report's targets: the selected ones, with a
// reason when one cannot run here.
func (h *harness) selectTargets() {
	root := os.Geteuid() == 0
	for _, t := range targets {
		if len(h.cfg.Targets) > 0 && !slices.Contains(h.cfg.Targets, t.ID) {
			continue
		}
		t := t
		var missing []string
		need := func(tools ...string) {
			for _, tool := range tools {
				if _, err := exec.LookPath(tool); err != nil {
					missing = append(missing, tool)
				}
			}
		}
		switch t.ID {
		case TargetThinpool, TargetPlain:
			need("fio")
		case TargetQcow2:
			need("fio", "qemu-img", "qemu-io", "qemu-storage-daemon")
		case TargetQcow2Int:
			need("qemu-img")
		case TargetOverlayfs:
			need("fio")
			if !hasFilesystem("overlay") {
				missing = append(missing, "overlay file system in the kernel")
			}
		case TargetDmThin:
			need("thin_metadata_size")
		}
		switch {
		case len(missing) > 0:
			t.Skipped = "not installed: " + strings.Join(missing, ", ") + " (make bench-deps installs the tools)"
		case !root && t.ID != TargetEngine && t.ID != TargetDmThin && t.ID != TargetQcow2Int:
			t.Skipped = "needs root (loop devices, FUSE, mounts)"
		case t.ID == TargetThinpool && h.cfg.Thinctl == "":
			t.Skipped = "no thinctl binary given"
		}
		h.want[t.ID] = t.Skipped == ""
		h.rep.Targets = append(h.rep.Targets, &t)
	}
}

// on reports whether target is selected and can run.
func (h *harness) on(target string) bool { return h.want[target] }

// failed notes err in every table of the workload that has no note yet, or
// in a table of its own if it made none.
func (h *harness) failed(workload string, err error) {
	msg := "failed: " + err.Error()
	found := false
	for _, t := range h.rep.Tables {
		if strings.HasPrefix(t.ID, workload) {
			found = true
			t.Notes = append(t.Notes, msg)
		}
	}
	if !found {
		h.rep.Tables = append(h.rep.Tables, &Table{ID: workload, Title: workload, Notes: []string{msg}})
	}
}

// table adds t to the report, or returns the table already there with
// the same ID.
func (h *harness) table(t *Table) *Table {
	if old := h.rep.Table(t.ID); old != nil {
		return old
	}
	h.rep.Tables = append(h.rep.Tables, t)
	return t
}

// row returns the row id of t, adding it if needed.
func (t *Table) row(id, title string, x float64) *Row {
	if r := t.Row(id); r != nil {
		return r
	}
	r := &Row{ID: id, Title: title, X: x, Samples: map[string][]float64{}}
	t.Rows = append(t.Rows, r)
	return r
}

// record adds one sample.
func (h *harness) record(t *Table, r *Row, target string, v float64) {
	r.Samples[target] = append(r.Samples[target], v)
	h.logf("  %-40s %-16s %s %s", r.Title, target, FormatValue(v), t.Unit)
}

// note attaches a note to target's cell of r.
func (r *Row) note(target, msg string) {
	if r.Notes == nil {
		r.Notes = map[string]string{}
	}
	if old := r.Notes[target]; old != "" && old != msg {
		if strings.Contains(old, msg) {
			return
		}
		msg = old + "; " + msg
	}
	r.Notes[target] = msg
}

// progress announces the next step.
func (h *harness) progress(format string, args ...any) {
	if h.cfg.Progress != nil {
		h.cfg.Progress(min(h.step, h.steps), h.steps, fmt.Sprintf(format, args...))
	}
	h.step++
}

// logf writes a line to the log.
func (h *harness) logf(format string, args ...any) {
	if h.cfg.Log != nil {
		fmt.Fprintf(h.cfg.Log, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
}

// defer_ registers f to run at the end of the current workload.
func (h *harness) defer_(f func()) { h.cleanups = append(h.cleanups, f) }

// cleanup runs the registered cleanups, last first.
func (h *harness) cleanup() { h.unwind(0) }

// mark returns a mark for unwind.
func (h *harness) mark() int { return len(h.cleanups) }

// unwind runs the cleanups registered since mark m, last first.
func (h *harness) unwind(m int) {
	for i := len(h.cleanups) - 1; i >= m; i-- {
		h.cleanups[i]()
	}
	h.cleanups = h.cleanups[:m]
}

// dir makes and returns a directory in the work directory.
func (h *harness) dir(elem ...string) (string, error) {
	d := filepath.Join(append([]string{h.work}, elem...)...)
	return d, os.MkdirAll(d, 0o755)
}

// runs returns the rotation of ids for run number i, so that no target is
// always measured first.
func rotate[T any](ids []T, i int) []T {
	if len(ids) == 0 {
		return ids
	}
	i %= len(ids)
	return append(slices.Clone(ids[i:]), ids[:i]...)
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " …"
	}
	return s
}
