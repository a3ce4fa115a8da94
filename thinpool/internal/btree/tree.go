package btree

import (
	"fmt"
	"slices"
)

// LeafFunc is called with a leaf entry: its key and value. The value is
// only valid during the call.
type LeafFunc func(key uint64, val []byte) error

// Tree is a copy-on-write B+tree of u64 keys and fixed-size values (the
// size of its kind) in a Store, reached from one root reference. Several
// Trees may share nodes (after [Store.IncRoot]); a change shadows the nodes
// on its path as docs/metadata-v3.md "Sharing and shadowing" says, so it
// never shows through another root.
//
// Every non-root node holds at least a third of its capacity (B1), so the
// height stays logarithmic: deletion merges or rebalances an underfull node
// with a sibling, and a root with one child gives way to it.
type Tree struct {
	s    *Store
	kind TreeKind
	root Ref
	// share is called with every entry of a leaf copied while shared: the
	// copy adds a reference to whatever the entry refers to (N2).
	share LeafFunc
}

// NewTree returns an empty tree of kind (a root leaf with no entries).
// share, if not nil, is called for each entry of a shared leaf that is
// copied on its way to a change.
func (s *Store) NewTree(kind TreeKind, share LeafFunc) (*Tree, error) {
	if valueSize(kind) == 0 {
		return nil, fmt.Errorf("btree: no tree of kind %v", kind)
	}
	n, err := s.alloc(KindLeaf, kind, 0)
	if err != nil {
		return nil, err
	}
	return &Tree{s: s, kind: kind, root: n.ref(), share: share}, nil
}

// OpenTree returns the tree of kind at root. Nothing is read until used.
func (s *Store) OpenTree(kind TreeKind, root Ref, share LeafFunc) *Tree {
	return &Tree{s: s, kind: kind, root: root, share: share}
}

// Root is the tree's current root; a change may move it.
func (t *Tree) Root() Ref { return t.root }

// ValueSize is the size of the tree's values.
func (t *Tree) ValueSize() int { return valueSize(t.kind) }

func (t *Tree) child(n *node, i int) (*node, error) {
	c, err := t.s.get(n.kids[i], t.kind, int(n.level)-1)
	if err != nil {
		return nil, err
	}
	if c.nr() > 0 && c.keys[0] != n.keys[i] {
		return nil, corrupt(c.id, "first key %d, parent %d says %d", c.keys[0], n.id, n.keys[i])
	}
	return c, nil
}

// minFillFor is B1's bound for a node of n's kind.
func (t *Tree) minFillFor(n *node) int { return capacity(t.kind, n.kind) / 3 }

// Get returns the value of key k.
func (t *Tree) Get(k uint64) ([]byte, bool, error) {
	key, v, ok, err := t.Floor(k)
	if err != nil || !ok || key != k {
		return nil, false, err
	}
	return v, true, nil
}

// Floor returns the entry with the greatest key ≤ k. The value is a copy.
func (t *Tree) Floor(k uint64) (uint64, []byte, bool, error) {
	n, err := t.s.get(t.root, t.kind, -1)
	if err != nil {
		return 0, nil, false, err
	}
	for !n.leaf() {
		i := n.floor(k)
		if i < 0 {
			return 0, nil, false, nil
		}
		if n, err = t.child(n, i); err != nil {
			return 0, nil, false, err
		}
	}
	i := n.floor(k)
	if i < 0 {
		return 0, nil, false, nil
	}
	return n.keys[i], slices.Clone(n.val(i)), true, nil
}

// Ascend calls fn with every entry whose key is ≥ from, in key order, until
// fn returns false. fn must not change the tree.
func (t *Tree) Ascend(from uint64, fn func(k uint64, v []byte) bool) error {
	n, err := t.s.get(t.root, t.kind, -1)
	if err != nil {
		return err
	}
	_, err = t.ascend(n, from, fn)
	return err
}

func (t *Tree) ascend(n *node, from uint64, fn func(uint64, []byte) bool) (bool, error) {
	if n.leaf() {
		i, _ := n.search(from)
		for ; i < n.nr(); i++ {
			if !fn(n.keys[i], n.val(i)) {
				return false, nil
			}
		}
		return true, nil
	}
	for i := n.childIndex(from); i < n.nr(); i++ {
		c, err := t.child(n, i)
		if err != nil {
			return false, err
		}
		if more, err := t.ascend(c, from, fn); !more || err != nil {
			return false, err
		}
	}
	return true, nil
}

// AscendShared is Ascend from 0 that also says, for each entry, whether its
// leaf is shared: some node on the path from the root to it has a count
// above 1, so another root reaches the entry too. fn must not change the
// tree.
func (t *Tree) AscendShared(fn func(k uint64, v []byte, shared bool) bool) error {
	n, err := t.s.get(t.root, t.kind, -1)
	if err != nil {
		return err
	}
	_, err = t.ascendShared(n, false, fn)
	return err
}

func (t *Tree) ascendShared(n *node, shared bool, fn func(uint64, []byte, bool) bool) (bool, error) {
	shared = shared || t.s.counts[n.id] > 1
	if n.leaf() {
		for i := range n.nr() {
			if !fn(n.keys[i], n.val(i), shared) {
				return false, nil
			}
		}
		return true, nil
	}
	for i := range n.nr() {
		c, err := t.child(n, i)
		if err != nil {
			return false, err
		}
		if more, err := t.ascendShared(c, shared, fn); !more || err != nil {
			return false, err
		}
	}
	return true, nil
}

// shadow returns a node that may be changed in place of n, which parent
// (or the root) references: n itself if only one reference reaches it and
// the open generation allocated it; otherwise a copy. The caller points
// the parent (or the root) at the result.
func (t *Tree) shadow(n *node) (*node, error) {
	s := t.s
	c := s.counts[n.id]
	if c == 1 && s.fresh(n) {
		return n, nil
	}
	cp, err := s.alloc(n.kind, n.tree, n.level)
	if err != nil {
		return nil, err
	}
	id := cp.id
	*cp = *n.clone()
	cp.id, cp.gen = id, s.gen
	s.stats.Shadowed++
	if c == 1 {
		s.release(n.id) // the copy takes over n's references
		return cp, nil
	}
	if n.leaf() {
		if t.share != nil {
			for i, k := range n.keys {
				if err := t.share(k, n.val(i)); err != nil {
					return nil, err
				}
			}
		}
	} else {
		for _, kid := range n.kids {
			if err := s.inc(kid.ID); err != nil {
				return nil, err
			}
		}
	}
	s.setCount(n.id, c-1)
	return cp, nil
}

// shadowRoot shadows the root and points the tree at the result.
func (t *Tree) shadowRoot() (*node, error) {
	n, err := t.s.get(t.root, t.kind, -1)
	if err != nil {
		return nil, err
	}
	if n, err = t.shadow(n); err != nil {
		return nil, err
	}
	t.root = n.ref()
	return n, nil
}

// shadowChild shadows child i of n (already shadowed) and points n at it.
func (t *Tree) shadowChild(n *node, i int) (*node, error) {
	c, err := t.child(n, i)
	if err != nil {
		return nil, err
	}
	if c, err = t.shadow(c); err != nil {
		return nil, err
	}
	n.kids[i] = c.ref()
	return c, nil
}

// ShadowPath shadows the nodes from the root down to the leaf that holds
// key k (or would hold it), as a change there would, without changing any
// entry. Afterwards that leaf is reached from this tree only, and a shared
// leaf's copy has added its references (share), so the counts of what its
// entries refer to say whether another tree still refers to them.
func (t *Tree) ShadowPath(k uint64) error {
	n, err := t.shadowRoot()
	for err == nil && !n.leaf() {
		n, err = t.shadowChild(n, n.childIndex(k))
	}
	return err
}

// Insert sets the value of key k to v, adding k if it is absent.
func (t *Tree) Insert(k uint64, v []byte) error {
	if len(v) != t.ValueSize() {
		panic(fmt.Sprintf("btree: value of %d bytes in a tree of %d", len(v), t.ValueSize()))
	}
	root, err := t.shadowRoot()
	if err != nil {
		return err
	}
	sib, err := t.insert(root, k, v)
	if err != nil || sib == nil {
		return err
	}
	top, err := t.s.alloc(KindInternal, t.kind, root.level+1)
	if err != nil {
		return err
	}
	top.keys = []uint64{root.keys[0], sib.keys[0]}
	top.kids = []Ref{root.ref(), sib.ref()}
	t.root = top.ref()
	return nil
}

// insert puts (k, v) under n, which is shadowed, and returns the new right
// sibling if n split.
func (t *Tree) insert(n *node, k uint64, v []byte) (*node, error) {
	if n.leaf() {
		i, found := n.search(k)
		if found {
			copy(n.val(i), v)
			return nil, nil
		}
		n.insertLeaf(i, k, v)
	} else {
		i := n.childIndex(k)
		c, err := t.shadowChild(n, i)
		if err != nil {
			return nil, err
		}
		sib, err := t.insert(c, k, v)
		if err != nil {
			return nil, err
		}
		n.keys[i] = c.keys[0]
		if sib != nil {
			n.insertKid(i+1, sib.keys[0], sib.ref())
		}
	}
	if n.nr() <= capacity(t.kind, n.kind) {
		return nil, nil
	}
	return t.split(n)
}

// split moves the upper half of n into a new node and returns it.
func (t *Tree) split(n *node) (*node, error) {
	sib, err := t.s.alloc(n.kind, n.tree, n.level)
	if err != nil {
		return nil, err
	}
	h := n.nr() / 2
	sib.keys = slices.Clone(n.keys[h:])
	n.keys = n.keys[:h:h]
	if n.leaf() {
		vs := n.vsize()
		sib.vals = slices.Clone(n.vals[h*vs:])
		n.vals = n.vals[: h*vs : h*vs]
	} else {
		sib.kids = slices.Clone(n.kids[h:])
		n.kids = n.kids[:h:h]
	}
	return sib, nil
}

// Delete removes key k and reports whether it was there. A tree without k
// is left as it is (nothing is shadowed).
func (t *Tree) Delete(k uint64) (bool, error) {
	if _, ok, err := t.Get(k); !ok || err != nil {
		return false, err
	}
	return true, t.deletePresent(k)
}

// deletePresent removes key k, which the caller knows is in the tree.
func (t *Tree) deletePresent(k uint64) error {
	root, err := t.shadowRoot()
	if err != nil {
		return err
	}
	if err := t.delete(root, k); err != nil {
		return err
	}
	for !root.leaf() && root.nr() == 1 {
		// The child takes the root's place, and its reference.
		c, err := t.child(root, 0)
		if err != nil {
			return err
		}
		t.s.release(root.id)
		root, t.root = c, c.ref()
	}
	return nil
}

// delete removes k (present) from under n, which is shadowed, and keeps B1
// for n's children.
func (t *Tree) delete(n *node, k uint64) error {
	if n.leaf() {
		i, found := n.search(k)
		if !found {
			return corrupt(n.id, "key %d vanished", k)
		}
		n.deleteLeaf(i)
		return nil
	}
	i := n.childIndex(k)
	c, err := t.shadowChild(n, i)
	if err != nil {
		return err
	}
	if err := t.delete(c, k); err != nil {
		return err
	}
	if c.nr() > 0 {
		n.keys[i] = c.keys[0]
	}
	if c.nr() >= t.minFillFor(c) || n.nr() < 2 {
		return nil
	}
	return t.rebalance(n, i, c)
}

// rebalance fixes child i of n (c, shadowed, underfull) with a sibling:
// merges the two if they fit in one node, or else splits their entries
// evenly.
func (t *Tree) rebalance(n *node, i int, c *node) error {
	j := i + 1
	if j == n.nr() {
		j = i - 1
	}
	sib, err := t.shadowChild(n, j)
	if err != nil {
		return err
	}
	l, r, li := c, sib, i
	if j < i {
		l, r, li = sib, c, j
	}
	if l.nr()+r.nr() <= capacity(t.kind, l.kind) {
		l.keys = append(l.keys, r.keys...)
		l.kids = append(l.kids, r.kids...)
		l.vals = append(l.vals, r.vals...)
		n.deleteKid(li + 1)
		t.s.release(r.id) // l takes over r's references
	} else {
		t.redistribute(l, r)
		n.keys[li+1] = r.keys[0]
	}
	n.keys[li] = l.keys[0]
	return nil
}

// redistribute moves entries between siblings l and r so that l holds half.
func (t *Tree) redistribute(l, r *node) {
	keys := append(slices.Clone(l.keys), r.keys...)
	h := len(keys) / 2
	l.keys, r.keys = keys[:h:h], slices.Clone(keys[h:])
	if l.leaf() {
		vs := l.vsize()
		vals := append(slices.Clone(l.vals), r.vals...)
		l.vals, r.vals = vals[:h*vs:h*vs], slices.Clone(vals[h*vs:])
	} else {
		kids := append(slices.Clone(l.kids), r.kids...)
		l.kids, r.kids = kids[:h:h], slices.Clone(kids[h:])
	}
}

// IncRoot adds a reference to root (a snapshot: a second device entry
// names it).
func (s *Store) IncRoot(root Ref) error {
	if _, err := s.lookup(root); err != nil {
		return err
	}
	return s.inc(root.ID)
}

// DecRoot drops a reference to root, a node of tree. A node whose count
// reaches 0 drops its children the same way, calls leafDec (if not nil)
// with every entry of a leaf, and is freed. The cost is the number of nodes
// only this reference reached.
func (s *Store) DecRoot(tree TreeKind, root Ref, leafDec LeafFunc) error {
	return s.dec(tree, root, -1, leafDec)
}

func (s *Store) dec(tree TreeKind, ref Ref, level int, leafDec LeafFunc) error {
	n, err := s.get(ref, tree, level)
	if err != nil {
		return err
	}
	if c := s.counts[ref.ID]; c > 1 {
		s.mustChange()
		s.setCount(ref.ID, c-1)
		return nil
	}
	if n.leaf() {
		if leafDec != nil {
			for i, k := range n.keys {
				if err := leafDec(k, n.val(i)); err != nil {
					return err
				}
			}
		}
	} else {
		for _, kid := range n.kids {
			if err := s.dec(tree, kid, int(n.level)-1, leafDec); err != nil {
				return err
			}
		}
	}
	s.release(ref.ID)
	return nil
}
