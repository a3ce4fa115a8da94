package bench

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/thinpool/thinpool/thinpool"
)

// The metadata workload: how many bytes of metadata a pool keeps per GiB of
// mapped data, written sequentially, in random order, and with a snapshot
// that changed a tenth of its blocks; against dm-thin's estimate.

func init() {
	register(workload{
		id:    "metadata",
		about: "metadata bytes per mapped GiB: sequential, random order, a snapshot",
		steps: func(h *harness) int {
			if h.on(TargetEngine) || h.on(TargetDmThin) {
				return h.cfg.Runs
			}
			return 0
		},
		run: runMetadata,
	})
}

// metaCase is one row: devices is the number of thin devices in the pool,
// mapped the data blocks mapped at the end.
type metaCase struct {
	id, title string
	devices   int
	mapped    uint64
}

// metaBlockSize is the block size of the pools and of dm-thin's estimate.
const metaBlockSize = thinpool.DefaultBlockSize

// metaCases are the rows for blocks mapped blocks.
func metaCases(blocks uint64) []metaCase {
	size := ibytes(int64(blocks) * metaBlockSize)
	return []metaCase{
		{"seq", size + " sequential, 1 MiB writes", 1, blocks},
		{"random", size + " random, 64 KiB writes", 1, blocks},
		{"snapshot", "snapshot of random, 10% rewritten", 2, blocks + blocks/10},
	}
}

const metadataMethod = `The bytes of metadata the pool keeps for its mappings, divided by the mapped data in GiB (mapped blocks × 64 KiB). X is the configuration's metadata size: 4 GiB, or 256 MiB with --quick.

- **seq**: one device of X, written from start to end in 1 MiB writes, in a pool with a data area of X.
- **random**: X in 64 KiB writes at distinct block-aligned offsets of a device of 4X, in random order. No write continues the one before, so every block is an extent of its own: the worst case for the map. The pool's data area is 1.1 X, which leaves room for the next row.
- **snapshot**: a writable snapshot of the random device, then 10% of its blocks, chosen at random, rewritten in whole 64 KiB writes, as a container changes its image. Mapped: 1.1 X in 2 devices.

**engine**: the writes go through the Go API. The file under the pool drops data writes, so the data area stays a hole, as in the snapshot workload; the metadata does not depend on the data. After the writes, ` + "`Pool.Checkpoint`" + ` writes the whole state and empties the journal. The sample is ` + "`Usage().MetadataState`" + `, the size of that checkpoint. A checkpoint is a 64-byte header; then, per device, its record (name, labels) and its extents at 24 bytes each (virtual start, pool start, length); then the pool's reference-count runs at 20 bytes each (pool start, length, count). See FORMAT.md "Checkpoint". Blocks written in order are one extent and one run, however many there are. Blocks written in random order each need an extent, while their reference runs still merge as long as the pool allocates them one after another. A snapshot writes its own full map, and each rewritten block splits its origin's run. The note on each cell gives the checkpoint's size, the extents and the metadata area reserved for the pool (` + "`DefaultMetadataSize`" + `: 160 bytes per data block, at least 4 MiB). That area is the space set aside on disk, of which the checkpoint may use a third (M1).

**dm-thin**: ` + "`thin_metadata_size -b 64k -s MAPPEDb -m DEVICES -u b -n`" + `, divided by MAPPED in GiB. This is thin-provisioning-tools' estimate of the kernel's metadata device for a pool whose data size is the row's mapped size, every block mapped, with that many thin devices. It is ⌈blocks / 126⌉ 4 KiB leaves of the mapping btree (half-full nodes of 252 16-byte entries) plus one 4 KiB root per device. That is about 32.5 bytes per block, whatever order the blocks were written in. It counts neither the data space map (dm-thin's reference counts) nor the btrees' interior nodes. For the snapshot row it counts one mapping per pool block. dm-thin shares btree nodes between a snapshot and its origin until a write changes them, and a 10% random rewrite touches nearly every leaf of 126 entries, so the estimate understates dm-thin there.

Runs repeat the same seeded writes, so every run should give the same figures.`

func runMetadata(h *harness) error {
	blocks := uint64(h.cfg.MetadataSize / metaBlockSize)
	if blocks < 10 {
		return fmt.Errorf("metadata size %d is less than 10 blocks", h.cfg.MetadataSize)
	}
	t := h.table(&Table{
		ID:     "metadata",
		Title:  "Metadata per mapped GiB",
		Unit:   "bytes per mapped GiB",
		Lower:  true,
		Goal:   "metadata per mapped block ≤ dm-thin's estimate",
		Method: metadataMethod,
		Commands: []string{
			"# engine (Go): writes through thinpool.Thin.WriteAt; p.Checkpoint(); p.Usage().MetadataState",
			"thin_metadata_size -b 64k -s MAPPEDb -m DEVICES -u b -n",
		},
	})
	cases := metaCases(blocks)
	for _, c := range cases {
		t.row(c.id, c.title, 0)
	}
	for run := range h.cfg.Runs {
		if err := h.ctx.Err(); err != nil {
			return err
		}
		h.progress("metadata: run %d of %d", run+1, h.cfg.Runs)
		if h.on(TargetEngine) {
			if err := h.metadataEngine(t, run, blocks); err != nil {
				if h.ctx.Err() != nil {
					return h.ctx.Err()
				}
				h.logf("  engine: %v", err)
				for _, c := range cases {
					if r := t.Row(c.id); len(r.Samples[TargetEngine]) <= run {
						r.note(TargetEngine, "failed: "+err.Error())
					}
				}
			}
		}
		if h.on(TargetDmThin) {
			for _, c := range cases {
				if err := h.metadataDmThin(t, c); err != nil {
					t.Row(c.id).note(TargetDmThin, "failed: "+err.Error())
				}
			}
		}
	}
	return nil
}

// metadataEngine builds the three cases in pools in a directory of run and
// records their checkpoint sizes. The pools are deleted at the end.
func (h *harness) metadataEngine(t *Table, run int, blocks uint64) error {
	dir, err := h.dir("metadata", fmt.Sprint("run", run+1))
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	const bs = metaBlockSize
	n := int64(blocks)

	p, err := createMetaPool(filepath.Join(dir, "seq.img"), thinpool.Options{DataSize: n * bs})
	if err != nil {
		return err
	}
	defer p.Close()
	seq, err := p.CreateThin("seq", n*bs, nil)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	fillBlock(buf, 1)
	for off := int64(0); off < n*bs; off += int64(len(buf)) {
		if _, err := seq.WriteAt(buf[:min(int64(len(buf)), n*bs-off)], off); err != nil {
			return err
		}
	}
	if err := h.metadataRecord(t, t.Row("seq"), p, n*bs, blocks, ""); err != nil {
		return err
	}
	if err := p.Close(); err != nil {
		return err
	}

	mapped := blocks + blocks/10
	p, err = createMetaPool(filepath.Join(dir, "random.img"), thinpool.Options{DataSize: int64(mapped) * bs})
	if err != nil {
		return err
	}
	defer p.Close()
	area := p.Usage().MetadataSize
	random, err := p.CreateThin("random", 4*n*bs, nil)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(1, 2)) // the same writes in every run
	written := rng.Perm(4 * int(n))[:n]
	blk := buf[:bs]
	for _, v := range written {
		if _, err := random.WriteAt(blk, int64(v)*bs); err != nil {
			return err
		}
	}
	if err := h.metadataRecord(t, t.Row("random"), p, int64(mapped)*bs, blocks, ""); err != nil {
		return err
	}

	// The snapshot may need a larger metadata area than the default: its
	// admission reserves the worst case per extent of the origin (M1).
	var snap *thinpool.Thin
	var grew []string
	if err := growMetadata(p, "the snapshot", &grew, func() (err error) {
		snap, err = p.Snapshot("random", "snapshot", false)
		return err
	}); err != nil {
		return err
	}
	for _, i := range rng.Perm(int(n))[:n/10] {
		off := int64(written[i]) * bs
		if err := growMetadata(p, "a rewrite", &grew, func() error {
			_, err := snap.WriteAt(blk, off)
			return err
		}); err != nil {
			return err
		}
	}
	note := ""
	if len(grew) > 0 {
		note = fmt.Sprintf("ErrMetadataFull with the default metadata area of %s; GrowMetadata grew it for %s", ibytes(area), strings.Join(grew, ", then for "))
	}
	if err := h.metadataRecord(t, t.Row("snapshot"), p, int64(mapped)*bs, mapped, note); err != nil {
		return err
	}
	return p.Close()
}

// growMetadata runs f and, while it fails with ErrMetadataFull, doubles the
// metadata area of p (up to its reserve) and runs it again. The first time
// it grows the area for what, it appends what to grew.
func growMetadata(p *thinpool.Pool, what string, grew *[]string, f func() error) error {
	for {
		err := f()
		if !errors.Is(err, thinpool.ErrMetadataFull) {
			return err
		}
		u := p.Usage()
		if u.MetadataSize >= u.MetadataReserve {
			return err
		}
		if gerr := p.GrowMetadata(min(2*u.MetadataSize, u.MetadataReserve)); gerr != nil {
			return errors.Join(err, gerr)
		}
		if !slices.Contains(*grew, what) {
			*grew = append(*grew, what)
		}
	}
}

// metadataRecord checkpoints p, checks that it maps want blocks, and
// records its state size per mapped GiB. dataSize is the pool's data area;
// note, if not empty, ends the cell's note.
func (h *harness) metadataRecord(t *Table, r *Row, p *thinpool.Pool, dataSize int64, want uint64, note string) error {
	if err := p.Checkpoint(); err != nil {
		return err
	}
	u := p.Usage()
	if u.UsedBlocks != want {
		return fmt.Errorf("%s: the pool maps %d blocks, want %d", r.ID, u.UsedBlocks, want)
	}
	if u.MetadataUsed != u.MetadataState {
		return fmt.Errorf("%s: the checkpoint is %d bytes but the state %d", r.ID, u.MetadataUsed, u.MetadataState)
	}
	extents := 0
	for _, d := range p.Devices() {
		th, err := p.DeviceByID(d.ID)
		if err != nil {
			return err
		}
		du, err := th.Usage()
		if err != nil {
			return err
		}
		extents += du.Extents
	}
	mapped := int64(u.UsedBlocks) * u.BlockSize
	h.record(t, r, TargetEngine, float64(u.MetadataState)/(float64(mapped)/(1<<30)))
	msg := fmt.Sprintf("checkpoint %s bytes for %d blocks, %.3g bytes per block; extents: %d; metadata area %s for %s of data (%s per data GiB; DefaultMetadataSize gives %s)",
		humanize.Comma(u.MetadataState), u.UsedBlocks, float64(u.MetadataState)/float64(u.UsedBlocks), extents,
		ibytes(u.MetadataSize), ibytes(dataSize), ibytes(int64(float64(u.MetadataSize)/(float64(dataSize)/(1<<30)))),
		ibytes(thinpool.DefaultMetadataSize(dataSize, metaBlockSize)))
	if note != "" {
		msg += "; " + note
	}
	r.note(TargetEngine, msg)
	return nil
}

// metadataDmThin records dm-thin's estimate for case c.
func (h *harness) metadataDmThin(t *Table, c metaCase) error {
	size := int64(c.mapped) * metaBlockSize
	out, err := h.sh(nil, "thin_metadata_size", "-b", "64k", "-s", strconv.FormatInt(size, 10)+"b",
		"-m", strconv.Itoa(c.devices), "-u", "b", "-n")
	if err != nil {
		return err
	}
	est, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		return fmt.Errorf("thin_metadata_size printed %q: %w", out, err)
	}
	r := t.Row(c.id)
	h.record(t, r, TargetDmThin, float64(est)/(float64(size)/(1<<30)))
	r.note(TargetDmThin, fmt.Sprintf("estimate %s bytes for a pool of %s and %d thin device(s), %.1f bytes per block",
		humanize.Comma(est), ibytes(size), c.devices, float64(est)/float64(c.mapped)))
	return nil
}
