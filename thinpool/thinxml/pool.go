package thinxml

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/thinpool/thinpool/extent"
	"github.com/thinpool/thinpool/thinpool"
)

// FromView describes a pool, as a View holds it at one point in time, as a
// thin_dump document. With extras, each device carries thinpool's own
// attributes too (see the package doc).
//
// dm-thin decides copy-on-write from times, not reference counts: a
// mapping is treated as shared when its time is before its device's
// snap_time. The document gives the pool time 1, every device snap_time 1,
// and each mapping time 0 if its blocks are shared with another mapping,
// else time 1, so the kernel copies exactly the shared blocks on their
// first write.
func FromView(v *thinpool.View, extras bool) *Superblock {
	u := v.Usage
	sb := &Superblock{
		UUID: thinpool.FormatUUID(u.UUID), Time: 1, Transaction: u.TransactionID, Version: 2,
		DataBlockSize: uint32(u.BlockSize / thinpool.SectorSize), NrDataBlocks: u.DataBlocks,
	}
	all := make([][]extent.Mapping, len(v.Devices))
	for i, d := range v.Devices {
		all[i] = d.Mappings
	}
	shared := sharedRuns(all)
	for _, d := range v.Devices {
		x := Device{DevID: uint32(d.ID), SnapTime: 1, Mappings: timedMappings(d.Mappings, shared)}
		if extras {
			x.Name, x.Size, x.Origin, x.ReadOnly = d.Name, uint64(d.Size), uint32(d.Origin), d.ReadOnly
			x.Created, x.Labels = d.Created, d.Labels
		}
		sb.Devices = append(sb.Devices, x)
	}
	return sb
}

// sharedRuns returns, in order, the pool blocks that more than one mapping
// points at.
func sharedRuns(all [][]extent.Mapping) []extent.Run {
	type edge struct {
		p     extent.PBlock
		delta int
	}
	var edges []edge
	for _, ms := range all {
		for _, m := range ms {
			edges = append(edges, edge{m.P, 1}, edge{m.PEnd(), -1})
		}
	}
	slices.SortFunc(edges, func(a, b edge) int {
		if a.p != b.p {
			if a.p < b.p {
				return -1
			}
			return 1
		}
		return a.delta - b.delta
	})
	var runs []extent.Run
	depth := 0
	var start extent.PBlock
	for i, e := range edges {
		depth += e.delta
		if i+1 < len(edges) && edges[i+1].p == e.p {
			continue // settle every edge at this block first
		}
		open := len(runs) > 0 && runs[len(runs)-1].Len == 0
		switch {
		case depth >= 2 && !open:
			start = e.p
			runs = append(runs, extent.Run{P: start})
		case depth < 2 && open:
			runs[len(runs)-1].Len = uint64(e.p - start)
		}
	}
	return runs
}

// timedMappings turns extents into dump mappings: pieces whose pool blocks
// are in shared get time 0, the rest time 1.
func timedMappings(ms []extent.Mapping, shared []extent.Run) []Mapping {
	out := make([]Mapping, 0, len(ms))
	emit := func(m extent.Mapping, p extent.PBlock, n uint64, time uint32) {
		out = append(out, Mapping{OriginBegin: uint64(m.V) + uint64(p-m.P), DataBegin: uint64(p), Length: n, Time: time})
	}
	for _, m := range ms {
		p := m.P
		i := sort.Search(len(shared), func(i int) bool { return shared[i].End() > p })
		for ; p < m.PEnd(); i++ {
			if i == len(shared) || shared[i].P >= m.PEnd() {
				emit(m, p, uint64(m.PEnd()-p), 1)
				break
			}
			r := shared[i]
			if r.P > p {
				emit(m, p, uint64(r.P-p), 1)
				p = r.P
			}
			end := min(r.End(), m.PEnd())
			emit(m, p, uint64(end-p), 0)
			p = end
		}
	}
	return out
}

// RestoreDevices turns the document's devices into the devices of a
// thinpool.Restore with data blocks of bs bytes. A device without a name is
// called dev-<dev_id>; one without a size gets devSize, or, if that is 0,
// its highest mapped block + 1 blocks. dev_id 0, which thinpool does not
// use, gets the next free id. Notes tell the user about ids that changed.
func (sb *Superblock) RestoreDevices(bs, devSize int64) ([]thinpool.RestoreDevice, []string, error) {
	var maxID uint32
	for _, d := range sb.Devices {
		maxID = max(maxID, d.DevID)
	}
	now := time.Now()
	var notes []string
	devs := make([]thinpool.RestoreDevice, 0, len(sb.Devices))
	for _, d := range sb.Devices {
		rd := thinpool.RestoreDevice{
			ID: thinpool.DevID(d.DevID), Name: d.Name, Size: int64(d.Size), Origin: thinpool.DevID(d.Origin),
			ReadOnly: d.ReadOnly, Created: d.Created, Labels: d.Labels, Mappings: Extents(d.Mappings),
		}
		if rd.Name == "" {
			rd.Name = fmt.Sprintf("dev-%d", d.DevID)
		}
		if rd.ID == 0 {
			rd.ID = thinpool.DevID(maxID + 1)
			notes = append(notes, fmt.Sprintf("dev_id 0 (%s) restored as device id %d", rd.Name, rd.ID))
		}
		if rd.Created.IsZero() {
			rd.Created = now
		}
		var end uint64 // one past the highest mapped block
		if n := len(rd.Mappings); n > 0 {
			end = uint64(rd.Mappings[n-1].End())
		}
		if end > thinpool.MaxDeviceSize/uint64(bs) {
			return nil, nil, fmt.Errorf("device %s maps block %d, past the largest device size (%s)", rd.Name, end-1, size(thinpool.MaxDeviceSize))
		}
		need := int64(end) * bs
		switch {
		case d.Size != 0 && int64(d.Size) < need || d.Size > thinpool.MaxDeviceSize:
			return nil, nil, fmt.Errorf("device %s: its size %d is not large enough for its mapped blocks (%s)", rd.Name, d.Size, size(need))
		case d.Size != 0:
		case devSize != 0 && devSize < need:
			return nil, nil, fmt.Errorf("device %s: --device-size %s is smaller than its mapped blocks need (%s)", rd.Name, size(devSize), size(need))
		case devSize != 0:
			rd.Size = (devSize + thinpool.SectorSize - 1) / thinpool.SectorSize * thinpool.SectorSize
		default:
			rd.Size = max(need, bs)
		}
		devs = append(devs, rd)
	}
	return devs, notes, nil
}

func size(n int64) string { return humanize.IBytes(uint64(n)) }

// Extents converts dump mappings into extents, joining those that continue
// each other (dumps split extents where times differ).
func Extents(ms []Mapping) []extent.Mapping {
	out := make([]extent.Mapping, 0, len(ms))
	for _, m := range ms {
		e := extent.Mapping{V: extent.VBlock(m.OriginBegin), P: extent.PBlock(m.DataBegin), Len: m.Length}
		if n := len(out); n > 0 && out[n-1].End() == e.V && out[n-1].PEnd() == e.P {
			out[n-1].Len += e.Len
			continue
		}
		out = append(out, e)
	}
	return out
}

// DataEnd is one past the highest data block the devices map: the least
// number of blocks a data device for them must hold.
func DataEnd(devs []thinpool.RestoreDevice) uint64 {
	var end extent.PBlock
	for _, d := range devs {
		for _, m := range d.Mappings {
			end = max(end, m.PEnd())
		}
	}
	return uint64(end)
}
