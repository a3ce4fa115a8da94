package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/thinpool/thinpool/thinpool"
)

// The snapshot workload: the time to create one snapshot of a fully mapped
// origin, for origins of 1, 10 and 100 GiB. The goal is a flat line.

func init() {
	register(workload{
		id:    "snapshot",
		about: "snapshot creation latency against the size of a fully mapped origin",
		steps: func(h *harness) int { return len(h.cfg.SnapshotOrigins) * len(snapshotPhases(h)) },
		run:   runSnapshot,
	})
}

// snapshotMargin is the pool's data area beyond the origin.
const snapshotMargin = 64 << 20

// snapshotPhases are the progress steps of one origin size: building the
// pool (for the engine and the daemon), then one per target.
func snapshotPhases(h *harness) []string {
	var ph []string
	if h.on(TargetEngine) || h.on(TargetThinpool) {
		ph = append(ph, "build")
	}
	for _, id := range []string{TargetEngine, TargetThinpool, TargetQcow2, TargetQcow2Int} {
		if h.on(id) {
			ph = append(ph, id)
		}
	}
	return ph
}

const snapshotMethod = `Each origin size gets one origin with every 64 KiB block mapped. A sample is the wall-clock time to create one snapshot of it; each run adds one more snapshot of the same origin, and the earlier ones stay. One sample per target, size and run.

- **engine**: ` + "`Pool.Snapshot(\"origin\", name, false)`" + ` in the harness process. It returns after the commit: fdatasync, one journal entry, fdatasync.
- **thinpool**: the same pool file, served by its daemon. The sample is the whole ` + "`thinctl snapshot create origin NAME`" + ` process, from start to exit: the process start, the request to the daemon and its commit.
- **qcow2**: ` + "`qemu-img create -f qcow2 -b origin.qcow2 -F qcow2 snapN.qcow2`" + `, a backing-file overlay. This is what a qcow2 snapshot is in the other workloads' chains. The sample is the whole process, as for thinpool. qemu-img reads the origin's header for its size and writes a new image; it does not write the origin. Like thinpool, it returns with the snapshot on disk: strace shows five fdatasyncs of the new image.
- **qcow2-internal**: ` + "`qemu-img snapshot -c sN origin.qcow2`" + ` on an image of its own, shown for contrast. An internal snapshot copies the L1 table and adds one to the refcount of every cluster, so its cost grows with the image (six fdatasyncs).

**The thinpool origin.** The harness makes a pool with a data area of the origin size plus 64 MiB through the Go API, creates the device ` + "`origin`" + ` and writes it in order. Each 64 KiB block gets one 4 KiB ` + "`WriteAt`" + ` at its start, with pseudo-random data that differs from block to block. ` + "`Usage`" + ` must then report every block mapped. The engine writes every new block whole: zeros around the data (invariant Z1). So 4 KiB per block still takes 64 KiB of disk per block, 100 GiB for the largest origin. The ` + "`thinpool.File`" + ` under the pool therefore drops writes to the data area, as the engine's own BenchmarkOpen does. The engine does all the work of each write, but the data area stays a hole. The note on the engine cell gives the pool file's allocated size (from stat), which is the metadata alone. Creating a snapshot neither reads nor writes data, so this does not change what is measured. Keeping only the 4 KiB pages, with the zeros left as holes, was tried first. It keeps the file sparse (6.3 GiB for 100 GiB), but it makes 1.6 million separate extents. They take about 35 s to write. On a file system mounted with ` + "`discard`" + `, deleting them then causes about 2 minutes of background discards, which slow down whatever is measured next.

**The qcow2 origin.** ` + "`qemu-img create -f qcow2 -o cluster_size=65536,preallocation=metadata origin.qcow2 SIZE`" + `. This maps every cluster in the L2 tables without writing data: ` + "`qemu-img check`" + ` must report every cluster allocated.

Every pool and image of a size is deleted before the next size is built.`

func runSnapshot(h *harness) error {
	t := h.table(&Table{
		ID:     "snapshot",
		Title:  "Snapshot creation vs origin size",
		Unit:   "ms",
		Lower:  true,
		XLabel: "origin size (GiB)",
		Goal:   "snapshot creation flat in origin size",
		Method: snapshotMethod,
		Commands: []string{
			"# engine (Go): p, _ := thinpool.Create(pool, thinpool.Options{DataSize: size + 64 MiB}); o, _ := p.CreateThin(\"origin\", size, nil); o.WriteAt(4 KiB, 64 KiB × i) for every block i; p.Close(); p, _ = thinpool.Open(pool); p.Snapshot(\"origin\", \"eN\", false)",
			"thinctl --pool POOL daemon start; thinctl --pool POOL snapshot create origin tN",
			"qemu-img create -q -f qcow2 -o cluster_size=65536,preallocation=metadata origin.qcow2 SIZE; qemu-img create -q -f qcow2 -o cluster_size=65536 -b origin.qcow2 -F qcow2 snapN.qcow2",
			"qemu-img create -q -f qcow2 -o cluster_size=65536,preallocation=metadata internal.qcow2 SIZE; qemu-img snapshot -c sN internal.qcow2",
		},
	})
	for _, size := range h.cfg.SnapshotOrigins {
		if err := h.snapshotSize(t, size); err != nil {
			return err
		}
	}
	return nil
}

// snapshotSize measures every target on an origin of size bytes. Errors of
// one target are noted in its cell; it returns an error only when the
// harness is cancelled.
func (h *harness) snapshotSize(t *Table, size int64) error {
	id := sizeID(size)
	r := t.row(id, "origin of "+strings.Replace(id, "GiB", " GiB", 1), float64(size)/(1<<30))
	dir, err := h.dir("snapshot", id)
	if err != nil {
		return err
	}
	pool := filepath.Join(dir, "pool.img")
	built := false
	m := h.mark()
	for _, ph := range snapshotPhases(h) {
		if err := h.ctx.Err(); err != nil {
			return err
		}
		switch ph {
		case "build":
			h.progress("snapshot: build a %s origin (thinpool)", id)
			err = h.snapshotBuild(r, pool, size)
			built = err == nil
			if err != nil {
				h.logf("  build the %s origin: %v", id, err)
				for _, tg := range []string{TargetEngine, TargetThinpool} {
					r.note(tg, "failed: origin: "+err.Error())
				}
			}
			continue
		case TargetQcow2, TargetQcow2Int:
			h.progress("snapshot: %s, %s origin", ph, id)
			err = h.snapshotQcow2(t, r, ph, filepath.Join(dir, ph), size)
		default:
			h.progress("snapshot: %s, %s origin", ph, id)
			if !built {
				continue
			}
			if ph == TargetEngine {
				err = h.snapshotEngine(t, r, pool)
			} else {
				err = h.snapshotDaemon(t, r, pool)
			}
		}
		if err != nil {
			if h.ctx.Err() != nil {
				return h.ctx.Err()
			}
			h.logf("  %s, %s origin: %v", ph, id, err)
			r.note(ph, "failed: "+err.Error())
		}
	}
	h.unwind(m) // stops the daemon: then nothing holds the files
	return os.RemoveAll(dir)
}

// sizeID names a size in whole GiB, or else MiB: "10GiB", "512MiB".
func sizeID(size int64) string {
	if size%(1<<30) == 0 {
		return fmt.Sprintf("%dGiB", size>>30)
	}
	return fmt.Sprintf("%dMiB", size>>20)
}

// snapshotBuild creates the pool file with a device "origin" of size bytes
// whose every block is mapped, and closes it.
func (h *harness) snapshotBuild(r *Row, pool string, size int64) error {
	start := time.Now()
	p, err := createMetaPool(pool, thinpool.Options{DataSize: size + snapshotMargin})
	if err != nil {
		return err
	}
	err = writeOrigin(p, size)
	if cerr := p.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	build := time.Since(start)
	fi, err := os.Stat(pool)
	if err != nil {
		return err
	}
	alloc, err := allocated(pool)
	if err != nil {
		return err
	}
	msg := fmt.Sprintf("origin built in %.1f s; the pool file is %s with %s allocated: the metadata (the data area is a hole, see Method)",
		build.Seconds(), ibytes(fi.Size()), ibytes(alloc))
	h.logf("  %s", msg)
	r.note(TargetEngine, msg)
	r.note(TargetThinpool, "the engine's pool, served by its daemon")
	return nil
}

// writeOrigin creates the device "origin" of size bytes in p and maps every
// block of it: one 4 KiB write of distinct data at the start of each block,
// in order. It checks that every block is mapped.
func writeOrigin(p *thinpool.Pool, size int64) error {
	o, err := p.CreateThin("origin", size, nil)
	if err != nil {
		return err
	}
	bs := p.BlockSize()
	buf := make([]byte, 4<<10)
	for v := int64(0); v < size/bs; v++ {
		fillBlock(buf, uint64(v))
		if _, err := o.WriteAt(buf, v*bs); err != nil {
			return err
		}
	}
	if err := p.Sync(); err != nil {
		return err
	}
	u, err := o.Usage()
	if err != nil {
		return err
	}
	if want := uint64(size / bs); u.Mapped != want || p.Usage().UsedBlocks != want {
		return fmt.Errorf("origin maps %d blocks and the pool uses %d, want %d", u.Mapped, p.Usage().UsedBlocks, want)
	}
	return nil
}

// snapshotEngine times Pool.Snapshot of the origin, once per run.
func (h *harness) snapshotEngine(t *Table, r *Row, pool string) error {
	p, err := thinpool.Open(pool)
	if err != nil {
		return err
	}
	defer p.Close()
	for run := range h.cfg.Runs {
		name := fmt.Sprintf("e%d", run+1)
		d, err := timed(func() error {
			_, err := p.Snapshot("origin", name, false)
			return err
		})
		if err != nil {
			return err
		}
		h.record(t, r, TargetEngine, ms(d))
	}
	return p.Close()
}

// snapshotDaemon serves the pool with its daemon and times thinctl snapshot
// create, once per run. The daemon runs until the end of the size.
func (h *harness) snapshotDaemon(t *Table, r *Row, pool string) error {
	d, err := h.thinPoolAt(pool)
	if err != nil {
		return err
	}
	for run := range h.cfg.Runs {
		name := fmt.Sprintf("t%d", run+1)
		dur, err := timed(func() error {
			_, err := d.ctl("snapshot", "create", "origin", name)
			return err
		})
		if err != nil {
			return err
		}
		h.record(t, r, TargetThinpool, ms(dur))
	}
	return nil
}

// snapshotQcow2 creates a qcow2 origin of size bytes with every cluster
// mapped in dir and times target's kind of snapshot of it, once per run.
func (h *harness) snapshotQcow2(t *Table, r *Row, target, dir string, size int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	origin := filepath.Join(dir, "origin.qcow2")
	if err := h.qcow2Create(origin, size, "", "preallocation=metadata"); err != nil {
		return err
	}
	if err := h.qcow2Mapped(origin); err != nil {
		return err
	}
	if alloc, err := allocated(origin); err == nil {
		r.note(target, fmt.Sprintf("origin image: %s allocated (L1, L2 and refcount tables)", ibytes(alloc)))
	}
	for run := range h.cfg.Runs {
		var snap func() error
		if target == TargetQcow2 {
			img := filepath.Join(dir, fmt.Sprintf("snap%d.qcow2", run+1))
			snap = func() error { return h.qcow2Create(img, 0, origin) }
		} else {
			name := fmt.Sprintf("s%d", run+1)
			snap = func() error {
				_, err := h.sh(nil, "qemu-img", "snapshot", "-c", name, origin)
				return err
			}
		}
		d, err := timed(snap)
		if err != nil {
			return err
		}
		h.record(t, r, target, ms(d))
	}
	return nil
}

// qcow2Mapped checks with qemu-img check that every cluster of img is
// allocated.
func (h *harness) qcow2Mapped(img string) error {
	out, err := h.sh(nil, "qemu-img", "check", "--output=json", img)
	if err != nil {
		return err
	}
	var c struct {
		Total     int64 `json:"total-clusters"`
		Allocated int64 `json:"allocated-clusters"`
	}
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		return fmt.Errorf("qemu-img check output: %w", err)
	}
	if c.Total == 0 || c.Allocated != c.Total {
		return fmt.Errorf("%s: %d of %d clusters allocated, want all", img, c.Allocated, c.Total)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }
