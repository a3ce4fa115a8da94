package main

import (
	"fmt"
	"math"

	"github.com/spf13/cobra"

	"github.com/thinpool/thinpool/extent"
	"github.com/thinpool/thinpool/thinpool"
)

// diffKind says how two devices differ over a range of virtual blocks.
type diffKind uint8

const (
	diffInvalid   diffKind = iota
	diffLeftOnly           // mapped in the left device only
	diffRightOnly          // mapped in the right device only
	diffDifferent          // mapped in both, to different pool blocks
)

func (k diffKind) String() string {
	switch k {
	case diffLeftOnly:
		return "left-only"
	case diffRightOnly:
		return "right-only"
	case diffDifferent:
		return "different"
	}
	return fmt.Sprintf("diffKind(%d)", uint8(k))
}

// MarshalText makes a kind its name in JSON.
func (k diffKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText parses a kind's name.
func (k *diffKind) UnmarshalText(b []byte) error {
	for c := diffLeftOnly; c <= diffDifferent; c++ {
		if string(b) == c.String() {
			*k = c
			return nil
		}
	}
	return fmt.Errorf("unknown diff kind %q", b)
}

// diffRange is Len virtual blocks from Begin that differ the same way.
type diffRange struct {
	Begin extent.VBlock `json:"begin"`
	Len   uint64        `json:"length"`
	Kind  diffKind      `json:"kind"`
}

// End is the first block after r.
func (r diffRange) End() extent.VBlock { return r.Begin + extent.VBlock(r.Len) }

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
func diffMappings(left, right []extent.Mapping) []diffRange {
	var out []diffRange
	add := func(v, end extent.VBlock, k diffKind) {
		if n := len(out); n > 0 && out[n-1].Kind == k && out[n-1].End() == v {
			out[n-1].Len += uint64(end - v)
			return
		}
		out = append(out, diffRange{Begin: v, Len: uint64(end - v), Kind: k})
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
			add(v, end, diffDifferent)
		case lm && !rm:
			add(v, end, diffLeftOnly)
		case rm && !lm:
			add(v, end, diffRightOnly)
		}
		v = end
	}
}

// diffJSON is the JSON of 'device diff'. Ranges are in blocks.
type diffJSON struct {
	BlockSize int64       `json:"blockSize"`
	Ranges    []diffRange `json:"ranges"`
}

func (a *app) deviceDiffCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "diff A B",
		Short: "List the block ranges where two devices differ (thin_delta)",
		Long: `List the ranges of virtual blocks where two devices differ, as thin_delta
does, by comparing their mappings (no data is read). Ranges that both devices
leave unmapped or map to the same pool blocks are left out; the others are:

  left-only   mapped in A only
  right-only  mapped in B only
  different   mapped in both, to different pool blocks

BEGIN and END (the first block after the range) are block numbers with their
byte offsets. The typical use is a device and one of its snapshots: the ranges
are what was written to either since the snapshot was taken.`,
		Example: `  thinctl device diff web-backup web
  thinctl device diff web-backup web --json`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withPool(func(p *thinpool.Pool) error {
				var lists [2][]extent.Mapping
				for k, name := range args {
					if _, err := a.device(p, name); err != nil {
						return err
					}
					ms, err := p.Mappings(name)
					if err != nil {
						return objErr(err, "device", name)
					}
					lists[k] = ms
				}
				ranges := diffMappings(lists[0], lists[1])
				return a.printDiff(args[0], args[1], p.BlockSize(), ranges)
			})
		},
	}
}

func (a *app) printDiff(left, right string, bs int64, ranges []diffRange) error {
	if a.json {
		if ranges == nil {
			ranges = []diffRange{}
		}
		return a.printJSON(diffJSON{BlockSize: bs, Ranges: ranges})
	}
	blocks := func(n uint64) string { return fmt.Sprintf("%d (%s)", n, formatSize(int64(n)*bs)) }
	var total uint64
	byKind := map[diffKind]uint64{}
	if len(ranges) > 0 {
		rows := [][]string{{"BEGIN", "END", "LENGTH", "KIND"}}
		for _, r := range ranges {
			rows = append(rows, []string{blocks(uint64(r.Begin)), blocks(uint64(r.End())), blocks(r.Len), r.Kind.String()})
			total += r.Len
			byKind[r.Kind] += r.Len
		}
		if err := a.table(rows); err != nil {
			return err
		}
	}
	if len(ranges) == 0 {
		a.say("Devices %q and %q map the same blocks", left, right)
		return nil
	}
	plural := "s"
	if len(ranges) == 1 {
		plural = ""
	}
	a.say("Devices %q and %q differ in %d blocks (%s) in %d range%s: %d left-only, %d right-only, %d different",
		left, right, total, formatSize(int64(total)*bs), len(ranges), plural, byKind[diffLeftOnly], byKind[diffRightOnly], byKind[diffDifferent])
	return nil
}
