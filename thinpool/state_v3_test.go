package thinpool

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/thinpool/thinpool/extent"
	"github.com/thinpool/thinpool/thinpool/internal/btree"
)

// memStorage is a btree.Storage in memory.
type memStorage struct{ b []byte }

func (m *memStorage) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("read past the end")
	}
	return copy(p, m.b[off:]), nil
}

func (m *memStorage) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	return copy(m.b[off:], p), nil
}

// stateTwins are the same operations applied to a format 2 state and a
// format 3 state.
type stateTwins struct {
	t      *testing.T
	rng    *rand.Rand
	v2, v3 *state
	free   *extent.FreeSpace
	// freed2 and freed3 are the runs each state freed since the last
	// commit (R1: they join free then).
	freed2, freed3 []extent.Run
	devBlocks      uint64
	shared         int // blocks the sharing check saw shared
}

func newStateTwins(t *testing.T, seed uint64, nrBlocks uint64) *stateTwins {
	store, err := btree.Create(&memStorage{}, 0, 20000, seed)
	if err != nil {
		t.Fatal(err)
	}
	v3, err := newTreeState(DefaultBlockSize, nrBlocks, store)
	if err != nil {
		t.Fatal(err)
	}
	w := &stateTwins{
		t: t, rng: rand.New(rand.NewPCG(seed, 7)), v2: newState(DefaultBlockSize, nrBlocks), v3: v3,
		free: extent.NewFreeSpace(), devBlocks: 4000,
	}
	if err := w.free.Add(0, nrBlocks); err != nil {
		t.Fatal(err)
	}
	w.v2.unshared, w.v3.unshared = extent.NewRefCounts(), extent.NewRefCounts()
	return w
}

// apply runs o on both states; both must succeed or both fail.
func (w *stateTwins) apply(o op) {
	w.t.Helper()
	o2, o3 := o, o
	if o.meta != nil {
		o2.meta, o3.meta = o.meta.clone(), o.meta.clone()
	}
	e2 := w.v2.apply(&o2, func(r extent.Run) { w.freed2 = append(w.freed2, r) })
	e3 := w.v3.apply(&o3, func(r extent.Run) { w.freed3 = append(w.freed3, r) })
	if (e2 == nil) != (e3 == nil) {
		w.t.Fatalf("%s: format 2: %v, format 3: %v", o.kind, e2, e3)
	}
}

func (w *stateTwins) ids() []DevID {
	ids := make([]DevID, 0, len(w.v2.devs))
	for id := range w.v2.devs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// write maps fresh blocks over [v, v+n) of dev as the write path does:
// first it checks that both formats agree on which mapped blocks are shared
// (after Unshare in format 3), then it maps the range.
func (w *stateTwins) write(id DevID, v extent.VBlock, n uint64) {
	w.t.Helper()
	d2, d3 := w.v2.devs[id], w.v3.devs[id]
	if err := d3.m.Unshare(v, n); err != nil {
		w.t.Fatal(err)
	}
	var segs []extent.Segment
	if err := d2.m.Lookup(v, n, func(s extent.Segment) bool { segs = append(segs, s); return true }); err != nil {
		w.t.Fatal(err)
	}
	for _, s := range segs {
		if !s.Mapped {
			continue
		}
		for b := s.P; b < s.P+extent.PBlock(s.Len); b++ {
			c2, c3 := w.count(w.v2, b), w.count(w.v3, b)
			if (c2 > 1) != (c3 > 1) {
				w.t.Fatalf("device %d block %d: format 2 count %d, format 3 count %d", id, b, c2, c3)
			}
			if c2 > 1 {
				w.shared++
			}
		}
	}
	for n > 0 {
		r := w.free.Alloc(n, extent.PBlock(w.rng.Uint64N(1<<16)))
		if r.Len == 0 {
			return
		}
		w.apply(op{kind: opMap, dev: id, v: v, p: r.P, n: r.Len})
		v += extent.VBlock(r.Len)
		n -= r.Len
	}
}

func (w *stateTwins) count(s *state, b extent.PBlock) uint32 {
	var c uint32
	if err := s.refs.Runs(b, 1, func(r extent.RefRun) bool { c = r.Count; return false }); err != nil {
		w.t.Fatal(err)
	}
	return c
}

// commit makes the freed runs free again and, in format 3, flushes the
// store, so that later changes shadow durable nodes.
func (w *stateTwins) commit() {
	w.t.Helper()
	s := w.v3.trees.s
	g := s.Gen()
	if err := s.Flush(g); err != nil {
		w.t.Fatal(err)
	}
	s.Committed(g)
	w.compare()
	for _, r := range w.freed2 {
		if err := w.free.Add(r.P, r.Len); err != nil {
			w.t.Fatal(err)
		}
	}
	w.freed2, w.freed3 = nil, nil
	w.v2.unshared, w.v3.unshared = extent.NewRefCounts(), extent.NewRefCounts()
}

// compare checks that both states hold the same devices and mappings, the
// same used blocks, and freed the same blocks.
func (w *stateTwins) compare() {
	w.t.Helper()
	for _, id := range w.ids() {
		d2, d3 := w.v2.devs[id], w.v3.devs[id]
		if d3 == nil || d2.meta.name != d3.meta.name || d2.meta.size != d3.meta.size {
			w.t.Fatalf("device %d differs", id)
		}
		var m2, m3 []extent.Mapping
		_ = d2.m.Ascend(func(m extent.Mapping) bool { m2 = append(m2, m); return true })
		if err := d3.m.Ascend(func(m extent.Mapping) bool { m3 = append(m3, m); return true }); err != nil {
			w.t.Fatal(err)
		}
		if !slices.Equal(m2, m3) || d2.m.Blocks() != d3.m.Blocks() {
			w.t.Fatalf("device %d: format 2 maps %v, format 3 %v", id, m2, m3)
		}
	}
	if len(w.v2.devs) != len(w.v3.devs) {
		w.t.Fatalf("%d devices in format 2, %d in format 3", len(w.v2.devs), len(w.v3.devs))
	}
	if u2, u3 := w.v2.refs.Used(), w.v3.refs.Used(); u2 != u3 {
		w.t.Fatalf("used blocks: format 2 %d, format 3 %d", u2, u3)
	}
	if f2, f3 := blocksOf(w.freed2), blocksOf(w.freed3); !slices.Equal(f2, f3) {
		w.t.Fatalf("freed: format 2 %v, format 3 %v", f2, f3)
	}
	if u2, u3 := blocksOf(runsOf(w.v2.unshared)), blocksOf(runsOf(w.v3.unshared)); !slices.Equal(u2, u3) {
		w.t.Fatalf("unshared (C2): format 2 %v, format 3 %v", u2, u3)
	}
}

func runsOf(r *extent.RefCounts) []extent.Run {
	var out []extent.Run
	r.Ascend(func(x extent.RefRun) bool {
		out = append(out, extent.Run{P: x.P, Len: x.Len})
		return true
	})
	return out
}

// blocksOf returns runs sorted and merged.
func blocksOf(runs []extent.Run) []extent.Run {
	runs = slices.SortedFunc(slices.Values(runs), func(a, b extent.Run) int { return cmp.Compare(a.P, b.P) })
	var out []extent.Run
	for _, r := range runs {
		if k := len(out) - 1; k >= 0 && out[k].End() == r.P {
			out[k].Len += r.Len
			continue
		}
		out = append(out, r)
	}
	return out
}

// step runs one random operation on both states.
func (w *stateTwins) step(i int) {
	ids := w.ids()
	next := w.v2.nextID
	meta := &devMeta{id: next, size: w.devBlocks * DefaultBlockSize, created: int64(i), name: fmt.Sprintf("d%d", next)}
	if len(ids) == 0 {
		w.apply(op{kind: opCreate, dev: next, meta: meta})
		return
	}
	id := ids[w.rng.IntN(len(ids))]
	v := extent.VBlock(w.rng.Uint64N(w.devBlocks))
	n := min(1+w.rng.Uint64N(16), w.devBlocks-uint64(v))
	switch x := w.rng.IntN(100); {
	case x < 50:
		w.write(id, v, n)
	case x < 65:
		w.apply(op{kind: opUnmap, dev: id, v: v, n: n * 4 % (w.devBlocks - uint64(v) + 1)})
	case x < 80:
		if len(ids) < 30 {
			meta.origin = id
			w.apply(op{kind: opSnapshot, dev: next, meta: meta})
		}
	case x < 90:
		if len(ids) > 2 {
			w.apply(op{kind: opDelete, dev: id})
		}
	case x < 93:
		w.apply(op{kind: opCreate, dev: next, meta: meta})
	default:
		// Shrinking below a mapped block fails in both formats.
		m := w.v2.devs[id].meta.clone()
		m.size = (1 + w.rng.Uint64N(w.devBlocks)) * DefaultBlockSize
		w.apply(op{kind: opUpdate, dev: id, meta: m})
		if w.v2.devs[id].meta.size != w.devBlocks*DefaultBlockSize {
			m.size = w.devBlocks * DefaultBlockSize
			w.apply(op{kind: opUpdate, dev: id, meta: m})
		}
	}
}

// TestStateFormats applies the same random operations (writes, unmaps,
// snapshots of snapshots, deletes of origins, resizes) to a format 2 state
// and a format 3 state and compares them: mappings, used and freed blocks,
// the unshared marks (C2) and, before every write, which blocks the write
// must copy (C1).
func TestStateFormats(t *testing.T) {
	steps := 6000
	if testing.Short() || raceEnabled {
		steps = 1500
	}
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			w := newStateTwins(t, seed, 1<<16)
			for i := range steps {
				w.step(i)
				if i%100 == 99 {
					w.commit()
				}
			}
			w.commit()
			if w.shared == 0 {
				t.Fatal("no shared block was written")
			}
		})
	}
}
