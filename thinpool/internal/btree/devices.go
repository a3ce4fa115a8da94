package btree

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Device entry layout. Part of the on-disk format; see docs/metadata-v3.md
// "Nodes" (device tree). Do not change.
const (
	// deviceValueSize is a device entry's value: the fixed details (64
	// bytes, the last 8 reserved) and the reference to the record's
	// blobs (id u64, generation u64, length u32).
	deviceValueSize = 84
	// MaxRecord bounds a device entry's record (the engine's name and
	// labels).
	MaxRecord = 1 << 20
)

// DeviceEntry is what the device tree holds for one device.
type DeviceEntry struct {
	Root    Ref    // the device's mapping tree
	Size    uint64 // virtual size in bytes
	Blocks  uint64 // mapped virtual blocks
	Created int64  // Unix nanoseconds
	Time    uint32 // snapshot time of its latest extent (thin_dump)
	Origin  uint64 // device it was snapshotted from, or 0
	Flags   uint32
	// Record is opaque to this package (the engine keeps the name and
	// labels in it). It lives in a chain of blob nodes that the entry owns.
	Record []byte
}

// Devices is the device tree (kind TreeDevice): device id → DeviceEntry.
// Only the superblock reaches it, so its nodes have count 1 unless a
// caller shares its root (IncRoot); a shared leaf's copy adds a reference
// to each entry's first blob.
type Devices struct {
	t *Tree
}

// NewDevices returns an empty device tree.
func NewDevices(s *Store) (*Devices, error) {
	t, err := s.NewTree(TreeDevice, s.shareBlob)
	if err != nil {
		return nil, err
	}
	return &Devices{t: t}, nil
}

// OpenDevices returns the device tree at root.
func OpenDevices(s *Store, root Ref) *Devices {
	return &Devices{t: s.OpenTree(TreeDevice, root, s.shareBlob)}
}

// Root is the tree's current root, for the superblock.
func (d *Devices) Root() Ref { return d.t.Root() }

// Release drops this tree's reference to its root (a view made with
// IncRoot ends): nodes and blobs no other root reaches are freed. d is
// unusable afterwards.
func (d *Devices) Release() error {
	s := d.t.s
	return s.DecRoot(TreeDevice, d.Root(), func(_ uint64, v []byte) error {
		_, b := decodeDevice(v)
		return s.decBlob(b.ref)
	})
}

// blobRef is where a device value keeps its record.
type blobRef struct {
	ref Ref
	len uint32
}

func encodeDevice(e *DeviceEntry, b blobRef) []byte {
	v := make([]byte, deviceValueSize)
	le := binary.LittleEndian
	le.PutUint64(v[0:], uint64(e.Root.ID))
	le.PutUint64(v[8:], e.Root.Gen)
	le.PutUint64(v[16:], e.Size)
	le.PutUint64(v[24:], e.Blocks)
	le.PutUint64(v[32:], uint64(e.Created))
	le.PutUint32(v[40:], e.Time)
	le.PutUint32(v[44:], e.Flags)
	le.PutUint64(v[48:], e.Origin)
	// v[56:64] reserved
	le.PutUint64(v[64:], uint64(b.ref.ID))
	le.PutUint64(v[72:], b.ref.Gen)
	le.PutUint32(v[80:], b.len)
	return v
}

func decodeDevice(v []byte) (DeviceEntry, blobRef) {
	le := binary.LittleEndian
	e := DeviceEntry{
		Root:    Ref{ID: NodeID(le.Uint64(v[0:])), Gen: le.Uint64(v[8:])},
		Size:    le.Uint64(v[16:]),
		Blocks:  le.Uint64(v[24:]),
		Created: int64(le.Uint64(v[32:])),
		Time:    le.Uint32(v[40:]),
		Flags:   le.Uint32(v[44:]),
		Origin:  le.Uint64(v[48:]),
	}
	return e, blobRef{ref: Ref{ID: NodeID(le.Uint64(v[64:])), Gen: le.Uint64(v[72:])}, len: le.Uint32(v[80:])}
}

// checkDeviceValue checks entry i of a device leaf (node id).
func checkDeviceValue(id NodeID, i int, v []byte) error {
	e, b := decodeDevice(v)
	switch {
	case e.Root.ID == 0:
		return corrupt(id, "device entry %d without a root", i)
	case !bytes.Equal(v[56:64], make([]byte, 8)):
		return corrupt(id, "device entry %d: reserved bytes not zero", i)
	case b.len > MaxRecord:
		return corrupt(id, "device entry %d: record of %d bytes", i, b.len)
	case (b.len == 0) != (b.ref == Ref{}):
		return corrupt(id, "device entry %d: record of %d bytes at %v", i, b.len, b.ref)
	}
	return nil
}

// decodeBlob finishes decoding blob n from its body (nr record bytes).
func decodeBlob(n *node, body []byte, nr int) (*node, error) {
	le := binary.LittleEndian
	if n.level != 0 || n.tree != TreeDevice || nr == 0 || nr > blobCap {
		return nil, corrupt(n.id, "blob with level %d, tree %d, %d bytes", n.level, n.tree, nr)
	}
	n.next = Ref{ID: NodeID(le.Uint64(body)), Gen: le.Uint64(body[8:])}
	if n.next.ID == n.id || n.next.Gen > n.gen || (n.next.ID == 0) != (n.next.Gen == 0) {
		return nil, corrupt(n.id, "blob continues at %v", n.next)
	}
	n.vals = bytes.Clone(body[blobHeader : blobHeader+nr])
	for _, c := range body[blobHeader+nr:] {
		if c != 0 {
			return nil, corrupt(n.id, "reserved bytes not zero")
		}
	}
	return n, nil
}

// Get returns the entry of device id.
func (d *Devices) Get(id uint64) (DeviceEntry, bool, error) {
	v, ok, err := d.t.Get(id)
	if err != nil || !ok {
		return DeviceEntry{}, false, err
	}
	e, b := decodeDevice(v)
	e.Record, err = d.t.s.readBlob(b)
	return e, err == nil, err
}

// Put sets the entry of device id. A record equal to the one stored keeps
// its blobs; another is written to new ones.
func (d *Devices) Put(id uint64, e DeviceEntry) error {
	if len(e.Record) > MaxRecord {
		return fmt.Errorf("btree: device record of %d bytes (at most %d)", len(e.Record), MaxRecord)
	}
	if e.Root.ID == 0 {
		return fmt.Errorf("btree: device entry without a root")
	}
	s := d.t.s
	v, ok, err := d.t.Get(id)
	if err != nil {
		return err
	}
	var old blobRef
	if ok {
		_, old = decodeDevice(v)
		rec, err := s.readBlob(old)
		if err != nil {
			return err
		}
		if bytes.Equal(rec, e.Record) {
			return d.t.Insert(id, encodeDevice(&e, old))
		}
	}
	b, err := s.writeBlob(e.Record)
	if err != nil {
		return err
	}
	if err := d.t.Insert(id, encodeDevice(&e, b)); err != nil {
		return err
	}
	return s.decBlob(old.ref)
}

// Delete removes the entry of device id and frees its blobs. It reports
// whether there was one.
func (d *Devices) Delete(id uint64) (bool, error) {
	v, ok, err := d.t.Get(id)
	if err != nil || !ok {
		return false, err
	}
	_, b := decodeDevice(v)
	if err := d.t.deletePresent(id); err != nil {
		return false, err
	}
	return true, d.t.s.decBlob(b.ref)
}

// Ascend calls fn with every device in id order until fn returns false.
func (d *Devices) Ascend(fn func(id uint64, e DeviceEntry) bool) error {
	type item struct {
		id uint64
		e  DeviceEntry
		b  blobRef
	}
	var items []item
	if err := d.t.Ascend(0, func(k uint64, v []byte) bool {
		e, b := decodeDevice(v)
		items = append(items, item{k, e, b})
		return true
	}); err != nil {
		return err
	}
	for _, it := range items {
		rec, err := d.t.s.readBlob(it.b)
		if err != nil {
			return err
		}
		it.e.Record = rec
		if !fn(it.id, it.e) {
			return nil
		}
	}
	return nil
}

// writeBlob writes rec into a new chain of blobs and returns where.
func (s *Store) writeBlob(rec []byte) (blobRef, error) {
	if len(rec) == 0 {
		return blobRef{}, nil
	}
	var next Ref
	// Back to front, so that each blob knows the one after it.
	for end := len(rec); end > 0; {
		start := (end - 1) / blobCap * blobCap
		n, err := s.alloc(KindBlob, TreeDevice, 0)
		if err != nil {
			return blobRef{}, err
		}
		n.vals, n.next = bytes.Clone(rec[start:end]), next
		next, end = n.ref(), start
	}
	return blobRef{ref: next, len: uint32(len(rec))}, nil
}

// readBlob returns the record that b names.
func (s *Store) readBlob(b blobRef) ([]byte, error) {
	if b.ref == (Ref{}) {
		return nil, nil
	}
	out := make([]byte, 0, b.len)
	for ref := b.ref; ref != (Ref{}); {
		n, err := s.getBlob(ref)
		if err != nil {
			return nil, err
		}
		if len(out)+len(n.vals) > int(b.len) {
			return nil, corrupt(ref.ID, "record longer than the %d bytes its entry says", b.len)
		}
		out = append(out, n.vals...)
		ref = n.next
	}
	if len(out) != int(b.len) {
		return nil, corrupt(b.ref.ID, "record of %d bytes, entry says %d", len(out), b.len)
	}
	return out, nil
}

// decBlob drops a reference to the chain of blobs at ref: a blob whose
// count reaches 0 is freed, and so is the rest of its chain.
func (s *Store) decBlob(ref Ref) error {
	for ref != (Ref{}) {
		n, err := s.getBlob(ref)
		if err != nil {
			return err
		}
		if c := s.counts[ref.ID]; c > 1 {
			s.mustChange()
			s.setCount(ref.ID, c-1)
			return nil
		}
		next := n.next
		s.release(ref.ID)
		ref = next
	}
	return nil
}

// shareBlob is the device tree's share function: a copy of a shared leaf
// adds a reference to each entry's first blob.
func (s *Store) shareBlob(_ uint64, v []byte) error {
	_, b := decodeDevice(v)
	if b.ref == (Ref{}) {
		return nil
	}
	if _, err := s.getBlob(b.ref); err != nil {
		return err
	}
	return s.inc(b.ref.ID)
}
