package btree

import (
	"errors"
	"slices"
	"testing"
)

// allocN allocates n leaves in s and returns their ids.
func allocN(t *testing.T, s *Store, n int) []NodeID {
	t.Helper()
	var ids []NodeID
	for range n {
		nd, err := s.alloc(KindLeaf, TreeMapping, 0)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, nd.id)
	}
	return ids
}

func TestStoreCreateOpen(t *testing.T) {
	const nodes = 2*groupNodes + 100 // three groups, the last partial
	s, st := mustCreateStore(t, nodes)
	if s.FreeNodes() != nodes-6 {
		t.Fatalf("free %d, want %d (all but the page slots)", s.FreeNodes(), nodes-6)
	}
	ids := allocN(t, s, 1500)
	for _, id := range ids {
		if isSlot(id) {
			t.Fatalf("allocated page slot %d", id)
		}
	}
	if err := s.inc(ids[10]); err != nil {
		t.Fatal(err)
	}
	s.release(ids[20])
	commit(t, s, st)
	s2, err := Open(st, testBase, nodes, 1, testSeed)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s2.counts, s.counts) || s2.FreeNodes() != s.FreeNodes() || s2.Gen() != 2 || s2.Nodes() != nodes {
		t.Fatalf("reopened: free %d gen %d, want free %d gen 2", s2.FreeNodes(), s2.Gen(), s.FreeNodes())
	}
	if s2.counts[ids[10]] != 2 || s2.counts[ids[20]] != 0 {
		t.Fatalf("counts %d %d", s2.counts[ids[10]], s2.counts[ids[20]])
	}
}

func TestStoreBadArguments(t *testing.T) {
	st := newMemStorage(testBase + 10*NodeSize)
	if _, err := Create(st, testBase, 2, testSeed); err == nil {
		t.Fatal("Create of 2 nodes")
	}
	if _, err := Open(st, testBase, 10, 0, testSeed); err == nil {
		t.Fatal("Open of generation 0")
	}
	if _, err := Open(st, testBase, 10, 1, testSeed); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open of nothing: %v", err)
	}
	s, _ := mustCreateStore(t, 10)
	if err := s.Flush(5); err == nil {
		t.Fatal("Flush of a generation not open")
	}
}

// TestStorePageSlots: each commit writes a changed group's page into the
// other slot, and Open takes the newest page not above its generation, so
// a flush that was never committed is ignored.
func TestStorePageSlots(t *testing.T) {
	s, st := mustCreateStore(t, 100)
	a := allocN(t, s, 1)[0]
	commit(t, s, st) // gen 1 in slot 0
	if err := s.inc(a); err != nil {
		t.Fatal(err)
	}
	commit(t, s, st) // gen 2 in slot 1
	if err := s.inc(a); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(3); err != nil { // gen 3 in slot 0, never committed
		t.Fatal(err)
	}
	for _, tc := range []struct {
		gen  uint64
		want uint32
	}{{2, 2}, {3, 3}} { // gen 1's page is gone: only the last two commits matter
		s2, err := Open(st, testBase, 100, tc.gen, testSeed)
		if err != nil {
			t.Fatal(err)
		}
		if s2.counts[a] != tc.want {
			t.Fatalf("open at %d: count %d, want %d", tc.gen, s2.counts[a], tc.want)
		}
	}
	// Reopened at 2, the next commit goes to slot 0 again, over the
	// uncommitted page.
	s2, err := Open(st, testBase, 100, 2, testSeed)
	if err != nil {
		t.Fatal(err)
	}
	s2.release(a)
	if err := s2.Flush(3); err != nil {
		t.Fatal(err)
	}
	st.Sync()
	s2.Committed(3)
	s3, err := Open(st, testBase, 100, 3, testSeed)
	if err != nil {
		t.Fatal(err)
	}
	if s3.counts[a] != 0 || s3.newest[0] != 0 {
		t.Fatalf("count %d, newest slot %d", s3.counts[a], s3.newest[0])
	}
}

// TestStoreNoReuseBeforeCommit checks N3: a node freed in a generation that
// an earlier generation reaches is not handed out before Committed; one
// allocated and freed in the same generation is handed out at once.
func TestStoreNoReuseBeforeCommit(t *testing.T) {
	s, st := mustCreateStore(t, 40)
	durable := allocN(t, s, 5)
	commit(t, s, st)
	s.release(durable[2])
	fresh := allocN(t, s, 1)[0]
	s.release(fresh)
	var got []NodeID
	for {
		n, err := s.alloc(KindLeaf, TreeMapping, 0)
		if errors.Is(err, ErrNoSpace) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, n.id)
	}
	if slices.Contains(got, durable[2]) || !slices.Contains(got, fresh) {
		t.Fatalf("allocated %v: durable freed %d must wait, fresh freed %d must not", got, durable[2], fresh)
	}
	commit(t, s, st)
	n, err := s.alloc(KindLeaf, TreeMapping, 0)
	if err != nil || n.id != durable[2] {
		t.Fatalf("after commit: %v %v, want node %d", n, err, durable[2])
	}
}

func TestStoreChangeAfterFlushPanics(t *testing.T) {
	s, _ := mustCreateStore(t, 40)
	if err := s.Flush(1); err != nil {
		t.Fatal(err)
	}
	mustPanic(t, "alloc after Flush", func() { _, _ = s.alloc(KindLeaf, TreeMapping, 0) })
	mustPanic(t, "Committed of another generation", func() { s.Committed(2) })
	s2, _ := mustCreateStore(t, 40)
	mustPanic(t, "Committed without Flush", func() { s2.Committed(1) })
}

func mustPanic(t *testing.T, what string, fn func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Fatalf("%s did not panic", what)
		}
	}()
	fn()
}

func TestStoreGrow(t *testing.T) {
	s, st := mustCreateStore(t, 20)
	allocN(t, s, 18)
	if _, err := s.alloc(KindLeaf, TreeMapping, 0); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("full store: %v", err)
	}
	commit(t, s, st)
	s.Grow(10) // never shrinks
	if s.Nodes() != 20 {
		t.Fatalf("nodes %d", s.Nodes())
	}
	const grown = groupNodes + 50
	st.grow(testBase + grown*NodeSize)
	s.Grow(grown)
	if s.FreeNodes() != grown-20-2 {
		t.Fatalf("free %d after grow, want %d", s.FreeNodes(), grown-20-2)
	}
	ids := allocN(t, s, 100)
	commit(t, s, st)
	s2, err := Open(st, testBase, grown, 2, testSeed)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if s2.counts[id] != 1 {
			t.Fatalf("node %d count %d after grow and reopen", id, s2.counts[id])
		}
	}
	if s2.FreeNodes() != s.FreeNodes() {
		t.Fatalf("free %d, want %d", s2.FreeNodes(), s.FreeNodes())
	}
	// The superblock of generation 1 still names 20 nodes: that opens too.
	if _, err := Open(st, testBase, 20, 1, testSeed); err != nil {
		t.Fatal(err)
	}
}

// TestStoreCache: clean nodes stay within the bound (LRU), dirty ones are
// pinned until Flush, and a node is read again once evicted.
func TestStoreCache(t *testing.T) {
	s, st := mustCreateStore(t, 200)
	s.SetCacheBytes(4 * NodeSize)
	var refs []Ref
	for range 50 {
		n, err := s.alloc(KindLeaf, TreeMapping, 0)
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, n.ref())
	}
	if len(s.dirty) != 50 || s.clean.Len() != 0 {
		t.Fatalf("dirty %d clean %d before flush", len(s.dirty), s.clean.Len())
	}
	commit(t, s, st)
	if len(s.dirty) != 0 || s.clean.Len() != 4 {
		t.Fatalf("dirty %d clean %d after flush", len(s.dirty), s.clean.Len())
	}
	reads := s.Stats().Reads
	for _, r := range refs[:10] {
		if _, err := s.get(r, TreeMapping, 0); err != nil {
			t.Fatal(err)
		}
	}
	if s.Stats().Reads != reads+10 || s.clean.Len() != 4 {
		t.Fatalf("reads %d, want %d; cached %d", s.Stats().Reads, reads+10, s.clean.Len())
	}
	if _, err := s.get(refs[9], TreeMapping, 0); err != nil || s.Stats().Reads != reads+10 {
		t.Fatalf("cached node read again: %v", err)
	}
	if _, err := s.get(Ref{ID: refs[0].ID, Gen: 7}, TreeMapping, 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("wrong generation: %v", err)
	}
	if _, err := s.get(refs[9], TreeDataSpace, 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("wrong tree: %v", err)
	}
	if _, err := s.get(refs[9], TreeMapping, 1); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("wrong level: %v", err)
	}
	if _, err := s.get(Ref{ID: 500, Gen: 1}, TreeMapping, 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("past the end: %v", err)
	}
}

// TestStoreOpenCorruptPage: a page with a count for a node past the end of
// the area is corrupt; so is a group whose two slots are both bad.
func TestStoreOpenCorruptPage(t *testing.T) {
	s, st := mustCreateStore(t, 30)
	allocN(t, s, 15)
	commit(t, s, st)
	// Pretend the area had 10 nodes: the page counts node 10+ as used.
	if _, err := Open(st, testBase, 10, 1, testSeed); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("count past the end: %v", err)
	}
	st.cur[testBase+100] ^= 1 // slot 0 holds generation 1's page
	if _, err := Open(st, testBase, 30, 1, testSeed); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("both slots bad: %v", err)
	}
}

// TestStoreStalePage: a page flushed for a generation that never committed
// must not become valid when that generation number commits later without
// touching the group (Open marks such a group dirty).
func TestStoreStalePage(t *testing.T) {
	s, st := mustCreateStore(t, 100)
	a := allocN(t, s, 1)[0]
	commit(t, s, st)
	s.release(a)
	if err := s.Flush(2); err != nil { // page of gen 2: count 0, never committed
		t.Fatal(err)
	}
	st.Sync()
	s2, err := Open(st, testBase, 100, 1, testSeed)
	if err != nil {
		t.Fatal(err)
	}
	commit(t, s2, st) // gen 2 without changes
	s3, err := Open(st, testBase, 100, 2, testSeed)
	if err != nil {
		t.Fatal(err)
	}
	if s3.counts[a] != 1 {
		t.Fatalf("count %d: the uncommitted page came back", s3.counts[a])
	}
}
