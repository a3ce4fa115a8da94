package bench

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The first-write workload: random 4 KiB writes into a fresh writable
// snapshot (or overlay) of a fully written origin. Every write lands on a
// block the snapshot still shares, so each one pays the target's
// copy-on-write: thinpool copies the 64 KiB block, qcow2 the 64 KiB
// cluster, overlayfs the whole file (once).

func init() {
	register(workload{
		id:    "firstwrite",
		about: "random 4 KiB first writes into a fresh snapshot of a fully written origin",
		steps: func(h *harness) int { return h.cfg.Runs * len(firstWriteCases(h.cfg)) * len(h.firstWriteTargets()) },
		run:   runFirstWrite,
	})
}

type firstWriteCase struct {
	id, title string
	qd        int
	ioSize    int64 // bytes written: ioSize/4096 writes
}

func firstWriteCases(c Config) []firstWriteCase {
	// At most a sixteenth of the origin in 4 KiB writes: the writes hit
	// about as many distinct 64 KiB blocks, nearly all first writes.
	n := c.OriginSize / 16
	return []firstWriteCase{
		{id: "qd16", title: "random 4 KiB first writes, QD16", qd: 16, ioSize: n},
		{id: "qd1", title: "random 4 KiB first writes, QD1", qd: 1, ioSize: n / 4},
	}
}

func (h *harness) firstWriteTargets() []string {
	var ts []string
	for _, t := range []string{TargetThinpool, TargetEngine, TargetPlain, TargetQcow2, TargetOverlayfs} {
		if h.on(t) {
			ts = append(ts, t)
		}
	}
	return ts
}

func runFirstWrite(h *harness) error {
	cases := firstWriteCases(h.cfg)
	origin := h.cfg.OriginSize
	t := h.table(&Table{
		ID: "firstwrite", Title: "First writes into a fresh snapshot", Unit: "IOPS",
		Method: fmt.Sprintf("An origin of %s is written in full (1 MiB sequential writes), then a writable snapshot of it is made, the page cache is dropped (every target reads the origin's blocks from the disk) and fio writes 4 KiB blocks at random offsets of the snapshot, each 4 KiB block at most once, with `direct=1`, ending with an fsync; the rate counts the time from opening the snapshot for writing to the end of the fsync. "+
			"thinpool: `thinctl snapshot create` of an attached origin, the snapshot attached as a loop device; engine: `Pool.Snapshot` and 4 KiB `WriteAt`s from Go; qcow2: a backing-file overlay (`qemu-img create -b`) exported like the other qcow2 devices, its base written with `qemu-io -c 'write -P 0x5a 0 SIZE'`; "+
			"overlayfs: a file of the origin's size in the lower directory, written the same way, and fio on the file in the merged directory: opening it for writing copies the whole file up first; plain: the same writes on a plain loop device, with nothing to copy (the limit). A fresh snapshot for each row and run.", ibytes(origin)),
		Goal: "first-write IOPS into a snapshot ≥ 1.5× the qcow2 overlay",
	})
	for _, c := range cases {
		p := fioParams{"FILENAME": "/dev/loopN", "SIZE": strconv.FormatInt(origin, 10), "IOSIZE": strconv.FormatInt(c.ioSize, 10), "IODEPTH": strconv.Itoa(c.qd)}
		t.Commands = append(t.Commands, fioCommand("firstwrite.fio", p, "FILENAME", "SIZE", "IOSIZE", "IODEPTH"))
		t.row(c.id, fmt.Sprintf("%s (%d writes)", c.title, c.ioSize/4096), 0)
	}
	for run := range h.cfg.Runs {
		for _, tg := range rotate(h.firstWriteTargets(), run) {
			m := h.mark()
			dir := filepath.Join("firstwrite", strconv.Itoa(run), tg)
			err := h.firstWriteTarget(t, cases, run, tg, dir)
			h.unwind(m)
			if err != nil {
				h.logf("firstwrite %s: %v", tg, err)
				for _, c := range cases {
					t.Row(c.id).note(tg, "failed: "+err.Error())
				}
			}
			if err := os.RemoveAll(filepath.Join(h.work, dir)); err != nil {
				return err
			}
			if h.ctx.Err() != nil {
				return h.ctx.Err()
			}
		}
	}
	return nil
}

// firstWriteTarget sets up target tg's origin in dir and measures every
// case on a fresh snapshot of it.
func (h *harness) firstWriteTarget(t *Table, cases []firstWriteCase, run int, tg, dir string) error {
	origin := h.cfg.OriginSize
	d, err := h.dir(dir)
	if err != nil {
		return err
	}
	// snap makes a fresh snapshot for case i and returns the file fio
	// writes to.
	var snap func(i int) (string, error)
	switch tg {
	case TargetThinpool:
		td, err := h.thinPool(dir, 2*origin+1<<30)
		if err != nil {
			return err
		}
		if _, err := td.ctl("device", "create", "origin", "--size", strconv.FormatInt(origin, 10)+"B"); err != nil {
			return err
		}
		dev, err := td.attach("origin")
		if err != nil {
			return err
		}
		if err := h.fill(dev, origin); err != nil {
			return err
		}
		snap = func(i int) (string, error) {
			name := "snap" + strconv.Itoa(i)
			if _, err := td.ctl("snapshot", "create", "origin", name); err != nil {
				return "", err
			}
			return td.attach(name)
		}
	case TargetEngine:
		th, err := h.enginePool(dir, 2*origin+1<<30, origin)
		if err != nil {
			return err
		}
		if _, _, err := runEngine(h.ctx, th, engineJob{write: true, bs: 1 << 20, qd: 16, size: origin, runtime: 24 * time.Hour, seed: 7}); err != nil {
			return err
		}
		for i, c := range cases {
			h.progress("first writes run %d: %s on %s", run+1, c.id, tg)
			s, err := th.Pool().Snapshot("bench", "snap"+strconv.Itoa(i), false)
			if err != nil {
				return err
			}
			h.coldCache(t.Row(c.id), tg)
			ios, el, err := runEngine(h.ctx, s, engineJob{write: true, bs: 4096, qd: c.qd, size: origin, random: true, ios: c.ioSize / 4096, seed: 1})
			if err != nil {
				return err
			}
			r := t.Row(c.id)
			h.record(t, r, tg, float64(ios)/el.Seconds())
		}
		return nil
	case TargetPlain:
		dev, _, err := h.plainLoop(dir, origin)
		if err != nil {
			return err
		}
		if err := h.fill(dev, origin); err != nil {
			return err
		}
		snap = func(int) (string, error) { return dev, nil }
	case TargetQcow2:
		base := filepath.Join(d, "base.qcow2")
		if err := h.qcow2Create(base, origin, ""); err != nil {
			return err
		}
		if _, err := h.sh(nil, "qemu-io", "-f", "qcow2", "-c", fmt.Sprintf("write -P 0x5a 0 %d", origin), base); err != nil {
			return err
		}
		snap = func(i int) (string, error) {
			img := filepath.Join(d, fmt.Sprintf("snap%d.qcow2", i))
			if err := h.qcow2Create(img, 0, base); err != nil {
				return "", err
			}
			dev, _, err := h.qcow2Loop(img)
			return dev, err
		}
	case TargetOverlayfs:
		lower := filepath.Join(d, "lower")
		if err := os.Mkdir(lower, 0o755); err != nil {
			return err
		}
		if err := writeRandomFile(filepath.Join(lower, "disk.img"), origin, 7); err != nil {
			return err
		}
		snap = func(i int) (string, error) {
			merged, err := h.mountOverlay([]string{lower}, filepath.Join(d, "ovl"+strconv.Itoa(i)))
			return filepath.Join(merged, "disk.img"), err
		}
	default:
		return fmt.Errorf("no first-write set-up for %s", tg)
	}
	for i, c := range cases {
		h.progress("first writes run %d: %s on %s", run+1, c.id, tg)
		file, err := snap(i)
		if err != nil {
			return err
		}
		// Every target reads the origin from the disk: none finds it in
		// the page cache because of how the origin happened to be written.
		h.coldCache(t.Row(c.id), tg)
		// Open for writing first, in the measured time: that is when
		// overlayfs copies the file up.
		open, err := timed(func() error {
			f, err := os.OpenFile(file, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			return f.Close()
		})
		if err != nil {
			return err
		}
		p := fioParams{"FILENAME": file, "SIZE": strconv.FormatInt(origin, 10), "IOSIZE": strconv.FormatInt(c.ioSize, 10), "IODEPTH": strconv.Itoa(c.qd)}
		res, err := h.fio("firstwrite.fio", p, 20*time.Minute)
		if err != nil {
			return err
		}
		r := t.Row(c.id)
		h.record(t, r, tg, float64(res.IOs)/(open+res.Runtime).Seconds())
		if open > 100*time.Millisecond {
			r.note(tg, fmt.Sprintf("opening the file for writing took %s (copy-up)", open.Round(10*time.Millisecond)))
		}
	}
	return nil
}

// fill writes the first size bytes of dev once, sequentially, with fio.
func (h *harness) fill(dev string, size int64) error {
	p := fioParams{"FILENAME": dev, "SIZE": strconv.FormatInt(size, 10), "BS": "1m", "IODEPTH": "16", "RW": "write", "RUNTIME": "86400", "FSYNC": "1"}
	_, err := h.fio("seq.fio", p, 30*time.Minute)
	return err
}

// writeRandomFile writes size bytes of pseudo-random data to path and
// syncs it.
func writeRandomFile(path string, size int64, seed uint64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(seed, seed))
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		for i := 0; i < len(buf); i += 8 {
			v := r.Uint64()
			for k := range 8 {
				buf[i+k] = byte(v >> (8 * k))
			}
		}
		n := min(int64(len(buf)), size-off)
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// mountOverlay mounts an overlay of lowers (top first) with its upper and
// work directories in dir and returns the merged directory, unmounted at
// the end of the scope.
func (h *harness) mountOverlay(lowers []string, dir string) (string, error) {
	upper, work, merged := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")
	for _, d := range []string{upper, work, merged} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	opts := "lowerdir=" + strings.Join(lowers, ":") + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		return "", fmt.Errorf("mount overlay on %s: %w", merged, err)
	}
	h.defer_(func() {
		if err := unix.Unmount(merged, 0); err != nil {
			h.logf("unmount %s: %v", merged, err)
			_ = unix.Unmount(merged, unix.MNT_DETACH)
		}
	})
	return merged, nil
}
