package bench

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/thinpool/thinpool/thinpool"
)

// The depth workload: read throughput of the device at the end of a chain
// of 1, 10, 100 snapshots, each of which changed some blocks of the one
// before. dm-thin style mappings resolve every block in one lookup at any
// depth; a qcow2 chain looks a cluster up image by image down the chain.

func init() {
	register(workload{
		id:    "depth",
		about: "read throughput at the end of a chain of 1, 10, 100 snapshots",
		steps: func(h *harness) int {
			n := 0
			for _, t := range h.depthTargets() {
				if t == TargetQcow2 || t == TargetThinpool || t == TargetEngine {
					n++ // building the chain
				}
			}
			return n + h.cfg.Runs*len(h.cfg.Depths)*len(h.depthTargets())
		},
		run: runDepth,
	})
}

// depthChanged is how many 64 KiB blocks each snapshot of the chain
// rewrites (at random).
func depthChanged(c Config) int {
	if c.Quick {
		return 16
	}
	return 64
}

// depthMetadataSize is the metadata area of the depth workload's pool.
const depthMetadataSize = 256 << 20

func (h *harness) depthTargets() []string {
	var ts []string
	for _, t := range []string{TargetThinpool, TargetEngine, TargetPlain, TargetQcow2} {
		if h.on(t) {
			ts = append(ts, t)
		}
	}
	return ts
}

func runDepth(h *harness) error {
	origin := h.cfg.OriginSize
	changed := depthChanged(h.cfg)
	method := fmt.Sprintf("An origin of %s is written in full; then a chain of snapshots is made, each a writable snapshot of the one before in which %d random 64 KiB blocks are rewritten. "+
		"The device at depth N is the Nth snapshot. thinpool and the engine use one pool (built through the Go API, then served by the daemon for the thinpool rows) with a metadata area of %s, as `thinctl pool create --metadata-size` makes it (the default area of a pool this small cannot hold the maps of a chain of 100 that each changed blocks: every snapshot keeps its own extent map); qcow2 a chain of backing-file overlays (`qemu-img create -b`, the blocks written with `qemu-io`), the overlay at depth N exported like the other qcow2 devices; plain is a fully written plain loop device, for reference (it has no snapshots). "+
		"The page cache is dropped before every read. Sequential: one pass of 1 MiB reads at QD16 over the whole device; random: 4 KiB reads at QD16 for %s after a %s ramp.", ibytes(origin), changed, ibytes(depthMetadataSize), h.cfg.Runtime, h.cfg.Ramp)
	seqT := h.table(&Table{ID: "depth-seq", Title: "Snapshot depth: sequential read", Unit: "MiB/s", XLabel: "snapshot depth", Method: method,
		Goal: "read throughput at depth 100 within 10% of depth 1 (qcow2 degrades with chain depth)"})
	// --quick leaves out the random reads: they run for a fixed time.
	var randT *Table
	if !h.cfg.Quick {
		randT = h.table(&Table{ID: "depth-rand", Title: "Snapshot depth: random 4 KiB read", Unit: "IOPS", XLabel: "snapshot depth", Method: method,
			Goal: "within 10% of depth 1 at depth 100"})
	}
	for _, d := range h.cfg.Depths {
		seqT.row("depth"+strconv.Itoa(d), "depth "+strconv.Itoa(d), float64(d))
		if randT != nil {
			randT.row("depth"+strconv.Itoa(d), "depth "+strconv.Itoa(d), float64(d))
		}
	}
	sp := fioParams{"FILENAME": "/dev/loopN", "SIZE": strconv.FormatInt(origin, 10), "BS": "1m", "IODEPTH": "16", "RW": "read", "RUNTIME": "86400", "FSYNC": "0"}
	rp := fioParams{"FILENAME": "/dev/loopN", "SIZE": strconv.FormatInt(origin, 10), "BS": "4k", "IODEPTH": "16", "RW": "randread", "RUNTIME": secs(h.cfg.Runtime), "RAMP": secs(h.cfg.Ramp), "FSYNC": "0"}
	seqT.Commands = []string{fioCommand("seq.fio", sp, "FILENAME", "SIZE", "BS", "IODEPTH", "RW", "RUNTIME", "FSYNC")}
	if randT != nil {
		randT.Commands = []string{fioCommand("rand.fio", rp, "FILENAME", "SIZE", "BS", "IODEPTH", "RW", "RUNTIME", "RAMP", "FSYNC")}
	}
	maxDepth := slices.Max(h.cfg.Depths)

	failAll := func(tg string, err error) {
		h.logf("depth %s: %v", tg, err)
		for _, t := range []*Table{seqT, randT} {
			if t == nil {
				continue
			}
			for _, r := range t.Rows {
				r.note(tg, "failed: "+err.Error())
			}
		}
	}
	// Build the chains once.
	var pool, qdir string
	var plainDev string
	ts := h.depthTargets()
	if slices.Contains(ts, TargetThinpool) || slices.Contains(ts, TargetEngine) {
		h.progress("depth: build a chain of %d snapshots in a pool", maxDepth)
		d, err := h.dir("depth", "thin")
		if err == nil {
			pool = filepath.Join(d, "pool.img")
			err = h.buildThinChain(pool, origin, maxDepth, changed)
		}
		if err != nil {
			failAll(TargetThinpool, err)
			failAll(TargetEngine, err)
			ts = slices.DeleteFunc(ts, func(t string) bool { return t == TargetThinpool || t == TargetEngine })
		}
	}
	if slices.Contains(ts, TargetQcow2) {
		h.progress("depth: build a chain of %d qcow2 overlays", maxDepth)
		d, err := h.dir("depth", "qcow2")
		if err == nil {
			qdir = d
			err = h.buildQcow2Chain(d, origin, maxDepth, changed)
		}
		if err != nil {
			failAll(TargetQcow2, err)
			ts = slices.DeleteFunc(ts, func(t string) bool { return t == TargetQcow2 })
		}
	}
	if slices.Contains(ts, TargetPlain) {
		dev, _, err := h.plainLoop(filepath.Join("depth", "plain"), origin)
		if err == nil {
			err = h.fill(dev, origin)
		}
		if err != nil {
			failAll(TargetPlain, err)
			ts = slices.DeleteFunc(ts, func(t string) bool { return t == TargetPlain })
		}
		plainDev = dev
	}

	for run := range h.cfg.Runs {
		for _, tg := range rotate(ts, run) {
			m := h.mark()
			err := h.depthRun(seqT, randT, run, tg, pool, qdir, plainDev, sp, rp)
			h.unwind(m)
			if err != nil {
				failAll(tg, err)
			}
			if h.ctx.Err() != nil {
				return h.ctx.Err()
			}
		}
	}
	return nil
}

// depthRun measures every depth on target tg once.
func (h *harness) depthRun(seqT, randT *Table, run int, tg, pool, qdir, plainDev string, sp, rp fioParams) error {
	origin := h.cfg.OriginSize
	var dev func(depth int) (string, error)
	switch tg {
	case TargetEngine:
		p, err := thinpool.Open(pool)
		if err != nil {
			return err
		}
		defer p.Close()
		for _, depth := range h.cfg.Depths {
			h.progress("depth run %d: depth %d on %s", run+1, depth, tg)
			th, err := p.Device("snap" + strconv.Itoa(depth))
			if err != nil {
				return err
			}
			id := "depth" + strconv.Itoa(depth)
			h.coldCache(seqT.Row(id), tg)
			ios, el, err := runEngine(h.ctx, th, engineJob{bs: 1 << 20, qd: 16, size: origin, runtime: 24 * time.Hour, seed: 1})
			if err != nil {
				return err
			}
			h.record(seqT, seqT.Row(id), tg, float64(ios)/el.Seconds())
			if randT == nil {
				continue
			}
			h.coldCache(randT.Row(id), tg)
			ios, el, err = runEngine(h.ctx, th, engineJob{bs: 4096, qd: 16, size: origin, random: true, runtime: h.cfg.Runtime, ramp: h.cfg.Ramp, seed: 1})
			if err != nil {
				return err
			}
			h.record(randT, randT.Row(id), tg, float64(ios)/el.Seconds())
		}
		return p.Close()
	case TargetThinpool:
		td, err := h.thinPoolAt(pool)
		if err != nil {
			return err
		}
		dev = func(depth int) (string, error) { return td.attach("snap" + strconv.Itoa(depth)) }
	case TargetQcow2:
		dev = func(depth int) (string, error) {
			d, _, err := h.qcow2Loop(filepath.Join(qdir, fmt.Sprintf("snap%d.qcow2", depth)))
			return d, err
		}
	case TargetPlain:
		dev = func(int) (string, error) { return plainDev, nil }
	}
	for _, depth := range h.cfg.Depths {
		h.progress("depth run %d: depth %d on %s", run+1, depth, tg)
		m := h.mark()
		d, err := dev(depth)
		if err != nil {
			return err
		}
		id := "depth" + strconv.Itoa(depth)
		sp, rp := clone(sp), clone(rp)
		sp["FILENAME"], rp["FILENAME"] = d, d
		h.coldCache(seqT.Row(id), tg)
		res, err := h.fio("seq.fio", sp, 30*time.Minute)
		if err != nil {
			return err
		}
		h.record(seqT, seqT.Row(id), tg, res.BW/(1<<20))
		if randT == nil {
			h.unwind(m)
			continue
		}
		h.coldCache(randT.Row(id), tg)
		res, err = h.fio("rand.fio", rp, h.cfg.Runtime+h.cfg.Ramp+2*time.Minute)
		if err != nil {
			return err
		}
		h.record(randT, randT.Row(id), tg, res.IOPS)
		h.unwind(m)
	}
	return nil
}

func clone(p fioParams) fioParams {
	q := fioParams{}
	for k, v := range p {
		q[k] = v
	}
	return q
}

// buildThinChain creates a pool at path with a fully written origin and a
// chain of depth snapshots, snapN being a snapshot of snapN-1 (snap0 the
// origin) with changed random 64 KiB blocks rewritten.
func (h *harness) buildThinChain(path string, origin int64, depth, changed int) error {
	// Every snapshot keeps its own extent map in the checkpoint: at depth N
	// it holds about 2×changed×N extents, and the whole chain about
	// changed×N² (dm-thin copies a 4 KiB btree leaf per changed block
	// instead). The default metadata area of a pool this small is a few
	// MiB, too little for a chain of 100, so the pool gets what a user
	// would give it: pool create --metadata-size.
	p, err := thinpool.Create(path, thinpool.Options{
		DataSize:     origin + int64(depth*changed)<<16 + 1<<30,
		MetadataSize: depthMetadataSize,
	})
	if err != nil {
		return err
	}
	defer p.Close()
	th, err := p.CreateThin("snap0", origin, nil)
	if err != nil {
		return err
	}
	if _, _, err := runEngine(h.ctx, th, engineJob{write: true, bs: 1 << 20, qd: 16, size: origin, runtime: 24 * time.Hour, seed: 7}); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(3, 3))
	buf := make([]byte, 64<<10)
	for i := 1; i <= depth; i++ {
		s, err := p.Snapshot("snap"+strconv.Itoa(i-1), "snap"+strconv.Itoa(i), false)
		if err != nil {
			return err
		}
		for range changed {
			for k := 0; k < len(buf); k += 8 {
				buf[k] = byte(r.Uint32())
			}
			if _, err := s.WriteAt(buf, r.Int64N(origin>>16)<<16); err != nil {
				return err
			}
		}
		if err := p.Sync(); err != nil {
			return err
		}
	}
	return p.Close()
}

// buildQcow2Chain makes snap0.qcow2, fully written, and snap1 … snapN,
// each an overlay of the one before with changed random 64 KiB clusters
// rewritten.
func (h *harness) buildQcow2Chain(dir string, origin int64, depth, changed int) error {
	base := filepath.Join(dir, "snap0.qcow2")
	if err := h.qcow2Create(base, origin, ""); err != nil {
		return err
	}
	if _, err := h.sh(nil, "qemu-io", "-f", "qcow2", "-c", fmt.Sprintf("write -P 0x5a 0 %d", origin), base); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(3, 3))
	for i := 1; i <= depth; i++ {
		img := filepath.Join(dir, fmt.Sprintf("snap%d.qcow2", i))
		if err := h.qcow2Create(img, 0, filepath.Base(fmt.Sprintf("snap%d.qcow2", i-1))); err != nil {
			return err
		}
		args := []string{"-f", "qcow2"}
		for range changed {
			args = append(args, "-c", fmt.Sprintf("write -P %d %d 64k", 1+r.IntN(254), r.Int64N(origin>>16)<<16))
		}
		if _, err := h.sh(nil, "qemu-io", append(args, img)...); err != nil {
			return err
		}
	}
	return nil
}
