package btree

import (
	"container/list"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/thinpool/thinpool/extent"
)

// Storage is where the nodes live. Sync (fdatasync) stays with the caller:
// the store only reads and writes.
type Storage interface {
	io.ReaderAt
	io.WriterAt
}

// Metadata space map layout. Part of the on-disk format; see
// docs/metadata-v3.md "Space maps". Do not change.
const (
	// groupNodes is the number of nodes a space-map group covers: its two
	// page slots and the pageCounts nodes they count.
	groupNodes = 2 + pageCounts // 1018
)

// DefaultCacheBytes bounds the clean nodes a store keeps decoded.
const DefaultCacheBytes = 64 << 20

// nodeCost is what a cached node is charged against the cache bound: its
// bytes on disk, roughly what its decoded form takes.
const nodeCost = NodeSize

// Store is an array of nodes at a base offset of a Storage, with their
// reference counts (the metadata space map), an allocator and a cache.
//
// A store moves through generations. Generation g is open for changes;
// Flush(g) writes every node and space-map page that changed, the caller
// makes that durable and writes its superblock, and Committed(g) opens g+1.
// Until Committed, no node that the last committed generation can reach is
// written (N3), and nodes freed in g are not handed out again.
//
// After an error from any method that changes the store (allocation, a
// tree change, Flush), the store must be dropped and reopened at the last
// committed generation. A Store is not safe for concurrent use.
type Store struct {
	st   Storage
	base int64
	seed uint64
	// nodes is the number of nodes in the area (including page slots).
	nodes uint64
	// gen is the open generation: the last committed one plus 1.
	gen uint64
	// counts[id] is node id's reference count (N1); 0 for page slots.
	counts []uint32
	// newest[g] is the slot (0 or 1) of group g holding its newest
	// committed page; the next page of g goes into the other slot.
	newest []uint8
	// dirtyGroups are the groups whose counts changed in gen.
	dirtyGroups map[uint64]bool
	// free holds the nodes that can be handed out now (count 0, not freed
	// in gen). Its PBlocks are NodeIDs.
	free *extent.FreeSpace
	// pending are the nodes freed in gen that an earlier generation can
	// reach; they join free at Committed (R1, N3).
	pending []NodeID
	hint    NodeID
	// dirty are the nodes allocated in gen, not yet written: exactly the
	// nodes that may change in place. They are pinned in memory.
	dirty map[NodeID]*node
	// clean is the cache of decoded nodes already on disk, in LRU order
	// (front = most recent); cached indexes it.
	clean      *list.List
	cached     map[NodeID]*list.Element
	cacheBytes int
	// flushed is set between Flush(gen) and Committed(gen); no change is
	// allowed then.
	flushed bool
	stats   Stats
}

// Stats counts the store's work since it was opened.
type Stats struct {
	Reads    uint64 // nodes read from storage
	Writes   uint64 // nodes and pages written
	Shadowed uint64 // nodes copied because they were shared or durable
}

// Create returns an empty store of nrNodes nodes at off: generation 1 is
// open and every node is free. Nothing is written before Flush(1).
func Create(st Storage, off int64, nrNodes, seed uint64) (*Store, error) {
	s, err := newStore(st, off, nrNodes, 1, seed)
	if err != nil {
		return nil, err
	}
	for g := range s.groups() {
		s.newest[g] = 1
		s.dirtyGroups[g] = true
	}
	s.buildFree()
	return s, nil
}

// Open returns the store that generation gen committed: it reads the
// space-map pages of nrNodes nodes at off (and nothing else). Generation
// gen+1 is open.
func Open(st Storage, off int64, nrNodes, gen, seed uint64) (*Store, error) {
	if gen == 0 {
		return nil, fmt.Errorf("btree: open generation 0")
	}
	s, err := newStore(st, off, nrNodes, gen+1, seed)
	if err != nil {
		return nil, err
	}
	for g := range s.groups() {
		if err := s.readGroup(g, gen); err != nil {
			return nil, err
		}
	}
	s.buildFree()
	return s, nil
}

func newStore(st Storage, off int64, nrNodes, gen, seed uint64) (*Store, error) {
	if nrNodes < 3 {
		return nil, fmt.Errorf("btree: %d nodes, need at least 3", nrNodes)
	}
	s := &Store{
		st: st, base: off, seed: seed, nodes: nrNodes, gen: gen,
		counts:      make([]uint32, nrNodes),
		dirtyGroups: map[uint64]bool{},
		dirty:       map[NodeID]*node{},
		clean:       list.New(),
		cached:      map[NodeID]*list.Element{},
		cacheBytes:  DefaultCacheBytes,
	}
	s.newest = make([]uint8, s.groups())
	return s, nil
}

func (s *Store) groups() uint64 { return (s.nodes + groupNodes - 1) / groupNodes }

// isSlot reports whether id is a space-map page slot.
func isSlot(id NodeID) bool { return uint64(id)%groupNodes < 2 }

// readGroup loads the counts of group g from the newest valid page slot
// not above gen (the committed generation).
func (s *Store) readGroup(g, gen uint64) error {
	var best *node
	for slot := range uint64(2) {
		id := NodeID(g*groupNodes + slot)
		n, err := s.read(Ref{ID: id, Gen: anyGen})
		if err != nil {
			if errors.Is(err, ErrCorrupt) {
				continue // torn, never written or from an uncommitted generation
			}
			return err
		}
		if n.kind != KindSpaceMap {
			continue
		}
		if n.gen > gen {
			// A page of a flush that never committed. The next commit
			// has its generation: rewrite the group then, or this page
			// would become valid without being current.
			s.dirtyGroups[g] = true
			continue
		}
		if best == nil || n.gen > best.gen {
			best, s.newest[g] = n, uint8(slot)
		}
	}
	if best == nil {
		return corrupt(NodeID(g*groupNodes), "no valid space-map page for group %d", g)
	}
	first := g*groupNodes + 2
	for i, c := range best.counts {
		id := first + uint64(i)
		if id >= s.nodes {
			if c != 0 {
				return corrupt(best.id, "count for node %d past the end", id)
			}
			continue
		}
		s.counts[id] = c
	}
	return nil
}

// buildFree puts every node of count 0 that is not a page slot into free.
func (s *Store) buildFree() {
	s.free = extent.NewFreeSpace()
	s.addFree(0, s.nodes)
}

// addFree adds the free nodes of [lo, hi) to the free set.
func (s *Store) addFree(lo, hi uint64) {
	start := uint64(0)
	in := false
	for id := lo; id <= hi; id++ {
		isFree := id < hi && !isSlot(NodeID(id)) && s.counts[id] == 0
		if isFree && !in {
			start, in = id, true
		} else if !isFree && in {
			s.mustAddFree(start, id-start)
			in = false
		}
	}
}

func (s *Store) mustAddFree(id, n uint64) {
	if err := s.free.Add(extent.PBlock(id), n); err != nil {
		panic(err) // the store's own bookkeeping is wrong
	}
}

// Gen is the open generation.
func (s *Store) Gen() uint64 { return s.gen }

// Nodes is the number of nodes in the area.
func (s *Store) Nodes() uint64 { return s.nodes }

// FreeNodes is the number of nodes that can be allocated now.
func (s *Store) FreeNodes() uint64 { return s.free.Blocks() }

// Stats returns the counters of the store's work.
func (s *Store) Stats() Stats { return s.stats }

// SetCacheBytes bounds the decoded clean nodes kept in memory (dirty nodes
// are pinned until Flush and do not count).
func (s *Store) SetCacheBytes(n int) {
	s.cacheBytes = n
	s.evict()
}

// Grow adds nodes up to nrNodes (never fewer). The new nodes are free now;
// their groups' pages are written by the next Flush.
func (s *Store) Grow(nrNodes uint64) {
	s.mustChange()
	if nrNodes <= s.nodes {
		return
	}
	old := s.nodes
	oldGroups := s.groups()
	s.nodes = nrNodes
	s.counts = append(s.counts, make([]uint32, nrNodes-old)...)
	for g := oldGroups; g < s.groups(); g++ {
		s.newest = append(s.newest, 1)
	}
	for g := (old - 1) / groupNodes; g < s.groups(); g++ {
		s.dirtyGroups[g] = true
	}
	s.addFree(old, nrNodes)
}

func (s *Store) mustChange() {
	if s.flushed {
		panic("btree: store changed between Flush and Committed")
	}
}

func (s *Store) off(id NodeID) int64 { return s.base + int64(id)*NodeSize }

// read reads and decodes node want from storage.
func (s *Store) read(want Ref) (*node, error) {
	if uint64(want.ID) >= s.nodes {
		return nil, corrupt(want.ID, "past the end of the metadata area (%d nodes)", s.nodes)
	}
	b := make([]byte, NodeSize)
	if _, err := s.st.ReadAt(b, s.off(want.ID)); err != nil {
		return nil, fmt.Errorf("btree: read node %d: %w", want.ID, err)
	}
	s.stats.Reads++
	return decode(b, s.seed, want)
}

// get returns the node ref names, which must belong to tree and sit at
// level (or any level if level < 0).
func (s *Store) get(ref Ref, tree TreeKind, level int) (*node, error) {
	n, err := s.lookup(ref)
	if err != nil {
		return nil, err
	}
	if n.tree != tree || n.kind == KindSpaceMap || n.kind == KindBlob {
		return nil, corrupt(ref.ID, "%s node of the %s tree where the %s tree expects one", n.kind, n.tree, tree)
	}
	if level >= 0 && int(n.level) != level {
		return nil, corrupt(ref.ID, "level %d where %d is expected", n.level, level)
	}
	if isSlot(ref.ID) || s.counts[ref.ID] == 0 {
		return nil, corrupt(ref.ID, "reachable but has count 0")
	}
	return n, nil
}

// getBlob returns the blob that ref names (a device entry's record).
func (s *Store) getBlob(ref Ref) (*node, error) {
	n, err := s.lookup(ref)
	if err != nil {
		return nil, err
	}
	if n.kind != KindBlob {
		return nil, corrupt(ref.ID, "%s node where a blob is expected", n.kind)
	}
	if isSlot(ref.ID) || s.counts[ref.ID] == 0 {
		return nil, corrupt(ref.ID, "reachable but has count 0")
	}
	return n, nil
}

func (s *Store) lookup(ref Ref) (*node, error) {
	if n, ok := s.dirty[ref.ID]; ok {
		if n.gen != ref.Gen {
			return nil, corrupt(ref.ID, "generation %d, parent expects %d", n.gen, ref.Gen)
		}
		return n, nil
	}
	if e, ok := s.cached[ref.ID]; ok {
		n := e.Value.(*node)
		if n.gen != ref.Gen {
			return nil, corrupt(ref.ID, "generation %d, parent expects %d", n.gen, ref.Gen)
		}
		s.clean.MoveToFront(e)
		return n, nil
	}
	n, err := s.read(ref)
	if err != nil {
		return nil, err
	}
	s.cache(n)
	return n, nil
}

func (s *Store) cache(n *node) {
	s.cached[n.id] = s.clean.PushFront(n)
	s.evict()
}

func (s *Store) evict() {
	for s.clean.Len() > 0 && s.clean.Len()*nodeCost > s.cacheBytes {
		e := s.clean.Back()
		s.clean.Remove(e)
		delete(s.cached, e.Value.(*node).id)
	}
}

// uncache forgets node id.
func (s *Store) uncache(id NodeID) {
	if e, ok := s.cached[id]; ok {
		s.clean.Remove(e)
		delete(s.cached, id)
	}
	delete(s.dirty, id)
}

// alloc returns a new node of count 1, dirty in the open generation.
func (s *Store) alloc(kind Kind, tree TreeKind, level uint16) (*node, error) {
	s.mustChange()
	r := s.free.Alloc(1, extent.PBlock(s.hint))
	if r.Len == 0 {
		return nil, ErrNoSpace
	}
	id := NodeID(r.P)
	s.hint = id + 1
	s.setCount(id, 1)
	n := &node{id: id, gen: s.gen, kind: kind, tree: tree, level: level}
	s.dirty[id] = n
	return n, nil
}

func (s *Store) setCount(id NodeID, c uint32) {
	s.counts[id] = c
	s.dirtyGroups[uint64(id)/groupNodes] = true
}

// inc adds a reference to node id.
func (s *Store) inc(id NodeID) error {
	if uint64(id) >= s.nodes || isSlot(id) || s.counts[id] == 0 {
		return corrupt(id, "reference to a free node")
	}
	if s.counts[id] == ^uint32(0) {
		return corrupt(id, "reference count overflow")
	}
	s.mustChange()
	s.setCount(id, s.counts[id]+1)
	return nil
}

// release drops the last reference to node id: it is free again at once if
// the open generation allocated it, or at Committed otherwise.
func (s *Store) release(id NodeID) {
	s.mustChange()
	s.setCount(id, 0)
	if _, fresh := s.dirty[id]; fresh {
		s.mustAddFree(uint64(id), 1)
	} else {
		s.pending = append(s.pending, id)
	}
	s.uncache(id)
}

// fresh reports whether the open generation allocated node n, so that it
// may change in place.
func (s *Store) fresh(n *node) bool { return s.dirty[n.id] == n }

// Flush writes the nodes allocated in generation gen (the open one) and the
// space-map pages of the groups whose counts changed, each page into the
// slot that does not hold its group's newest committed page. The caller
// then makes the writes durable, writes its superblock naming gen (and the
// roots) and calls Committed(gen). Nothing may change in between.
func (s *Store) Flush(gen uint64) error {
	if gen != s.gen {
		return fmt.Errorf("btree: flush generation %d, open is %d", gen, s.gen)
	}
	s.mustChange()
	ids := make([]NodeID, 0, len(s.dirty))
	for id := range s.dirty {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if err := s.write(s.dirty[id]); err != nil {
			return err
		}
	}
	groups := make([]uint64, 0, len(s.dirtyGroups))
	for g := range s.dirtyGroups {
		groups = append(groups, g)
	}
	slices.Sort(groups)
	for _, g := range groups {
		if err := s.write(s.page(g)); err != nil {
			return err
		}
	}
	for _, id := range ids {
		n := s.dirty[id]
		delete(s.dirty, id)
		s.cache(n)
	}
	s.flushed = true
	return nil
}

// page returns the space-map page of group g for the open generation, in
// the slot its next page goes to.
func (s *Store) page(g uint64) *node {
	n := &node{
		id:     NodeID(g*groupNodes + uint64(1-s.newest[g])),
		gen:    s.gen,
		kind:   KindSpaceMap,
		counts: make([]uint32, pageCounts),
	}
	first := g*groupNodes + 2
	end := min(first+pageCounts, s.nodes)
	if first < end {
		copy(n.counts, s.counts[first:end])
	}
	return n
}

func (s *Store) write(n *node) error {
	if _, err := s.st.WriteAt(n.encode(s.seed), s.off(n.id)); err != nil {
		return fmt.Errorf("btree: write node %d: %w", n.id, err)
	}
	s.stats.Writes++
	return nil
}

// Committed says that the caller made generation gen durable (Flush(gen),
// fdatasync, superblock, fdatasync). The nodes freed in gen become free and
// generation gen+1 opens.
func (s *Store) Committed(gen uint64) {
	if !s.flushed || gen != s.gen {
		panic(fmt.Sprintf("btree: Committed(%d) without Flush(%d)", gen, s.gen))
	}
	for g := range s.dirtyGroups {
		s.newest[g] = 1 - s.newest[g]
	}
	clear(s.dirtyGroups)
	for _, id := range s.pending {
		s.mustAddFree(uint64(id), 1)
	}
	s.pending = s.pending[:0]
	s.gen++
	s.flushed = false
}
