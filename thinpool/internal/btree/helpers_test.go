package btree

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/thinpool/thinpool/extent"
)

// memStorage is an in-memory Storage that loses unsynced writes on crash:
// each 4 KiB write since the last sync survives or not at random (a write
// is atomic, as the format assumes of a sector-aligned node).
type memStorage struct {
	cur, durable []byte
	pending      []memWrite
	// failAfter, when ≥ 0, is how many more writes succeed before every
	// write fails (a crash in the middle of a flush).
	failAfter int
	writes    int
}

type memWrite struct {
	off  int64
	data []byte
}

var errInjected = errors.New("injected write failure")

func newMemStorage(size int64) *memStorage {
	return &memStorage{cur: make([]byte, size), durable: make([]byte, size), failAfter: -1}
}

func (m *memStorage) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > int64(len(m.cur)) {
		return 0, fmt.Errorf("read past end: %d+%d", off, len(p))
	}
	return copy(p, m.cur[off:]), nil
}

func (m *memStorage) WriteAt(p []byte, off int64) (int, error) {
	if m.failAfter == 0 {
		return 0, errInjected
	}
	if m.failAfter > 0 {
		m.failAfter--
	}
	m.grow(off + int64(len(p)))
	m.writes++
	copy(m.cur[off:], p)
	m.pending = append(m.pending, memWrite{off: off, data: slices.Clone(p)})
	return len(p), nil
}

func (m *memStorage) grow(size int64) {
	if size > int64(len(m.cur)) {
		m.cur = append(m.cur, make([]byte, size-int64(len(m.cur)))...)
		m.durable = append(m.durable, make([]byte, size-int64(len(m.durable)))...)
	}
}

func (m *memStorage) Sync() {
	for _, w := range m.pending {
		copy(m.durable[w.off:], w.data)
	}
	m.pending = m.pending[:0]
}

// crash keeps a random subset of the unsynced writes and drops the rest.
func (m *memStorage) crash(rng *rand.Rand) {
	for _, w := range m.pending {
		if rng.IntN(2) == 0 {
			copy(m.durable[w.off:], w.data)
		}
	}
	m.pending = m.pending[:0]
	m.cur = slices.Clone(m.durable)
	m.failAfter = -1
}

const testBase = 8192 // nodes start past a pretend superblock area

const testSeed = 0x5eed5eed

func mustCreateStore(t testing.TB, nodes uint64) (*Store, *memStorage) {
	t.Helper()
	st := newMemStorage(testBase + int64(nodes)*NodeSize)
	s, err := Create(st, testBase, nodes, testSeed)
	if err != nil {
		t.Fatal(err)
	}
	return s, st
}

// commit runs the commit protocol on s: Flush, sync, (superblock), Committed.
func commit(t testing.TB, s *Store, st *memStorage) {
	t.Helper()
	g := s.Gen()
	if err := s.Flush(g); err != nil {
		t.Fatal(err)
	}
	st.Sync()
	s.Committed(g)
}

// rootOf is a root reference of some tree.
type rootOf struct {
	kind TreeKind
	ref  Ref
}

// checkStore walks every tree from roots and checks N1 (counts equal
// references, reached nodes are not free), N4 (links and first keys), B1
// and that every node of count 0 is free or pending. It returns the
// distinct mapping leaves.
func checkStore(t testing.TB, s *Store, roots []rootOf) []*node {
	t.Helper()
	refs := map[NodeID]uint32{}
	var leaves []*node
	var visit func(kind TreeKind, ref Ref, level int, parent *node, i int)
	visit = func(kind TreeKind, ref Ref, level int, parent *node, i int) {
		n, err := s.get(ref, kind, level)
		if err != nil {
			t.Fatalf("N4: %v", err)
		}
		if parent != nil {
			if n.nr() < capacity(kind, n.kind)/3 {
				t.Fatalf("B1: node %d (%s, level %d) has %d entries", n.id, n.kind, n.level, n.nr())
			}
			if n.keys[0] != parent.keys[i] {
				t.Fatalf("N4: node %d first key %d, parent %d says %d", n.id, n.keys[0], parent.id, parent.keys[i])
			}
		}
		refs[ref.ID]++
		if refs[ref.ID] > 1 {
			return
		}
		if n.leaf() {
			if kind == TreeMapping {
				leaves = append(leaves, n)
			}
			if kind == TreeDevice {
				for j := range n.keys {
					_, b := decodeDevice(n.val(j))
					for ref := b.ref; ref != (Ref{}); {
						if refs[ref.ID]++; refs[ref.ID] > 1 {
							break // the rest of a shared chain is counted once
						}
						blob, err := s.getBlob(ref)
						if err != nil {
							t.Fatalf("N4: %v", err)
						}
						ref = blob.next
					}
				}
			}
			return
		}
		for j, kid := range n.kids {
			visit(kind, kid, int(n.level)-1, n, j)
		}
	}
	for _, r := range roots {
		visit(r.kind, r.ref, -1, nil, 0)
	}
	pending := map[NodeID]bool{}
	for _, id := range s.pending {
		pending[id] = true
	}
	for id := range NodeID(s.nodes) {
		c := s.counts[id]
		if isSlot(id) {
			if c != 0 {
				t.Fatalf("page slot %d has count %d", id, c)
			}
			continue
		}
		if c != refs[id] {
			t.Fatalf("N1: node %d has count %d, %d references reach it", id, c, refs[id])
		}
		inFree := s.isFree(id)
		switch {
		case c > 0 && (inFree || pending[id]):
			t.Fatalf("N1: node %d is reachable and free (free %v, pending %v)", id, inFree, pending[id])
		case c == 0 && inFree == pending[id]:
			t.Fatalf("node %d has count 0: free %v, pending %v", id, inFree, pending[id])
		}
	}
	return leaves
}

// isFree reports whether node id is in the free set.
func (s *Store) isFree(id NodeID) bool {
	found := false
	s.free.Ascend(func(r extent.Run) bool {
		if extent.PBlock(id) < r.P {
			return false
		}
		found = extent.PBlock(id) < r.End()
		return !found
	})
	return found
}

// checkData checks N2: ds holds, for each pool block, the number of
// distinct leaves among leaves that map it.
func checkData(t testing.TB, ds *DataSpace, leaves []*node) {
	t.Helper()
	want := extent.NewRefCounts()
	for _, n := range leaves {
		for i, k := range n.keys {
			e, _ := decodeExtent(k, n.val(i))
			want.Inc(e.P, e.Len)
		}
	}
	var got, exp []extent.RefRun
	if err := ds.Ascend(func(r extent.RefRun) bool { got = append(got, r); return true }); err != nil {
		t.Fatal(err)
	}
	want.Ascend(func(r extent.RefRun) bool { exp = append(exp, r); return true })
	if !slices.Equal(got, exp) {
		t.Fatalf("N2: data space map\n got %v\nwant %v", got, exp)
	}
	if ds.Used() != want.Used() {
		t.Fatalf("N2: used %d, want %d", ds.Used(), want.Used())
	}
}

// checkMapping checks that m reads as model.
func checkMapping(t testing.TB, m *Mapping, model *extent.Map) {
	t.Helper()
	var got, want []extent.Mapping
	if err := m.Ascend(func(e extent.Mapping) bool { got = append(got, e); return true }); err != nil {
		t.Fatal(err)
	}
	model.Ascend(func(e extent.Mapping) bool { want = append(want, e); return true })
	if !slices.Equal(got, want) {
		t.Fatalf("mapping\n got %v\nwant %v", got, want)
	}
	if m.Blocks() != model.Blocks() {
		t.Fatalf("blocks %d, want %d", m.Blocks(), model.Blocks())
	}
}

// ops scales a random workload's length: a fifth under -short or -race.
func ops(n int) int {
	if testing.Short() || raceEnabled {
		return n / 5
	}
	return n
}
