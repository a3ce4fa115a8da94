package thinpool

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"time"

	"github.com/thinpool/thinpool/extent"
)

// RestoreDevice is one device of a metadata restore, as read from a
// thin_dump XML file or another pool.
type RestoreDevice struct {
	ID       DevID
	Name     string
	Size     int64
	Origin   DevID
	ReadOnly bool
	Created  time.Time
	Labels   map[string]string
	// Mappings in virtual order; pool blocks may be shared between devices.
	Mappings []extent.Mapping
}

// Restore creates a pool at path holding exactly devs, and copies each
// mapped pool block from data, where block N is at N × block size (a dm-thin
// data device, or nil to leave the blocks zero). Data is copied and synced
// before the metadata that maps it is written. On error nothing is left at
// path.
func Restore(path string, o Options, devs []RestoreDevice, data io.ReaderAt) (*Pool, error) {
	if o.FormatVersion == formatV3 {
		return nil, invalidf("restore into a format %d pool is not supported yet", formatV3)
	}
	p, err := Create(path, o)
	if err != nil {
		return nil, err
	}
	if err := p.restore(devs, data); err != nil {
		p.Close()
		os.Remove(path)
		return nil, err
	}
	return p, nil
}

func (p *Pool) restore(devs []RestoreDevice, data io.ReaderAt) error {
	st := newState(p.st.blockSize, p.st.nrBlocks)
	for _, rd := range devs {
		d, err := restoreDevice(st, rd)
		if err != nil {
			return fmt.Errorf("device %d (%q): %w", rd.ID, rd.Name, err)
		}
		st.addDevice(d)
	}
	if st.checkpointSize()+metaSectorSize > p.checkpointCap() {
		return fmt.Errorf("%w: restored metadata needs %d bytes, the limit is %d", ErrMetadataFull, st.checkpointSize(), p.checkpointCap())
	}
	if data != nil {
		if err := p.copyData(st.memRefs(), data); err != nil {
			return err
		}
	}
	p.mu.Lock()
	st.tid = p.st.tid
	p.st = st
	p.free = extent.NewFreeSpace()
	var next extent.PBlock
	st.memRefs().Ascend(func(r extent.RefRun) bool {
		_ = p.free.Add(next, uint64(r.P-next))
		next = r.End()
		return true
	})
	_ = p.free.Add(next, st.nrBlocks-uint64(next))
	p.mu.Unlock()
	return p.Checkpoint()
}

func restoreDevice(st *state, rd RestoreDevice) (*device, error) {
	if err := checkSize(rd.Size); err != nil {
		return nil, err
	}
	meta := &devMeta{id: rd.ID, origin: rd.Origin, size: uint64(rd.Size), created: rd.Created.UnixNano(),
		name: rd.Name, labels: maps.Clone(rd.Labels)}
	if rd.ReadOnly {
		meta.flags = flagReadOnly
	}
	if err := meta.validate(); err != nil {
		return nil, err
	}
	if _, ok := st.devs[meta.id]; ok {
		return nil, fmt.Errorf("%w: duplicate device id", ErrExists)
	}
	if _, ok := st.names[meta.name]; ok {
		return nil, fmt.Errorf("%w: duplicate name", ErrExists)
	}
	d := &device{meta: meta, m: newMemMap()}
	devBlocks := st.devBlocks(d)
	var last extent.Mapping
	for i, m := range rd.Mappings {
		switch {
		case m.Len == 0:
			return nil, invalidf("empty mapping")
		case uint64(m.End()) > devBlocks || m.End() < m.V:
			return nil, invalidf("mapping %v past the end of the device (%d blocks)", m, devBlocks)
		case uint64(m.PEnd()) > st.nrBlocks || m.PEnd() < m.P:
			return nil, invalidf("mapping %v beyond end of data device (%d blocks)", m, st.nrBlocks)
		case i > 0 && m.V < last.End():
			return nil, invalidf("mapping %v overlaps or is out of order", m)
		}
		d.mem().Insert(m, nil)
		st.memRefs().Inc(m.P, m.Len)
		last = m
	}
	return d, nil
}

// copyData copies every referenced block from src into the data area,
// leaving all-zero stretches as holes, then syncs.
func (p *Pool) copyData(refs *extent.RefCounts, src io.ReaderAt) error {
	buf := make([]byte, max(p.bs, 1<<20))
	var err error
	refs.Ascend(func(r extent.RefRun) bool {
		off, end := int64(r.P)*p.bs, int64(r.End())*p.bs
		for off < end && err == nil {
			n := min(int64(len(buf)), end-off)
			b := buf[:n]
			var k int
			k, err = src.ReadAt(b, off)
			if errors.Is(err, io.EOF) {
				clear(b[k:])
				err = nil
			}
			if err == nil && !isZero(b) {
				_, err = p.f.WriteAt(b, int64(p.sb.dataOffset)+off)
			}
			off += n
		}
		return err == nil
	})
	if err != nil {
		return fmt.Errorf("copy data: %w", err)
	}
	return p.f.Sync()
}

var zeroPage [4096]byte

func isZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroPage))
		if !bytes.Equal(b[:n], zeroPage[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}
