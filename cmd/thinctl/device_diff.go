package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/thinpool/thinpool/thinpool"
)

// diffJSON is the JSON of 'device diff'. Ranges are in blocks.
type diffJSON struct {
	BlockSize int64                `json:"blockSize"`
	Ranges    []thinpool.DiffRange `json:"ranges"`
}

// deviceDiffOptions are the arguments of 'device diff'.
type deviceDiffOptions struct {
	left, right string
}

func (a *app) newDeviceDiffCmd() *cobra.Command {
	o := &deviceDiffOptions{}
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
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: a.completeNames("device", 2, cobra.ShellCompDirectiveNoFileComp),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.left, o.right = args[0], args[1]
			return a.runDeviceDiff(cmd.Context(), o)
		},
	}
}

func (a *app) runDeviceDiff(_ context.Context, o *deviceDiffOptions) error {
	return a.withPool(func(p *thinpool.Pool) error {
		for _, name := range []string{o.left, o.right} {
			if _, err := a.device(p, name); err != nil {
				return err
			}
		}
		ranges, err := p.Diff(o.left, o.right)
		if err != nil {
			return err
		}
		return a.printDiff(o.left, o.right, p.BlockSize(), ranges)
	})
}

func (a *app) printDiff(left, right string, bs int64, ranges []thinpool.DiffRange) error {
	if a.json {
		if ranges == nil {
			ranges = []thinpool.DiffRange{}
		}
		return a.printJSON(diffJSON{BlockSize: bs, Ranges: ranges})
	}
	blocks := func(n uint64) string { return fmt.Sprintf("%d (%s)", n, formatSize(int64(n)*bs)) }
	total, byKind := thinpool.DiffBlocks(ranges)
	if len(ranges) > 0 {
		rows := [][]string{{"BEGIN", "END", "LENGTH", "KIND"}}
		for _, r := range ranges {
			rows = append(rows, []string{blocks(uint64(r.Begin)), blocks(uint64(r.End())), blocks(r.Len), r.Kind.String()})
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
		left, right, total, formatSize(int64(total)*bs), len(ranges), plural, byKind[thinpool.DiffLeftOnly], byKind[thinpool.DiffRightOnly], byKind[thinpool.DiffDifferent])
	return nil
}
