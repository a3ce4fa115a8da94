package btree

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/thinpool/thinpool/extent"
)

// world is a pool's metadata in a store, next to a model: an extent.Map per
// device and the free data blocks.
type world struct {
	t    testing.TB
	rng  *rand.Rand
	st   *memStorage
	s    *Store
	ds   *DataSpace
	devs map[int]*Mapping
	// model[id] is what device id must read as.
	model map[int]*extent.Map
	// free are the data blocks to allocate from; freed are those freed in
	// the open generation (R1: they join free at commit).
	free     *extent.FreeSpace
	freed    []extent.Run
	nrBlocks uint64
	nextID   int
	// vspace is the virtual size the workload writes within.
	vspace uint64
	sb     superblock
	// nextFit allocates data blocks after the last ones, as the engine
	// does, instead of at random places.
	nextFit bool
	hint    extent.PBlock
}

// superblock is what the test's pretend superblock records at a commit.
type superblock struct {
	gen    uint64
	nodes  uint64
	dsRoot Ref
	devs   map[int]devEntry
	// model is the state the commit made durable.
	model map[int]*extent.Map
}

type devEntry struct {
	root   Ref
	blocks uint64
}

func newWorld(t testing.TB, seed uint64, nodes, nrBlocks, vspace uint64) *world {
	t.Helper()
	s, st := mustCreateStore(t, nodes)
	ds, err := NewDataSpace(s)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{
		t: t, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		st: st, s: s, ds: ds,
		devs: map[int]*Mapping{}, model: map[int]*extent.Map{},
		free: extent.NewFreeSpace(), nrBlocks: nrBlocks, vspace: vspace,
	}
	if err := w.free.Add(0, nrBlocks); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *world) fatal(err error) {
	w.t.Helper()
	if err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) create() int {
	m, err := NewMapping(w.s, w.ds)
	w.fatal(err)
	id := w.nextID
	w.nextID++
	w.devs[id], w.model[id] = m, extent.NewMap()
	return id
}

func (w *world) snapshot(origin int) int {
	m, err := w.devs[origin].Snapshot()
	w.fatal(err)
	id := w.nextID
	w.nextID++
	w.devs[id], w.model[id] = m, w.model[origin].Clone()
	return id
}

func (w *world) delete(id int) {
	w.fatal(w.devs[id].Delete(w.freeRun))
	delete(w.devs, id)
	delete(w.model, id)
}

func (w *world) freeRun(r extent.Run) { w.freed = append(w.freed, r) }

// decRemoved drops the data reference of a piece a change removed.
func (w *world) decRemoved(m extent.Mapping) {
	w.fatal(w.ds.Dec(m.P, m.Len, w.freeRun))
}

// write maps [v, v+n) of device id to newly allocated blocks (a whole-block
// write: no copy needed), as the engine does.
func (w *world) write(id int, v extent.VBlock, n uint64) error {
	for n > 0 {
		hint := extent.PBlock(w.rng.Uint64N(w.nrBlocks))
		if w.nextFit {
			hint = w.hint
		}
		r := w.free.Alloc(n, hint)
		if r.Len == 0 {
			return errors.New("data full")
		}
		w.hint = r.End()
		if err := w.ds.Inc(r.P, r.Len); err != nil {
			return err
		}
		mp := extent.Mapping{V: v, P: r.P, Len: r.Len}
		if err := w.devs[id].Insert(mp, w.decRemoved); err != nil {
			return err
		}
		w.model[id].Insert(mp, nil)
		v += extent.VBlock(r.Len)
		n -= r.Len
	}
	return nil
}

// appendWrite writes right after the block device id last wrote in v,
// continuing its pool run when that block is free, to make merges.
func (w *world) appendWrite(id int) error {
	last, ok := w.model[id].Last()
	if !ok || uint64(last.End()) >= w.vspace {
		return nil
	}
	if w.free.Take(last.PEnd(), 1) != nil {
		return nil
	}
	if err := w.ds.Inc(last.PEnd(), 1); err != nil {
		return err
	}
	mp := extent.Mapping{V: last.End(), P: last.PEnd(), Len: 1}
	if err := w.devs[id].Insert(mp, w.decRemoved); err != nil {
		return err
	}
	w.model[id].Insert(mp, nil)
	return nil
}

func (w *world) unmap(id int, v extent.VBlock, n uint64) error {
	if err := w.devs[id].Remove(v, n, w.decRemoved); err != nil {
		return err
	}
	w.model[id].Remove(v, n, nil)
	return nil
}

// commit runs the commit protocol and records the superblock.
func (w *world) commit() error {
	g := w.s.Gen()
	if err := w.s.Flush(g); err != nil {
		return err
	}
	w.st.Sync()
	w.sb = w.snapshotSuperblock(g) // durable: the superblock write and its fdatasync
	w.s.Committed(g)
	for _, r := range w.freed {
		w.fatal(w.free.Add(r.P, r.Len))
	}
	w.freed = w.freed[:0]
	return nil
}

// snapshotSuperblock is the superblock commit would write for generation g.
func (w *world) snapshotSuperblock(g uint64) superblock {
	sb := superblock{gen: g, nodes: w.s.Nodes(), dsRoot: w.ds.Root(), devs: map[int]devEntry{}}
	sb.model = w.modelClone()
	for id, m := range w.devs {
		sb.devs[id] = devEntry{root: m.Root(), blocks: m.Blocks()}
	}
	return sb
}

func (w *world) modelClone() map[int]*extent.Map {
	out := map[int]*extent.Map{}
	for id, m := range w.model {
		out[id] = m.Clone()
	}
	return out
}

// reopen opens the store, the data space map and the devices from the last
// superblock, as Open of the pool would, and the model from it.
func (w *world) reopen() {
	w.t.Helper()
	sb := w.sb
	s, err := Open(w.st, testBase, sb.nodes, sb.gen, testSeed)
	w.fatal(err)
	w.s = s
	s.SetCacheBytes(w.s.cacheBytes)
	w.ds, err = OpenDataSpace(s, sb.dsRoot)
	w.fatal(err)
	w.devs, w.model = map[int]*Mapping{}, map[int]*extent.Map{}
	for id, d := range sb.devs {
		w.devs[id] = OpenMapping(s, w.ds, d.root, d.blocks)
		w.model[id] = sb.model[id].Clone()
	}
	w.free, err = w.ds.FreeSpace(w.nrBlocks)
	w.fatal(err)
	w.freed = nil
}

// check checks every device against its model, N1, N2, N4, B1, and that
// the free data blocks are exactly those of count 0.
func (w *world) check() {
	w.t.Helper()
	roots := []rootOf{{TreeDataSpace, w.ds.Root()}}
	ids := make([]int, 0, len(w.devs))
	for id := range w.devs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		roots = append(roots, rootOf{TreeMapping, w.devs[id].Root()})
		checkMapping(w.t, w.devs[id], w.model[id])
	}
	leaves := checkStore(w.t, w.s, roots)
	checkData(w.t, w.ds, leaves)
	free := w.free.Blocks()
	for _, r := range w.freed {
		free += r.Len
	}
	if free+w.ds.Used() != w.nrBlocks {
		w.t.Fatalf("data: %d free + %d used != %d blocks", free, w.ds.Used(), w.nrBlocks)
	}
	w.free.Ascend(func(r extent.Run) bool {
		w.fatal(w.ds.Runs(r.P, r.Len, func(e extent.RefRun) bool {
			if e.Count != 0 {
				w.t.Fatalf("data block %d is free with count %d", e.P, e.Count)
			}
			return true
		}))
		return true
	})
}

// prefill writes n single-block extents into device id at every other
// block of [0, 2n), in random order.
func (w *world) prefill(id, n int) {
	for _, i := range w.rng.Perm(n) {
		w.fatal(w.write(id, extent.VBlock(2*i), 1))
	}
	w.check()
	w.fatal(w.commit())
}

// step runs one random operation.
func (w *world) step() error {
	ids := make([]int, 0, len(w.devs))
	for id := range w.devs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if len(ids) == 0 {
		w.create()
		return nil
	}
	id := ids[w.rng.IntN(len(ids))]
	switch x := w.rng.IntN(100); {
	case x < 45:
		v := extent.VBlock(w.rng.Uint64N(w.vspace))
		return w.write(id, v, min(1+w.rng.Uint64N(8), w.vspace-uint64(v)))
	case x < 60:
		return w.appendWrite(id)
	case x < 75:
		v := extent.VBlock(w.rng.Uint64N(w.vspace))
		return w.unmap(id, v, 1+w.rng.Uint64N(min(w.vspace/8, 32)))
	case x < 87:
		if len(ids) < 24 {
			w.snapshot(id)
		}
	case x < 95:
		if len(ids) > 3 {
			w.delete(id)
		}
	default:
		if len(ids) < 24 {
			w.create()
		}
	}
	return nil
}

// TestModel builds deep and wide snapshot trees (snapshots of snapshots,
// origins deleted while their children live) under thousands of random
// writes and unmaps, and checks every device against its model and N1, N2,
// N4 and B1 every few operations, and again after each commit and reopen.
func TestModel(t *testing.T) {
	for _, tc := range []struct {
		name       string
		seed       uint64
		vspace     uint64
		cacheBytes int
		// prefill extents (every other block, random order) in the
		// first device, for trees of three levels.
		prefill    int
		checkEvery int
	}{
		{"small", 1, 600, DefaultCacheBytes, 0, 10},
		{"wide", 2, 4000, DefaultCacheBytes, 0, 25},
		{"tiny cache", 3, 2000, 8 * NodeSize, 0, 25},
		{"deep", 4, 70000, DefaultCacheBytes, 30000, 250},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, tc.seed, 6000, 1<<17, tc.vspace)
			w.s.SetCacheBytes(tc.cacheBytes)
			w.create()
			w.prefill(0, tc.prefill)
			for i := range ops(3000) {
				w.fatal(w.step())
				if i%tc.checkEvery == 0 {
					w.check()
				}
				if i%200 == 199 {
					w.fatal(w.commit())
					if i%400 == 399 {
						w.reopen()
					}
					w.check()
				}
			}
			w.fatal(w.commit())
			w.reopen()
			w.check()
		})
	}
}
