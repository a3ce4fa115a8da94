package btree

import (
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/thinpool/thinpool/extent"
)

// TestMappingModel runs random Insert and Remove against extent.Map and
// compares the removed pieces, the extents, Blocks, Find, Lookup and
// AscendFrom, across commits and reopens. Data references are not kept
// here (TestModel does that).
func TestMappingModel(t *testing.T) {
	const vspace = 30000
	s, st := mustCreateStore(t, 3000)
	ds, err := NewDataSpace(s)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMapping(s, ds)
	if err != nil {
		t.Fatal(err)
	}
	model := extent.NewMap()
	rng := rand.New(rand.NewPCG(5, 6))
	var next extent.PBlock
	for i := range ops(20000) {
		v := extent.VBlock(rng.Uint64N(vspace))
		n := 1 + rng.Uint64N(16)
		var got, want []extent.Mapping
		add := func(e extent.Mapping) { got = append(got, e) }
		addW := func(e extent.Mapping) { want = append(want, e) }
		switch x := rng.IntN(100); {
		case x < 50:
			mp := extent.Mapping{V: v, P: next, Len: n}
			next += extent.PBlock(n + rng.Uint64N(2)) // sometimes continuous
			err = m.Insert(mp, add)
			model.Insert(mp, addW)
		case x < 70:
			if last, ok := model.Last(); ok { // continue the last extent
				mp := extent.Mapping{V: last.End(), P: last.PEnd(), Len: n}
				err = m.Insert(mp, add)
				model.Insert(mp, addW)
			}
		default:
			err = m.Remove(v, n*4, add)
			model.Remove(v, n*4, addW)
		}
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("op %d: removed %v, want %v", i, got, want)
		}
		if i%250 == 0 {
			checkMapping(t, m, model)
			for range 10 {
				q := extent.VBlock(rng.Uint64N(vspace))
				e, ok, err := m.Find(q)
				we, wok := model.Find(q)
				if err != nil || ok != wok || e != we {
					t.Fatalf("Find(%d) = %v %v %v, want %v %v", q, e, ok, err, we, wok)
				}
				var gs, ws []extent.Segment
				if err := m.Lookup(q, 200, func(s extent.Segment) bool { gs = append(gs, s); return len(gs) < 6 }); err != nil {
					t.Fatal(err)
				}
				model.Lookup(q, 200, func(s extent.Segment) bool { ws = append(ws, s); return len(ws) < 6 })
				if !slices.Equal(gs, ws) {
					t.Fatalf("Lookup(%d) = %v, want %v", q, gs, ws)
				}
				gl, gok, err := m.Last()
				wl, wok := model.Last()
				if err != nil || gok != wok || gl != wl {
					t.Fatalf("Last() = %v %v %v, want %v %v", gl, gok, err, wl, wok)
				}
				var ga, wa []extent.Mapping
				if err := m.AscendFrom(q, func(e extent.Mapping) bool { ga = append(ga, e); return len(ga) < 4 }); err != nil {
					t.Fatal(err)
				}
				model.AscendFrom(q, func(e extent.Mapping) bool { wa = append(wa, e); return len(wa) < 4 })
				if !slices.Equal(ga, wa) {
					t.Fatalf("AscendFrom(%d) = %v, want %v", q, ga, wa)
				}
			}
			checkStore(t, s, []rootOf{{TreeDataSpace, ds.Root()}, {TreeMapping, m.Root()}})
		}
		if i%4000 == 3999 {
			commit(t, s, st)
			if s, err = Open(st, testBase, 3000, s.Gen()-1, testSeed); err != nil {
				t.Fatal(err)
			}
			if ds, err = OpenDataSpace(s, ds.Root()); err != nil {
				t.Fatal(err)
			}
			m = OpenMapping(s, ds, m.Root(), m.Blocks())
		}
	}
	checkMapping(t, m, model)
}

func TestMappingEdges(t *testing.T) {
	s, _ := mustCreateStore(t, 100)
	ds, err := NewDataSpace(s)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMapping(s, ds)
	if err != nil {
		t.Fatal(err)
	}
	m.Time = 3
	if err := m.Insert(extent.Mapping{V: 10, P: 100, Len: 0}, nil); err != nil || m.Blocks() != 0 {
		t.Fatalf("empty Insert: %v, %d blocks", err, m.Blocks())
	}
	if err := m.Remove(10, 0, func(extent.Mapping) { t.Fatal("empty Remove removed") }); err != nil {
		t.Fatal(err)
	}
	if err := m.Lookup(10, 0, func(extent.Segment) bool { t.Fatal("empty Lookup"); return false }); err != nil {
		t.Fatal(err)
	}
	if err := m.Insert(extent.Mapping{V: 10, P: 100, Len: 5}, nil); err != nil {
		t.Fatal(err)
	}
	m.Time = 4
	if err := m.Insert(extent.Mapping{V: 15, P: 105, Len: 5}, nil); err != nil {
		t.Fatal(err)
	}
	k, v, ok, err := m.t.Floor(12)
	if err != nil || !ok {
		t.Fatal(err)
	}
	if e, time := decodeExtent(k, v); e != (extent.Mapping{V: 10, P: 100, Len: 10}) || time != 3 {
		t.Fatalf("merged extent %v time %d, want the first one's time 3", e, time)
	}
	// An extent longer than a u32 is held as several entries.
	long := extent.Mapping{V: 1 << 40, P: 1 << 40, Len: 1<<32 + 10}
	if err := m.Insert(long, nil); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := m.Ascend(func(extent.Mapping) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	if n != 3 || m.Blocks() != 10+long.Len {
		t.Fatalf("%d extents, %d blocks", n, m.Blocks())
	}
	var segs []extent.Segment
	if err := m.Lookup(1<<40+maxRun-1, 2, func(s extent.Segment) bool { segs = append(segs, s); return true }); err != nil {
		t.Fatal(err)
	}
	if len(segs) != 2 || segs[0].P+1 != segs[1].P || !segs[1].Mapped {
		t.Fatalf("lookup across the split: %v", segs)
	}
	// A snapshot shares the root; a change to either copies the leaf,
	// adding a reference to every run the shared leaf maps (N2).
	for _, r := range []extent.Run{{P: 100, Len: 10}, {P: long.P, Len: long.Len}} {
		if err := ds.Inc(r.P, r.Len); err != nil { // the caller's part
			t.Fatal(err)
		}
	}
	snap, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if snap.Root() != m.Root() || snap.Blocks() != m.Blocks() || snap.Time != m.Time {
		t.Fatal("snapshot differs from its origin")
	}
	if err := snap.Remove(10, 1, func(e extent.Mapping) {
		if err := ds.Dec(e.P, e.Len, nil); err != nil {
			t.Fatal(err)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if c, err := ds.Get(100); err != nil || c != 1 {
		t.Fatalf("count of a block only the origin maps: %d %v", c, err)
	}
	if c, err := ds.Get(101); err != nil || c != 2 {
		t.Fatalf("count of a block both leaves map: %d %v", c, err)
	}
	if snap.Root() == m.Root() {
		t.Fatal("change to a snapshot did not move its root")
	}
	var freed []extent.Run
	if err := snap.Delete(func(r extent.Run) { freed = append(freed, r) }); err != nil {
		t.Fatal(err)
	}
	if len(freed) != 0 {
		t.Fatalf("deleting the snapshot freed %v, all still mapped by the origin", freed)
	}
	checkStore(t, s, []rootOf{{TreeDataSpace, ds.Root()}, {TreeMapping, m.Root()}})
}

// TestUnshare checks the promise the engine's write path relies on (C1):
// after Unshare(v, n), a block that device id maps in [v, v+n) has a count
// above 1 exactly when another device maps it too, across snapshots of
// snapshots, deleted origins, commits and reopens.
func TestUnshare(t *testing.T) {
	w := newWorld(t, 11, 6000, 1<<16, 3000)
	w.create()
	w.prefill(0, 1000)
	checks := 0
	for i := range ops(3000) {
		w.fatal(w.step())
		if i%7 == 0 && len(w.devs) > 0 {
			checks += w.checkUnshare()
		}
		if i%300 == 299 {
			w.fatal(w.commit())
			w.reopen()
			w.check()
		}
	}
	w.check()
	if checks == 0 {
		t.Fatal("no shared block was checked")
	}
}

// checkUnshare unshares a random range of a random device and compares each
// mapped block's count with the models. It returns how many blocks it found
// shared.
func (w *world) checkUnshare() int {
	w.t.Helper()
	ids := slices.Sorted(maps.Keys(w.devs))
	id := ids[w.rng.IntN(len(ids))]
	v := extent.VBlock(w.rng.Uint64N(w.vspace))
	n := min(1+w.rng.Uint64N(64), w.vspace-uint64(v))
	// Before Unshare, AscendShared says which blocks another device maps:
	// those of a shared leaf, or with a count above 1.
	w.fatal(w.devs[id].AscendShared(func(e extent.Mapping, leafShared bool) bool {
		for b := e.P; b < e.PEnd(); b++ {
			c, err := w.ds.Get(b)
			w.fatal(err)
			if got, want := leafShared || c > 1, w.mappedElsewhere(id, b); got != want {
				w.t.Fatalf("device %d block %d: AscendShared says shared %v (count %d), want %v", id, b, leafShared, c, want)
			}
		}
		return true
	}))
	w.fatal(w.devs[id].Unshare(v, n))
	shared := 0
	w.model[id].Lookup(v, n, func(s extent.Segment) bool {
		if !s.Mapped {
			return true
		}
		for b := s.P; b < s.P+extent.PBlock(s.Len); b++ {
			others := w.mappedElsewhere(id, b)
			c, err := w.ds.Get(b)
			w.fatal(err)
			if (c > 1) != others {
				w.t.Fatalf("device %d block %d: count %d after Unshare, mapped by another device: %v", id, b, c, others)
			}
			if others {
				shared++
			}
		}
		return true
	})
	return shared
}

// mappedElsewhere reports whether a device other than id maps pool block b.
func (w *world) mappedElsewhere(id int, b extent.PBlock) bool {
	others := false
	for oid, om := range w.model {
		if oid == id {
			continue
		}
		om.Ascend(func(e extent.Mapping) bool {
			others = others || (b >= e.P && b < e.PEnd())
			return !others
		})
	}
	return others
}
