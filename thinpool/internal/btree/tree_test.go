package btree

import (
	"encoding/binary"
	"errors"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// A tree test uses data-space values of one block (the codec checks that
// runs do not overlap) whose count is the payload.
func tval(c uint32) []byte {
	var v [8]byte
	binary.LittleEndian.PutUint32(v[:], 1)
	binary.LittleEndian.PutUint32(v[4:], c)
	return v[:]
}

func tcount(v []byte) uint32 { return binary.LittleEndian.Uint32(v[4:]) }

// treeWorld holds trees that share nodes and, as the model, a Go map per
// tree plus refs[k]: how many distinct leaves hold key k, kept up to date
// by the share and leafDec callbacks (the way N2 is kept for data blocks).
type treeWorld struct {
	t     *testing.T
	rng   *rand.Rand
	s     *Store
	st    *memStorage
	trees []*Tree
	model []map[uint64]uint32
	refs  map[uint64]int
}

func (w *treeWorld) share(k uint64, _ []byte) error { w.refs[k]++; return nil }
func (w *treeWorld) unref(k uint64, _ []byte) error { w.refs[k]--; return nil }

func (w *treeWorld) check() {
	w.t.Helper()
	var roots []rootOf
	for i, tr := range w.trees {
		roots = append(roots, rootOf{TreeDataSpace, tr.Root()})
		got := map[uint64]uint32{}
		last, first := uint64(0), true
		err := tr.Ascend(0, func(k uint64, v []byte) bool {
			if !first && k <= last {
				w.t.Fatalf("tree %d: ascend out of order", i)
			}
			last, first = k, false
			got[k] = tcount(v)
			return true
		})
		if err != nil {
			w.t.Fatal(err)
		}
		if !maps.Equal(got, w.model[i]) {
			w.t.Fatalf("tree %d: %d entries, want %d", i, len(got), len(w.model[i]))
		}
		for range 20 {
			k := w.rng.Uint64N(6000)
			fk, fv, ok, err := tr.Floor(k)
			if err != nil {
				w.t.Fatal(err)
			}
			wk, wok := uint64(0), false
			for mk := range w.model[i] {
				if mk <= k && (!wok || mk > wk) {
					wk, wok = mk, true
				}
			}
			if ok != wok || (ok && (fk != wk || tcount(fv) != w.model[i][wk])) {
				w.t.Fatalf("tree %d: Floor(%d) = %d %v, want %d %v", i, k, fk, ok, wk, wok)
			}
		}
	}
	// The store's walk finds the distinct leaves; count keys in them.
	leafRefs := map[uint64]int{}
	seen := map[NodeID]bool{}
	var visit func(r Ref)
	visit = func(r Ref) {
		if seen[r.ID] {
			return
		}
		seen[r.ID] = true
		n, err := w.s.get(r, TreeDataSpace, -1)
		if err != nil {
			w.t.Fatal(err)
		}
		for _, k := range n.keys {
			if n.leaf() {
				leafRefs[k]++
			}
		}
		for _, kid := range n.kids {
			visit(kid)
		}
	}
	for _, tr := range w.trees {
		visit(tr.Root())
	}
	for k, c := range w.refs {
		if c == 0 {
			delete(w.refs, k)
		}
	}
	if !maps.Equal(leafRefs, w.refs) {
		w.t.Fatalf("leaf references by callbacks differ from the walk")
	}
	checkStore(w.t, w.s, roots)
}

func TestTreeModel(t *testing.T) {
	s, st := mustCreateStore(t, 4000)
	w := &treeWorld{t: t, rng: rand.New(rand.NewPCG(7, 7)), s: s, st: st, refs: map[uint64]int{}}
	tr, err := s.NewTree(TreeDataSpace, w.share)
	if err != nil {
		t.Fatal(err)
	}
	w.trees, w.model = []*Tree{tr}, []map[uint64]uint32{{}}
	for i := range ops(20000) {
		j := w.rng.IntN(len(w.trees))
		tr, m := w.trees[j], w.model[j]
		switch x := w.rng.IntN(100); {
		case x < 55:
			k, c := w.rng.Uint64N(6000), 1+w.rng.Uint32N(1000)
			if _, ok := m[k]; !ok {
				w.refs[k]++
			}
			m[k] = c
			err = tr.Insert(k, tval(c))
		case x < 90:
			k := w.rng.Uint64N(6000)
			if len(m) > 0 && w.rng.IntN(2) == 0 {
				k = slices.Collect(maps.Keys(m))[w.rng.IntN(len(m))]
			}
			var found bool
			found, err = tr.Delete(k)
			if _, ok := m[k]; ok != found {
				t.Fatalf("Delete(%d) = %v, model has it: %v", k, found, ok)
			}
			if found {
				w.refs[k]--
				delete(m, k)
			}
		case x < 95:
			if len(w.trees) < 8 {
				if err = s.IncRoot(tr.Root()); err == nil {
					w.trees = append(w.trees, s.OpenTree(TreeDataSpace, tr.Root(), w.share))
					w.model = append(w.model, maps.Clone(m))
				}
			}
		default:
			if len(w.trees) > 1 {
				err = s.DecRoot(TreeDataSpace, tr.Root(), w.unref)
				w.trees = slices.Delete(w.trees, j, j+1)
				w.model = slices.Delete(w.model, j, j+1)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		if i%500 == 0 {
			w.check()
		}
		if i%2000 == 1999 {
			commit(t, s, st)
			if s, err = Open(st, testBase, 4000, s.Gen()-1, testSeed); err != nil {
				t.Fatal(err)
			}
			w.s = s
			for j, tr := range w.trees {
				w.trees[j] = s.OpenTree(TreeDataSpace, tr.Root(), w.share)
			}
			w.check()
		}
	}
	w.check()
}

// TestTreeGrowShrink: a tree of 60,000 keys has three levels; deleting all
// but a few brings it back to one leaf, keeping B1 on the way.
func TestTreeGrowShrink(t *testing.T) {
	s, _ := mustCreateStore(t, 3000)
	tr, err := s.NewTree(TreeDataSpace, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 60000
	for k := range uint64(n) {
		if err := tr.Insert(2*k, tval(1)); err != nil {
			t.Fatal(err)
		}
	}
	root, _ := s.get(tr.Root(), TreeDataSpace, -1)
	if root.level != 2 {
		t.Fatalf("root level %d after %d inserts, want 2", root.level, n)
	}
	checkStore(t, s, []rootOf{{TreeDataSpace, tr.Root()}})
	for i, k := range rand.New(rand.NewPCG(1, 2)).Perm(n) {
		if i == n-5 {
			break
		}
		if ok, err := tr.Delete(2 * uint64(k)); !ok || err != nil {
			t.Fatalf("Delete(%d): %v %v", 2*k, ok, err)
		}
		if i%5000 == 0 {
			checkStore(t, s, []rootOf{{TreeDataSpace, tr.Root()}})
		}
	}
	root, _ = s.get(tr.Root(), TreeDataSpace, -1)
	if !root.leaf() || root.nr() != 5 {
		t.Fatalf("root %s with %d entries, want a leaf of 5", root.kind, root.nr())
	}
	checkStore(t, s, []rootOf{{TreeDataSpace, tr.Root()}})
}

func TestTreeEdges(t *testing.T) {
	s, st := mustCreateStore(t, 100)
	if _, err := s.NewTree(TreeInvalid, nil); err == nil {
		t.Fatal("NewTree of kind 0")
	}
	tr, err := s.NewTree(TreeDataSpace, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tr.ValueSize() != 8 {
		t.Fatalf("value size %d", tr.ValueSize())
	}
	mustPanic(t, "Insert of a wrong-size value", func() { _ = tr.Insert(1, make([]byte, 3)) })
	for _, k := range []uint64{10, 20, 30} {
		if err := tr.Insert(k, tval(uint32(k))); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.Insert(20, tval(99)); err != nil { // replace
		t.Fatal(err)
	}
	if v, ok, err := tr.Get(20); err != nil || !ok || tcount(v) != 99 {
		t.Fatalf("Get(20) = %v %v %v", v, ok, err)
	}
	if _, ok, err := tr.Get(25); ok || err != nil {
		t.Fatalf("Get(25) = %v %v", ok, err)
	}
	if _, _, ok, err := tr.Floor(5); ok || err != nil {
		t.Fatalf("Floor below the first key: %v %v", ok, err)
	}
	var seen []uint64
	if err := tr.Ascend(15, func(k uint64, _ []byte) bool { seen = append(seen, k); return false }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seen, []uint64{20}) {
		t.Fatalf("Ascend(15) stopped after %v", seen)
	}
	commit(t, s, st)
	shadowed := s.Stats().Shadowed
	if ok, err := tr.Delete(25); ok || err != nil || s.Stats().Shadowed != shadowed {
		t.Fatalf("Delete of an absent key: %v %v, shadowed %d nodes", ok, err, s.Stats().Shadowed-shadowed)
	}
	root := tr.Root()
	if ok, err := tr.Delete(20); !ok || err != nil || tr.Root() == root || s.Stats().Shadowed != shadowed+1 {
		t.Fatalf("Delete(20) after commit: %v %v; the durable root must be copied", ok, err)
	}
	if err := s.IncRoot(Ref{ID: 90, Gen: 1}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("IncRoot of a free node: %v", err)
	}
	if err := s.inc(90); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("inc of a free node: %v", err)
	}
}
