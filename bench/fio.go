package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/thinpool/thinpool/thinpool"
)

// The fio workload: sequential 1 MiB and random 4 KiB reads and writes at
// queue depths 1 and 16 on each target's block device, with the same job
// files (bench/fio/seq.fio, rand.fio), and the same I/O pattern through
// the engine's Go API.

func init() {
	register(workload{
		id:    "fio",
		about: "fio on the block device: sequential 1 MiB and random 4 KiB I/O at QD1 and QD16",
		steps: func(h *harness) int { return h.cfg.Runs * (len(fioCases(h.cfg.Quick)) + 1) * len(h.fioTargets()) },
		run:   runFio,
	})
}

// fioCase is one row of the fio tables.
type fioCase struct {
	id, title string
	random    bool
	write     bool
	qd        int
	// first marks the pass that writes the fresh device: it provisions
	// every block and runs to the end of the region, not for runtime.
	first bool
}

func fioCases(quick bool) []fioCase {
	all := []fioCase{
		{id: "seqwrite-first-qd16", title: "seq write 1 MiB QD16, first write (fresh device)", write: true, qd: 16, first: true},
		{id: "seqwrite-qd16", title: "seq write 1 MiB QD16, overwrite", write: true, qd: 16},
		{id: "seqwrite-qd1", title: "seq write 1 MiB QD1, overwrite", write: true, qd: 1},
		{id: "seqread-qd16", title: "seq read 1 MiB QD16", qd: 16},
		{id: "seqread-qd1", title: "seq read 1 MiB QD1", qd: 1},
		{id: "randwrite-qd16", title: "rand write 4 KiB QD16", random: true, write: true, qd: 16},
		{id: "randwrite-qd1", title: "rand write 4 KiB QD1", random: true, write: true, qd: 1},
		{id: "randread-qd16", title: "rand read 4 KiB QD16", random: true, qd: 16},
		{id: "randread-qd1", title: "rand read 4 KiB QD1", random: true, qd: 1},
	}
	if !quick {
		return all
	}
	var q []fioCase
	for _, c := range all {
		if c.qd == 16 && c.id != "seqwrite-qd16" {
			q = append(q, c)
		}
	}
	return q
}

// fioTargets are the targets of the fio workload that can run.
func (h *harness) fioTargets() []string {
	var ts []string
	for _, t := range []string{TargetThinpool, TargetEngine, TargetPlain, TargetQcow2} {
		if h.on(t) {
			ts = append(ts, t)
		}
	}
	return ts
}

func (c fioCase) rw() string {
	switch {
	case c.random && c.write:
		return "randwrite"
	case c.random:
		return "randread"
	case c.write:
		return "write"
	}
	return "read"
}

func (c fioCase) params(h *harness, dev string) (string, fioParams) {
	p := fioParams{
		"FILENAME": dev, "SIZE": strconv.FormatInt(h.cfg.Size, 10), "IODEPTH": strconv.Itoa(c.qd),
		"RW": c.rw(), "RUNTIME": secs(h.cfg.Runtime), "RAMP": secs(h.cfg.Ramp), "FSYNC": "0",
	}
	if c.write {
		p["FSYNC"] = "1"
	}
	if c.first {
		p["RUNTIME"] = "86400"
	}
	if c.random {
		p["BS"] = "4k"
		return "rand.fio", p
	}
	p["BS"] = "1m"
	return "seq.fio", p
}

func runFio(h *harness) error {
	cases := fioCases(h.cfg.Quick)
	method := fmt.Sprintf("fio (libaio, `direct=1`) on each target's block device, over its first %s (`--size`; the working set: the page cache is dropped before every read job, so reads start cold; thinpool and qcow2 read their files through the host page cache, so a job that reads a block twice may find it there, the plain loop device never does). "+
		"Each run sets every target up afresh and runs each job on every target in turn, rotating the order from run to run, so compared figures are taken minutes apart at most. "+
		"The first row writes the fresh device once (every block is provisioned; it is also the prefill for everything after); the other sequential rows make one pass or stop after %s; random rows run for %s after a %s ramp. Writes end with an fsync that counts in the time. "+
		"The engine row runs the same pattern through the Go API (one goroutine per queue slot, `Sync` at the end of writes): no FUSE, no loop device. "+
		"thinpool and the engine write 256 KiB or more at once with O_DIRECT on the pool file (every 1 MiB write here) and smaller writes through the host page cache; qemu-storage-daemon writes the qcow2 file through the page cache (its default), and the plain loop device writes its file with direct I/O.",
		ibytes(h.cfg.Size), h.cfg.Runtime, h.cfg.Runtime, h.cfg.Ramp)
	seq := h.table(&Table{ID: "fio-seq", Title: "Block device: sequential 1 MiB I/O", Unit: "MiB/s", Method: method,
		Goal: "thinpool ≥ 0.7× the plain loop device and ≥ 1.0× qcow2"})
	rnd := h.table(&Table{ID: "fio-rand", Title: "Block device: random 4 KiB I/O", Unit: "IOPS", Method: method,
		Goal: "thinpool ≥ 1.0× qcow2"})
	for _, c := range cases {
		t := seq
		if c.random {
			t = rnd
		}
		file, p := c.params(h, "/dev/loopN")
		cmd := fioCommand(file, p, "FILENAME", "SIZE", "BS", "IODEPTH", "RW", "RUNTIME", "RAMP", "FSYNC")
		t.Commands = append(t.Commands, cmd)
		t.row(c.id, c.title, 0)
	}
	devSize := h.cfg.Size
	for run := range h.cfg.Runs {
		devs := map[string]string{}
		var engine *thinpool.Thin
		ts := rotate(h.fioTargets(), run)
		for _, tg := range ts {
			h.progress("fio run %d: set up %s", run+1, tg)
			var err error
			dir := filepath.Join("fio", strconv.Itoa(run), tg)
			switch tg {
			case TargetThinpool:
				var d *thinDaemon
				if d, err = h.thinPool(dir, devSize+1<<30); err == nil {
					if _, err = d.ctl("device", "create", "bench", "--size", strconv.FormatInt(devSize, 10)+"B"); err == nil {
						devs[tg], err = d.attach("bench")
					}
				}
			case TargetEngine:
				engine, err = h.enginePool(dir, devSize+1<<30, devSize)
			case TargetPlain:
				devs[tg], _, err = h.plainLoop(dir, devSize)
			case TargetQcow2:
				var d string
				if d, err = h.dir(dir); err == nil {
					img := filepath.Join(d, "disk.qcow2")
					if err = h.qcow2Create(img, devSize, ""); err == nil {
						devs[tg], _, err = h.qcow2Loop(img)
					}
				}
			}
			if err != nil {
				for _, c := range cases {
					t := seq
					if c.random {
						t = rnd
					}
					t.Row(c.id).note(tg, "set-up failed: "+err.Error())
				}
				delete(devs, tg)
				if tg == TargetEngine {
					engine = nil
				}
			}
		}
		for _, c := range cases {
			t := seq
			if c.random {
				t = rnd
			}
			r := t.Row(c.id)
			for _, tg := range ts {
				if devs[tg] == "" && (tg != TargetEngine || engine == nil) {
					continue
				}
				h.progress("fio run %d: %s on %s", run+1, c.title, tg)
				if !c.write {
					h.coldCache(r, tg)
				}
				v, err := h.fioCase(c, tg, devs[tg], engine)
				if err != nil {
					h.logf("%s on %s: %v", c.id, tg, err)
					r.note(tg, "failed: "+err.Error())
					continue
				}
				h.record(t, r, tg, v)
			}
		}
		h.cleanup()
		if err := os.RemoveAll(filepath.Join(h.work, "fio", strconv.Itoa(run))); err != nil {
			return err
		}
	}
	return nil
}

// fioCase runs case c on target tg and returns MiB/s or IOPS.
func (h *harness) fioCase(c fioCase, tg, dev string, engine *thinpool.Thin) (float64, error) {
	if tg == TargetEngine {
		j := engineJob{write: c.write, qd: c.qd, size: h.cfg.Size, random: c.random, runtime: h.cfg.Runtime, ramp: h.cfg.Ramp, seed: 1, bs: 1 << 20}
		if c.random {
			j.bs = 4096
		}
		if c.first {
			j.runtime = 24 * time.Hour
		}
		ios, el, err := runEngine(h.ctx, engine, j)
		if err != nil {
			return 0, err
		}
		if c.random {
			return float64(ios) / el.Seconds(), nil
		}
		return float64(ios*j.bs) / el.Seconds() / (1 << 20), nil
	}
	file, p := c.params(h, dev)
	limit := h.cfg.Runtime + h.cfg.Ramp + 2*time.Minute
	if c.first {
		limit = 30 * time.Minute
	}
	res, err := h.fio(file, p, limit)
	if err != nil {
		return 0, err
	}
	if c.random {
		return res.IOPS, nil
	}
	return res.BW / (1 << 20), nil
}

// enginePool creates a pool of dataSize bytes in dir with one thin device
// of devSize bytes, closed at the end of the workload.
func (h *harness) enginePool(dir string, dataSize, devSize int64) (*thinpool.Thin, error) {
	d, err := h.dir(dir)
	if err != nil {
		return nil, err
	}
	p, err := thinpool.Create(filepath.Join(d, "pool.img"), thinpool.Options{DataSize: dataSize})
	if err != nil {
		return nil, err
	}
	h.defer_(func() {
		if err := p.Close(); err != nil {
			h.logf("close engine pool: %v", err)
		}
	})
	return p.CreateThin("bench", devSize, nil)
}
