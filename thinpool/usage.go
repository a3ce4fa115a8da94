package thinpool

import (
	"github.com/thinpool/thinpool/extent"
	"github.com/thinpool/thinpool/thinpool/internal/btree"
)

// Usage describes how full a pool is. Block counts are in data blocks.
type Usage struct {
	BlockSize  int64
	DataBlocks uint64 // size of the data area
	// UsedBlocks are mapped by at least one device.
	UsedBlocks uint64
	// FreeBlocks can be allocated now.
	FreeBlocks uint64
	// PendingBlocks are freed but not yet reusable (waiting for a commit),
	// or allocated to writes in flight.
	PendingBlocks uint64
	// HighestUsed is one past the highest used block (0 if none).
	HighestUsed uint64

	MetadataSize    int64 // usable metadata area in bytes
	MetadataReserve int64 // the most the metadata area can grow to
	// MetadataUsed is what the metadata takes on disk now: the current
	// checkpoint and the journal written since.
	MetadataUsed int64
	// MetadataLimit is how large the state may grow before changes fail
	// with ErrMetadataFull, and MetadataState how large it is.
	MetadataLimit int64
	MetadataState int64

	Devices       int
	TransactionID uint64 // id of the last transaction
	Generation    uint64 // superblock generation (checkpoints written)
	UUID          [16]byte
	DataOffset    int64 // file offset of data block 0
}

// Usage reports how full the pool is.
func (p *Pool) Usage() Usage {
	p.syncMu.Lock()
	journal := p.journalOff
	p.syncMu.Unlock()
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.usageLocked(journal)
}

// usageLocked is Usage with journal bytes written since the checkpoint.
// Called with mu held.
func (p *Pool) usageLocked(journal int64) Usage {
	u := Usage{
		BlockSize:       p.bs,
		DataBlocks:      p.st.nrBlocks,
		UsedBlocks:      p.st.refs.Used(),
		FreeBlocks:      p.free.Blocks(),
		MetadataSize:    int64(p.sb.metaSize),
		MetadataReserve: int64(p.sb.metaReserve),
		Devices:         len(p.st.devs),
		TransactionID:   p.st.tid,
		Generation:      p.sb.generation,
		UUID:            p.sb.uuid,
		DataOffset:      int64(p.sb.dataOffset),
	}
	u.PendingBlocks = u.DataBlocks - u.UsedBlocks - u.FreeBlocks
	if t := p.st.trees; t != nil {
		// Format 3: the metadata in use is the nodes in use; the limit is
		// the node area less the reserve a change must find free.
		t.mu.Lock()
		used := int64(t.s.Nodes()-t.s.FreeNodes()) * btree.NodeSize
		u.MetadataLimit = int64(t.s.Nodes()-nodesPerChange) * btree.NodeSize
		t.mu.Unlock()
		u.MetadataUsed, u.MetadataState = used+journal, used
		if end, err := p.st.usedEnd(); err == nil { // a read error shows on the next change
			u.HighestUsed = uint64(end)
		}
		return u
	}
	u.MetadataUsed = int64(p.sb.ckptLen) + journal
	u.MetadataLimit = int64(p.checkpointCap())
	u.MetadataState = int64(p.st.checkpointSize())
	if r, ok := p.st.memRefs().Last(); ok {
		u.HighestUsed = uint64(r.End())
	}
	return u
}

// DeviceUsage describes the blocks of one device, as thin_ls reports them.
type DeviceUsage struct {
	Mapped    uint64 // mapped blocks
	Exclusive uint64 // mapped blocks no other device shares
	Shared    uint64 // mapped blocks shared with another device
	// HighestMapped is one past the highest mapped virtual block.
	HighestMapped uint64
	Extents       int
}

// Usage reports the device's block usage.
func (t *Thin) Usage() (DeviceUsage, error) {
	p := t.p
	p.mu.RLock()
	defer p.mu.RUnlock()
	if err := t.live(); err != nil {
		return DeviceUsage{}, err
	}
	u := DeviceUsage{Mapped: t.d.m.Blocks()}
	var ms []extent.Mapping
	var err error
	if tm, ok := t.d.m.(treeMap); ok {
		// Format 3: the blocks of a leaf that a snapshot shares keep count
		// 1 until the leaf is copied.
		err = tm.ascendShared(func(m extent.Mapping, shared bool) bool {
			u.Extents++
			if shared {
				u.Shared += m.Len
			} else {
				ms = append(ms, m)
			}
			return true
		})
	} else {
		err = t.d.m.Ascend(func(m extent.Mapping) bool {
			u.Extents++
			ms = append(ms, m)
			return true
		})
	}
	if err != nil {
		return DeviceUsage{}, err
	}
	for _, m := range ms {
		if err := p.st.refs.Runs(m.P, m.Len, func(r extent.RefRun) bool {
			if r.Count > 1 {
				u.Shared += r.Len
			}
			return true
		}); err != nil {
			return DeviceUsage{}, err
		}
	}
	u.Exclusive = u.Mapped - u.Shared
	last, ok, err := t.d.m.Last()
	if err != nil {
		return DeviceUsage{}, err
	}
	if ok {
		u.HighestMapped = uint64(last.End())
	}
	return u, nil
}
