package thinpool

import (
	"fmt"
	"math"

	"github.com/thinpool/thinpool/extent"
)

// DiffKind says how two devices differ over a range of virtual blocks.
type DiffKind uint8

const (
	DiffInvalid   DiffKind = iota
	DiffLeftOnly           // mapped in the left device only
	DiffRightOnly          // mapped in the right device only
	DiffDifferent          // mapped in both, to different pool blocks
)

func (k DiffKind) String() string {
	switch k {
	case DiffLeftOnly:
		return "left-only"
	case DiffRightOnly:
		return "right-only"
	case DiffDifferent:
		return "different"
	}
	return fmt.Sprintf("DiffKind(%d)", uint8(k))
}

// MarshalText makes a kind its name in JSON.
func (k DiffKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText parses a kind's name.
func (k *DiffKind) UnmarshalText(b []byte) error {
	for c := DiffLeftOnly; c <= DiffDifferent; c++ {
		if string(b) == c.String() {
			*k = c
			return nil
		}
	}
	return fmt.Errorf("unknown diff kind %q", b)
}

// DiffRange is Len virtual blocks from Begin that differ the same way.
type DiffRange struct {
	Begin extent.VBlock `json:"begin"`
	Len   uint64        `json:"length"`
	Kind  DiffKind      `json:"kind"`
}

// End is the first block after r.
func (r DiffRange) End() extent.VBlock { return r.Begin + extent.VBlock(r.Len) }

// noBlock is past every virtual block: the end of the unmapped tail.
const noBlock = extent.VBlock(math.MaxUint64)

// mappingAt describes ms at block v, where i is the first mapping of ms
// that ends after v (len(ms) if none): whether v is mapped, to which pool
// block, and the first block after v where that changes or may change.
func mappingAt(ms []extent.Mapping, i int, v extent.VBlock) (mapped bool, p extent.PBlock, end extent.VBlock) {
	switch {
	case i == len(ms):
		return false, 0, noBlock
	case v < ms[i].V:
		return false, 0, ms[i].V
	}
	return true, ms[i].P + extent.PBlock(v-ms[i].V), ms[i].End()
}

// diffMappings returns the ranges of virtual blocks where left and right
// differ, in order, as thin_delta reports them: blocks that both leave
// unmapped or both map to the same pool block are left out, and adjacent
// ranges of the same kind are merged. Each list must be in virtual order
// without overlaps, as Pool.Mappings returns it; adjacent mappings need not
// be merged.
func diffMappings(left, right []extent.Mapping) []DiffRange {
	var out []DiffRange
	add := func(v, end extent.VBlock, k DiffKind) {
		if n := len(out); n > 0 && out[n-1].Kind == k && out[n-1].End() == v {
			out[n-1].Len += uint64(end - v)
			return
		}
		out = append(out, DiffRange{Begin: v, Len: uint64(end - v), Kind: k})
	}
	i, j := 0, 0
	for v := extent.VBlock(0); ; {
		for i < len(left) && left[i].End() <= v {
			i++
		}
		for j < len(right) && right[j].End() <= v {
			j++
		}
		if i == len(left) && j == len(right) {
			return out
		}
		lm, lp, lend := mappingAt(left, i, v)
		rm, rp, rend := mappingAt(right, j, v)
		end := min(lend, rend)
		switch {
		case lm && rm && lp != rp:
			add(v, end, DiffDifferent)
		case lm && !rm:
			add(v, end, DiffLeftOnly)
		case rm && !lm:
			add(v, end, DiffRightOnly)
		}
		v = end
	}
}

// Diff returns the ranges of virtual blocks where the devices called left
// and right differ, as thin_delta reports them (see diffMappings), read at
// one point in time: no write or snapshot lands between the two reads.
// Only mappings are compared; no data is read.
func (p *Pool) Diff(left, right string) ([]DiffRange, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	var lists [2][]extent.Mapping
	for k, name := range []string{left, right} {
		d, err := p.lookup(name)
		if err != nil {
			return nil, err
		}
		var ms []extent.Mapping
		if err := d.m.Ascend(func(m extent.Mapping) bool {
			ms = append(ms, m)
			return true
		}); err != nil {
			return nil, err
		}
		lists[k] = ms
	}
	return diffMappings(lists[0], lists[1]), nil
}

// DiffBlocks is the number of blocks the ranges cover, in total and of
// each kind.
func DiffBlocks(ranges []DiffRange) (total uint64, byKind map[DiffKind]uint64) {
	byKind = map[DiffKind]uint64{}
	for _, r := range ranges {
		total += r.Len
		byKind[r.Kind] += r.Len
	}
	return total, byKind
}
