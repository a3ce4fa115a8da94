package btree

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
)

// NodeID is the number of a 4 KiB node in the metadata area.
type NodeID uint64

// Ref names a node as a parent (or a root holder) sees it: the node must
// carry both its own id and this generation (N4).
type Ref struct {
	ID  NodeID
	Gen uint64
}

func (r Ref) String() string { return fmt.Sprintf("node %d@%d", r.ID, r.Gen) }

// Kind is what a node holds. Part of the on-disk format; see
// docs/metadata-v3.md "Nodes". Do not change.
type Kind uint16

const (
	KindInvalid  Kind = 0
	KindInternal Kind = 1
	KindLeaf     Kind = 2
	KindBlob     Kind = 3 // a device entry's record (Devices)
	KindSpaceMap Kind = 4
)

func (k Kind) String() string {
	switch k {
	case KindInternal:
		return "internal"
	case KindLeaf:
		return "leaf"
	case KindBlob:
		return "blob"
	case KindSpaceMap:
		return "space map"
	}
	return fmt.Sprintf("kind(%d)", uint16(k))
}

// TreeKind says which tree a node belongs to, and so the size and meaning
// of its leaf values. Part of the on-disk format. Do not change.
type TreeKind uint16

const (
	TreeInvalid   TreeKind = 0
	TreeDevice    TreeKind = 1
	TreeMapping   TreeKind = 2
	TreeDataSpace TreeKind = 3
)

func (t TreeKind) String() string {
	switch t {
	case TreeDevice:
		return "device"
	case TreeMapping:
		return "mapping"
	case TreeDataSpace:
		return "data space"
	}
	return fmt.Sprintf("tree(%d)", uint16(t))
}

// Node layout. Part of the on-disk format; see docs/metadata-v3.md "Nodes".
// Do not change.
const (
	NodeSize   = 4096
	headerSize = 32
	bodySize   = NodeSize - headerSize
	magic      = "TPND"

	internalEntry = 24 // key, child id, child generation
	// internalCap is the number of children an internal node holds.
	internalCap = bodySize / internalEntry // 169
	// pageCounts is the number of u32 counts in a space-map page.
	pageCounts = bodySize / 4 // 1016
	// blobHeader is the next blob's reference at the start of a blob's
	// body; blobCap is the number of record bytes a blob holds.
	blobHeader = 16
	blobCap    = bodySize - blobHeader // 4048
)

// valueSize is the size of a leaf value (after its u64 key) in a tree of kind t.
func valueSize(t TreeKind) int {
	switch t {
	case TreeMapping:
		return 16 // pool start u64, length u32, time u32
	case TreeDataSpace:
		return 8 // length u32, count u32
	case TreeDevice:
		return deviceValueSize
	}
	return 0
}

// leafCap is the number of entries a leaf of tree t holds.
func leafCap(t TreeKind) int { return bodySize / (8 + valueSize(t)) }

func capacity(tree TreeKind, kind Kind) int {
	if kind == KindInternal {
		return internalCap
	}
	return leafCap(tree)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// node is a decoded node. Clean nodes (read from disk or flushed) are never
// changed; the tree shadows them first.
type node struct {
	id    NodeID
	gen   uint64
	kind  Kind
	level uint16
	tree  TreeKind
	keys  []uint64
	// kids[i] is the child holding keys ≥ keys[i] (internal nodes).
	kids []Ref
	// vals holds len(keys) values of valueSize(tree) bytes (leaves).
	vals []byte
	// counts are the reference counts of a space-map page.
	counts []uint32
	// next is the blob that continues this one (blobs), or the zero Ref.
	next Ref
}

func (n *node) ref() Ref   { return Ref{ID: n.id, Gen: n.gen} }
func (n *node) leaf() bool { return n.kind == KindLeaf }
func (n *node) nr() int    { return len(n.keys) }
func (n *node) vsize() int { return valueSize(n.tree) }
func (n *node) val(i int) []byte {
	vs := n.vsize()
	return n.vals[i*vs : (i+1)*vs : (i+1)*vs]
}

// clone returns a deep copy of n.
func (n *node) clone() *node {
	c := *n
	c.keys = slices.Clone(n.keys)
	c.kids = slices.Clone(n.kids)
	c.vals = slices.Clone(n.vals)
	c.counts = slices.Clone(n.counts)
	return &c
}

// search returns the index of the first key ≥ k and whether it equals k.
func (n *node) search(k uint64) (int, bool) {
	return slices.BinarySearch(n.keys, k)
}

// floor returns the index of the last key ≤ k, or -1.
func (n *node) floor(k uint64) int {
	i, found := n.search(k)
	if found {
		return i
	}
	return i - 1
}

// childIndex is the child to descend into for key k: the last whose key is
// ≤ k, or the first.
func (n *node) childIndex(k uint64) int { return max(n.floor(k), 0) }

func (n *node) insertLeaf(i int, k uint64, v []byte) {
	vs := n.vsize()
	n.keys = slices.Insert(n.keys, i, k)
	n.vals = slices.Insert(n.vals, i*vs, v[:vs]...)
}

func (n *node) deleteLeaf(i int) {
	vs := n.vsize()
	n.keys = slices.Delete(n.keys, i, i+1)
	n.vals = slices.Delete(n.vals, i*vs, (i+1)*vs)
}

func (n *node) insertKid(i int, k uint64, r Ref) {
	n.keys = slices.Insert(n.keys, i, k)
	n.kids = slices.Insert(n.kids, i, r)
}

func (n *node) deleteKid(i int) {
	n.keys = slices.Delete(n.keys, i, i+1)
	n.kids = slices.Delete(n.kids, i, i+1)
}

// encode returns the on-disk bytes of n under the pool seed.
func (n *node) encode(seed uint64) []byte {
	b := make([]byte, NodeSize)
	copy(b, magic)
	le := binary.LittleEndian
	le.PutUint64(b[8:], uint64(n.id))
	le.PutUint64(b[16:], n.gen)
	le.PutUint16(b[24:], uint16(n.kind))
	le.PutUint16(b[26:], n.level)
	le.PutUint16(b[30:], uint16(n.tree))
	body := b[headerSize:]
	switch n.kind {
	case KindInternal:
		le.PutUint16(b[28:], uint16(n.nr()))
		for i, k := range n.keys {
			e := body[i*internalEntry:]
			le.PutUint64(e, k)
			le.PutUint64(e[8:], uint64(n.kids[i].ID))
			le.PutUint64(e[16:], n.kids[i].Gen)
		}
	case KindLeaf:
		le.PutUint16(b[28:], uint16(n.nr()))
		es := 8 + n.vsize()
		for i, k := range n.keys {
			e := body[i*es:]
			le.PutUint64(e, k)
			copy(e[8:es], n.val(i))
		}
	case KindSpaceMap:
		le.PutUint16(b[28:], uint16(len(n.counts)))
		for i, c := range n.counts {
			le.PutUint32(body[i*4:], c)
		}
	case KindBlob:
		le.PutUint16(b[28:], uint16(len(n.vals)))
		le.PutUint64(body, uint64(n.next.ID))
		le.PutUint64(body[8:], n.next.Gen)
		copy(body[blobHeader:], n.vals)
	}
	le.PutUint32(b[4:], checksum(b, seed))
	return b
}

func checksum(b []byte, seed uint64) uint32 {
	var s [8]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return crc32.Update(crc32.Checksum(s[:], castagnoli), castagnoli, b[8:NodeSize])
}

// anyGen in a Ref passed to decode accepts any generation (space-map pages,
// whose generation the caller compares itself).
const anyGen = math.MaxUint64

// decode checks b as the node that want names and returns it. Anything it
// accepts encodes back to b.
func decode(b []byte, seed uint64, want Ref) (*node, error) {
	le := binary.LittleEndian
	id := want.ID
	if len(b) != NodeSize {
		return nil, corrupt(id, "size %d", len(b))
	}
	if string(b[:4]) != magic {
		return nil, corrupt(id, "bad magic %q", b[:4])
	}
	if got := le.Uint32(b[4:]); got != checksum(b, seed) {
		return nil, corrupt(id, "checksum mismatch")
	}
	n := &node{
		id:    NodeID(le.Uint64(b[8:])),
		gen:   le.Uint64(b[16:]),
		kind:  Kind(le.Uint16(b[24:])),
		level: le.Uint16(b[26:]),
		tree:  TreeKind(le.Uint16(b[30:])),
	}
	nr := int(le.Uint16(b[28:]))
	if n.id != want.ID {
		return nil, corrupt(id, "holds node %d (misdirected write)", n.id)
	}
	if want.Gen != anyGen && n.gen != want.Gen {
		return nil, corrupt(id, "generation %d, parent expects %d (lost or stale write)", n.gen, want.Gen)
	}
	body := b[headerSize:]
	var used int
	switch n.kind {
	case KindSpaceMap:
		if n.level != 0 || n.tree != TreeInvalid || nr != pageCounts {
			return nil, corrupt(id, "space-map page with level %d, tree %d, %d counts", n.level, n.tree, nr)
		}
		n.counts = make([]uint32, nr)
		for i := range n.counts {
			n.counts[i] = le.Uint32(body[i*4:])
		}
		return n, nil
	case KindBlob:
		return decodeBlob(n, body, nr)
	case KindInternal, KindLeaf:
	default:
		return nil, corrupt(id, "unknown kind %d", n.kind)
	}
	if n.tree != TreeMapping && n.tree != TreeDataSpace && n.tree != TreeDevice {
		return nil, corrupt(id, "unknown tree %d", n.tree)
	}
	if (n.kind == KindLeaf) != (n.level == 0) {
		return nil, corrupt(id, "%s node at level %d", n.kind, n.level)
	}
	if nr > capacity(n.tree, n.kind) {
		return nil, corrupt(id, "%d entries, room for %d", nr, capacity(n.tree, n.kind))
	}
	n.keys = make([]uint64, nr)
	if n.kind == KindInternal {
		if nr == 0 {
			return nil, corrupt(id, "internal node without children")
		}
		n.kids = make([]Ref, nr)
		for i := range nr {
			e := body[i*internalEntry:]
			n.keys[i] = le.Uint64(e)
			n.kids[i] = Ref{ID: NodeID(le.Uint64(e[8:])), Gen: le.Uint64(e[16:])}
			if n.kids[i].ID == n.id || n.kids[i].Gen > n.gen {
				return nil, corrupt(id, "child %d names %v", i, n.kids[i])
			}
		}
		used = nr * internalEntry
	} else {
		es := 8 + n.vsize()
		n.vals = make([]byte, 0, nr*n.vsize())
		for i := range nr {
			e := body[i*es:]
			n.keys[i] = le.Uint64(e)
			n.vals = append(n.vals, e[8:es]...)
		}
		used = nr * es
		if err := n.checkValues(); err != nil {
			return nil, err
		}
	}
	for i := 1; i < nr; i++ {
		if n.keys[i] <= n.keys[i-1] {
			return nil, corrupt(id, "key %d (%d) not above key %d (%d)", i, n.keys[i], i-1, n.keys[i-1])
		}
	}
	for _, c := range body[used:] {
		if c != 0 {
			return nil, corrupt(id, "reserved bytes not zero")
		}
	}
	return n, nil
}

// checkValues checks a leaf's runs: each has a length ≥ 1, a count ≥ 1 (data
// space map), does not overflow, and ends at or before the next key.
func (n *node) checkValues() error {
	le := binary.LittleEndian
	for i, k := range n.keys {
		v := n.val(i)
		var length uint64
		switch n.tree {
		case TreeMapping:
			length = uint64(le.Uint32(v[8:]))
			if p := le.Uint64(v); p+length < p {
				return corrupt(n.id, "extent %d: pool run overflows", i)
			}
		case TreeDataSpace:
			length = uint64(le.Uint32(v))
			if le.Uint32(v[4:]) == 0 {
				return corrupt(n.id, "run %d has count 0", i)
			}
		case TreeDevice:
			if err := checkDeviceValue(n.id, i, v); err != nil {
				return err
			}
			continue
		}
		if length == 0 {
			return corrupt(n.id, "run %d has length 0", i)
		}
		if k+length < k || (i+1 < n.nr() && k+length > n.keys[i+1]) {
			return corrupt(n.id, "run %d overflows or overlaps the next", i)
		}
	}
	return nil
}
