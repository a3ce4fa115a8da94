package thinpool

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"unicode"

	"github.com/thinpool/thinpool/extent"
	"github.com/thinpool/thinpool/thinpool/internal/btree"
)

// DevID identifies a thin device within its pool. 0 means "none".
type DevID uint32

// devMeta is what the pool records about a device besides its mappings.
type devMeta struct {
	id      DevID
	origin  DevID  // device this one was snapshotted from, or 0
	flags   uint32 // flagReadOnly
	size    uint64 // virtual size in bytes, a multiple of SectorSize
	created int64  // Unix nanoseconds
	name    string
	labels  map[string]string
}

func (m *devMeta) clone() *devMeta {
	c := *m
	c.labels = maps.Clone(m.labels)
	return &c
}

func (m *devMeta) readOnly() bool { return m.flags&flagReadOnly != 0 }

// encodedSize is the size of m's encoding.
func (m *devMeta) encodedSize() int {
	n := 4 + 4 + 4 + 8 + 8 + 2 + len(m.name) + 2
	for k, v := range m.labels {
		n += 4 + len(k) + len(v)
	}
	return n
}

func (m *devMeta) encode(e *encoder) {
	e.u32(uint32(m.id))
	e.u32(uint32(m.origin))
	e.u32(m.flags)
	e.u64(m.size)
	e.u64(uint64(m.created))
	e.str(m.name)
	e.u16(uint16(len(m.labels)))
	for _, k := range slices.Sorted(maps.Keys(m.labels)) {
		e.str(k)
		e.str(m.labels[k])
	}
}

func decodeDevMeta(d *decoder) (*devMeta, error) {
	m := &devMeta{
		id:      DevID(d.u32()),
		origin:  DevID(d.u32()),
		flags:   d.u32(),
		size:    d.u64(),
		created: int64(d.u64()),
		name:    d.str(MaxNameLen),
	}
	n := int(d.u16())
	if n > MaxLabels {
		return nil, formatError("too many labels")
	}
	if n > 0 {
		m.labels = make(map[string]string, n)
	}
	prev := ""
	for i := 0; i < n && !d.bad; i++ {
		k, v := d.str(MaxLabelKeyLen), d.str(MaxLabelValueLen)
		if i > 0 && k <= prev {
			return nil, formatError("labels not sorted")
		}
		m.labels[k], prev = v, k
	}
	if d.bad {
		return nil, formatError("truncated device record")
	}
	if err := m.validate(); err != nil {
		return nil, formatError(err.Error())
	}
	return m, nil
}

// validate checks the rules that every stored device obeys.
func (m *devMeta) validate() error {
	if m.id == 0 {
		return invalidf("device id 0")
	}
	if m.flags&^knownFlags != 0 {
		return invalidf("unknown device flags %#x", m.flags)
	}
	if m.size == 0 || m.size%SectorSize != 0 || m.size > MaxDeviceSize {
		return invalidf("device size %d is not a positive multiple of %d up to %d", m.size, SectorSize, uint64(MaxDeviceSize))
	}
	if err := ValidateName(m.name); err != nil {
		return err
	}
	return validateLabels(m.labels)
}

// ValidateName reports whether name can name a device: 1 to MaxNameLen
// bytes of printable UTF-8, no '/', no white space, not "." or "..".
func ValidateName(name string) error {
	switch {
	case name == "":
		return invalidf("empty name")
	case len(name) > MaxNameLen:
		return invalidf("name longer than %d bytes", MaxNameLen)
	case name == "." || name == "..":
		return invalidf("name %q is reserved", name)
	case strings.ContainsRune(name, '/'):
		return invalidf("name %q contains '/'", name)
	}
	for _, r := range name {
		if r == unicode.ReplacementChar || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return invalidf("name %q contains a space or unprintable character", name)
		}
	}
	return nil
}

func validateLabels(labels map[string]string) error {
	if len(labels) > MaxLabels {
		return invalidf("more than %d labels", MaxLabels)
	}
	total := 0
	for k, v := range labels {
		switch {
		case k == "" || len(k) > MaxLabelKeyLen:
			return invalidf("label key %q must be 1 to %d bytes", k, MaxLabelKeyLen)
		case len(v) > MaxLabelValueLen:
			return invalidf("label %q value longer than %d bytes", k, MaxLabelValueLen)
		}
		total += len(k) + len(v)
	}
	if total > maxLabelBytes {
		return invalidf("labels exceed %d bytes", maxLabelBytes)
	}
	return nil
}

// device is a thin device: its metadata and mappings, plus the run-time
// state that serialises writers against snapshots.
type device struct {
	meta *devMeta
	m    devMap

	// wgate is held shared by every write, discard and write-zeroes for its
	// whole duration, and exclusively by Snapshot and Delete of this device,
	// so no write lands in a block while it becomes shared (CoW rule C1).
	wgate sync.RWMutex

	// The fields below are guarded by Pool.mu.

	// busy are the virtual ranges being provisioned or copied right now.
	busy []*cell
	// hint is where the next allocation for this device should start.
	hint extent.PBlock
	// deleted is set once the device is gone; handles then fail.
	deleted bool
	// saved is the device tree's entry for this device as the last
	// checkpoint wrote it (format 3), or nil.
	saved *btree.DeviceEntry
}

// cell reserves Len virtual blocks from V of one device while a writer
// allocates and fills them; done is closed when it is released.
type cell struct {
	v    extent.VBlock
	n    uint64
	done chan struct{}
}

// state is everything a checkpoint holds and journal records change.
// Guarded by Pool.mu.
type state struct {
	tid       uint64 // id of the last transaction applied
	nextID    DevID  // lowest id never used
	nrBlocks  uint64 // data area size in blocks
	blockSize uint64
	devs      map[DevID]*device
	names     map[string]*device
	refs      blockCounts
	// trees holds the mapping trees and refs in format 3; nil in format 2.
	trees *trees

	// unshared, when not nil, collects every pool block that lost a
	// reference in the open transaction (C2). Replay leaves it nil.
	unshared *extent.RefCounts

	// mapEntries is the number of extents over all devices and metaBytes the
	// size of all device records: they size the next checkpoint.
	mapEntries int
	metaBytes  int
}

func newState(blockSize, nrBlocks uint64) *state {
	return &state{
		blockSize: blockSize,
		nextID:    1,
		nrBlocks:  nrBlocks,
		devs:      map[DevID]*device{},
		names:     map[string]*device{},
		refs:      newMemCounts(),
	}
}

// checkpointSize is the size of the checkpoint that would hold s now.
func (s *state) checkpointSize() int {
	return ckptHeaderSize + s.metaBytes + len(s.devs)*8 + s.mapEntries*mappingSize + s.memRefs().Len()*refRunSize
}

func (s *state) addDevice(d *device) {
	s.devs[d.meta.id] = d
	s.names[d.meta.name] = d
	s.mapEntries += entries(d.m)
	s.metaBytes += d.meta.encodedSize()
	if d.meta.id >= s.nextID {
		s.nextID = d.meta.id + 1
	}
}

// apply carries out one journal operation. freed is called with each pool
// run whose reference count drops to 0. The same code runs for live changes
// and for journal replay, so both reach the same state. On error nothing has
// changed.
func (s *state) apply(o *op, freed func(extent.Run)) error {
	switch o.kind {
	case opMap:
		return s.applyMap(o, freed)
	case opUnmap:
		d, err := s.mutableDevice(o.dev)
		if err != nil {
			return err
		}
		if uint64(o.v)+o.n > s.devBlocks(d) || o.n == 0 || uint64(o.v)+o.n < uint64(o.v) {
			return fmt.Errorf("unmap past the end of device %d", o.dev)
		}
		return s.remap(d, o.v, o.n, nil, freed)
	case opCreate, opSnapshot:
		return s.applyCreate(o)
	case opUpdate:
		return s.applyUpdate(o)
	case opDelete:
		d, ok := s.devs[o.dev]
		if !ok {
			return fmt.Errorf("delete of unknown device %d", o.dev)
		}
		if err := s.dropMap(d, freed); err != nil {
			return err
		}
		s.metaBytes -= d.meta.encodedSize()
		delete(s.devs, d.meta.id)
		delete(s.names, d.meta.name)
		d.deleted = true
		return nil
	}
	return fmt.Errorf("unknown operation %d", o.kind)
}

func (s *state) mutableDevice(id DevID) (*device, error) {
	d, ok := s.devs[id]
	if !ok {
		return nil, fmt.Errorf("unknown device %d", id)
	}
	return d, nil
}

// remap unmaps [v, v+n) of d, maps ins there instead when it is not nil,
// and moves the references: one more for each block of ins, one less for
// each block that was mapped. It checks first that every mapped block has a
// reference to drop, so on error nothing has changed.
func (s *state) remap(d *device, v extent.VBlock, n uint64, ins *extent.Mapping, freed func(extent.Run)) error {
	if ins != nil {
		before := entries(d.m)
		hole, err := d.m.InsertIfHole(*ins)
		if err != nil {
			return err
		}
		if hole { // nothing mapped before: no references to drop
			if err := s.refs.Inc(ins.P, ins.Len); err != nil {
				return err
			}
			s.mapEntries += entries(d.m) - before
			return nil
		}
	}
	var old []extent.Segment
	err := d.m.Lookup(v, n, func(seg extent.Segment) bool {
		if seg.Mapped {
			old = append(old, seg)
		}
		return true
	})
	if err != nil {
		return err
	}
	bad := false
	for _, seg := range old {
		if err := s.refs.Runs(seg.P, seg.Len, func(r extent.RefRun) bool {
			bad = r.Count == 0
			return !bad
		}); err != nil {
			return err
		}
		if bad {
			return fmt.Errorf("device %d maps a block with no reference", d.meta.id)
		}
	}
	before := entries(d.m)
	if ins != nil {
		if err := s.refs.Inc(ins.P, ins.Len); err != nil {
			return err
		}
		err = d.m.Insert(*ins)
	} else {
		err = d.m.Remove(v, n)
	}
	if err != nil {
		return err
	}
	s.mapEntries += entries(d.m) - before
	for _, seg := range old {
		if err := s.refs.Dec(seg.P, seg.Len, freed); err != nil {
			return err
		}
		if s.unshared != nil {
			s.unshared.Set(seg.P, seg.Len, 1)
		}
	}
	return nil
}

func (s *state) applyMap(o *op, freed func(extent.Run)) error {
	d, err := s.mutableDevice(o.dev)
	if err != nil {
		return err
	}
	switch {
	case o.n == 0:
		return fmt.Errorf("empty mapping")
	case uint64(o.v)+o.n > s.devBlocks(d) || uint64(o.v)+o.n < uint64(o.v):
		return fmt.Errorf("mapping past the end of device %d", o.dev)
	case uint64(o.p)+o.n > s.nrBlocks || uint64(o.p)+o.n < uint64(o.p):
		return fmt.Errorf("mapping past the end of the data area")
	}
	if ok, err := s.canInc(o.p, o.n); err != nil || !ok {
		return cmp.Or(err, fmt.Errorf("reference count overflow"))
	}
	return s.remap(d, o.v, o.n, &extent.Mapping{V: o.v, P: o.p, Len: o.n}, freed)
}

// canInc reports whether every block of [p, p+n) can take one more
// reference (a hostile journal must not make Inc panic).
func (s *state) canInc(p extent.PBlock, n uint64) (bool, error) {
	ok := true
	err := s.refs.Runs(p, n, func(r extent.RefRun) bool {
		ok = r.Count < ^uint32(0)
		return ok
	})
	return ok && err == nil, err
}

// devBlocks is the number of blocks that d's size covers (the last one may
// be partly beyond the end).
func (s *state) devBlocks(d *device) uint64 {
	return (d.meta.size + s.blockSize - 1) / s.blockSize
}

func (s *state) applyCreate(o *op) error {
	m := o.meta
	if err := m.validate(); err != nil {
		return err
	}
	if _, ok := s.devs[m.id]; ok {
		return fmt.Errorf("device %d exists", m.id)
	}
	if _, ok := s.names[m.name]; ok {
		return fmt.Errorf("device name %q exists", m.name)
	}
	if (o.kind == opCreate) != (m.origin == 0) {
		return fmt.Errorf("%s record with origin %d", o.kind, m.origin)
	}
	if m.id < s.nextID {
		return fmt.Errorf("device id %d was used before (next id %d)", m.id, s.nextID)
	}
	if m.id == ^DevID(0) {
		return fmt.Errorf("device id %d leaves no next id", m.id)
	}
	d := &device{meta: m.clone()}
	if o.kind == opSnapshot {
		origin, ok := s.devs[m.origin]
		if !ok {
			return fmt.Errorf("snapshot of unknown device %d", m.origin)
		}
		if m.size != origin.meta.size {
			return fmt.Errorf("snapshot of %d bytes of a device of %d bytes", m.size, origin.meta.size)
		}
		m, err := s.snapshotMap(origin)
		if err != nil {
			return err
		}
		d.m = m
		d.hint = origin.hint
	} else {
		m, err := s.newMap()
		if err != nil {
			return err
		}
		d.m = m
	}
	s.addDevice(d)
	return nil
}

func (s *state) applyUpdate(o *op) error {
	m := o.meta
	if err := m.validate(); err != nil {
		return err
	}
	d, ok := s.devs[m.id]
	if !ok {
		return fmt.Errorf("update of unknown device %d", m.id)
	}
	if m.origin != d.meta.origin || m.created != d.meta.created {
		return fmt.Errorf("update of device %d changes its origin or creation time", m.id)
	}
	if other, ok := s.names[m.name]; ok && other != d {
		return fmt.Errorf("device name %q exists", m.name)
	}
	if m.size < d.meta.size {
		last, ok, err := d.m.Last()
		if err != nil {
			return err
		}
		if ok && uint64(last.End()) > (m.size+s.blockSize-1)/s.blockSize {
			return fmt.Errorf("shrink of device %d below a mapped block", m.id)
		}
	}
	s.metaBytes += m.encodedSize() - d.meta.encodedSize()
	delete(s.names, d.meta.name)
	d.meta = m.clone()
	s.names[m.name] = d
	return nil
}

// snapshotMap returns a map that shares origin's mappings, with one more
// reference to each block it maps. On error nothing has changed.
func (s *state) snapshotMap(origin *device) (devMap, error) {
	if tm, ok := origin.m.(treeMap); ok {
		return tm.snapshot() // the counts of the blocks change when a leaf is copied
	}
	om := origin.mem()
	// Check each extent just before its increment: the origin may map a
	// block more than once (a hostile file can), so a check of all extents
	// first would not stop Inc from overflowing.
	done, full := 0, false
	var err error
	om.Ascend(func(e extent.Mapping) bool {
		var ok bool
		if ok, err = s.canInc(e.P, e.Len); err != nil || !ok {
			full = err == nil
			return false
		}
		if err = s.refs.Inc(e.P, e.Len); err != nil {
			return false
		}
		done++
		return true
	})
	if err != nil || full {
		// Undo the increments: on error nothing has changed.
		om.Ascend(func(e extent.Mapping) bool {
			if done == 0 {
				return false
			}
			_ = s.refs.Dec(e.P, e.Len, nil) // incremented above
			done--
			return true
		})
		return nil, cmp.Or(err, fmt.Errorf("reference count overflow"))
	}
	return memMap{om.Clone()}, nil
}

// newMap returns an empty map in s's format.
func (s *state) newMap() (devMap, error) {
	if s.trees != nil {
		return s.trees.newMap()
	}
	return newMemMap(), nil
}

// dropMap unmaps every block of d and leaves it an empty map.
func (s *state) dropMap(d *device, freed func(extent.Run)) error {
	tm, ok := d.m.(treeMap)
	if !ok {
		if err := s.remap(d, 0, s.devBlocks(d), nil, freed); err != nil {
			return err
		}
		d.m = newMemMap()
		return nil
	}
	// Format 3 drops the tree: a leaf that a snapshot shares keeps its
	// blocks' counts, so mark every block d maps as unshared here (C2),
	// as format 2's remap does.
	if s.unshared != nil {
		if err := tm.Ascend(func(e extent.Mapping) bool {
			s.unshared.Set(e.P, e.Len, 1)
			return true
		}); err != nil {
			return err
		}
	}
	if err := tm.drop(freed); err != nil {
		return err
	}
	s.trees.gone = append(s.trees.gone, d.meta.id)
	d.m = newMemMap() // empty: d is gone
	return nil
}
