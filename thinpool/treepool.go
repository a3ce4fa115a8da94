package thinpool

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/thinpool/thinpool/extent"
	"github.com/thinpool/thinpool/thinpool/internal/btree"
)

// Format 3's side of the pool (docs/metadata-v3.md): creating, opening and
// checkpointing the trees. The journal is format 2's.

// treeErr reports an error of the trees: corruption becomes a
// *CorruptionError of the pool.
func treeErr(sb *superblock, err error) error {
	if errors.Is(err, btree.ErrCorrupt) {
		return corruptf(sb.nodesOff(), "metadata tree: %v", err)
	}
	return err
}

// createTrees writes an empty format 3 pool into f, whose layout sb gives,
// and opens it.
func createTrees(f File, sb *superblock) (*Pool, error) {
	store, err := btree.Create(f, sb.nodesOff(), sb.nrNodes, sb.seed)
	if err != nil {
		return nil, err
	}
	st, err := newTreeState(uint64(sb.blockSize), sb.nrDataBlocks, store)
	if err != nil {
		return nil, err
	}
	p := &Pool{f: f, sb: *sb, st: st}
	p.mu.Lock()
	err = p.checkpointTrees(nil)
	p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return newPool(f, &p.sb, st, 0, nil)
}

// openTrees reads the state of the format 3 pool in f: the space-map pages
// and the device tree. The mapping trees are read as they are used.
func openTrees(f File, sb *superblock) (*state, error) {
	store, err := btree.Open(f, sb.nodesOff(), sb.nrNodes, sb.generation, sb.seed)
	if err != nil {
		return nil, treeErr(sb, err)
	}
	ds, err := btree.OpenDataSpace(store, sb.dsRoot)
	if err != nil {
		return nil, treeErr(sb, err)
	}
	st := newState(uint64(sb.blockSize), sb.nrDataBlocks)
	st.trees = &trees{s: store, ds: ds, devs: btree.OpenDevices(store, sb.devRoot)}
	st.refs = treeCounts{st.trees}
	st.tid = sb.tid
	var bad error
	err = st.trees.devs.Ascend(func(id uint64, e btree.DeviceEntry) bool {
		d := decoder{b: e.Record}
		meta, err := decodeDevMeta(&d)
		switch {
		case err != nil:
			bad = fmt.Errorf("device %d: %v", id, err)
		case uint64(meta.id) != id || meta.size != e.Size || uint64(meta.origin) != e.Origin ||
			meta.flags != e.Flags || meta.created != e.Created || d.off != len(e.Record):
			bad = fmt.Errorf("device %d: entry and record differ", id)
		case st.names[meta.name] != nil:
			bad = fmt.Errorf("device %d: name %q is taken", id, meta.name)
		case e.Blocks > (meta.size+st.blockSize-1)/st.blockSize:
			bad = fmt.Errorf("device %d: %d blocks mapped", id, e.Blocks)
		}
		if bad != nil {
			return false
		}
		saved := e
		st.addDevice(&device{meta: meta, m: treeMap{t: st.trees, m: btree.OpenMapping(store, ds, e.Root, e.Blocks)}, saved: &saved})
		return true
	})
	if err != nil {
		return nil, treeErr(sb, err)
	}
	if bad != nil {
		return nil, corruptf(sb.nodesOff(), "device tree: %v", bad)
	}
	if sb.nextID < st.nextID {
		return nil, corruptf(sb.nodesOff(), "next device id %d, device %d exists", sb.nextID, st.nextID-1)
	}
	st.nextID = sb.nextID
	return st, nil
}

// checkpointTrees writes format 3's checkpoint: the device entries that
// changed, then btree Flush(gen) → fdatasync (data too, D1) → superblock →
// fdatasync → Committed(gen). change, if not nil, edits the superblock.
// Called with syncMu and mu held; an error fails the pool.
func (p *Pool) checkpointTrees(change func(*superblock)) error {
	t := p.st.trees
	t.mu.Lock()
	defer t.mu.Unlock()
	sb := p.sb
	if change != nil {
		change(&sb)
	}
	fail := func(err error) error {
		if p.failed == nil {
			p.failed = err
		}
		return failedErr(err)
	}
	if nodes := (sb.metaSize - sb.journalSize) / metaSectorSize; nodes > t.s.Nodes() {
		t.s.Grow(nodes)
	}
	sb.nrNodes = t.s.Nodes()
	if err := p.st.saveDevices(); err != nil {
		return fail(err)
	}
	gen := t.s.Gen()
	if err := t.s.Flush(gen); err != nil {
		return fail(err)
	}
	p.dataDirty.Store(false) // the next sync covers every completed write
	if err := p.f.Sync(); err != nil {
		return fail(err)
	}
	sb.version, sb.generation, sb.seal = formatV3, gen, newSeal()
	sb.devRoot, sb.dsRoot, sb.tid, sb.nextID = t.devs.Root(), t.ds.Root(), p.st.tid, p.st.nextID
	if _, err := p.f.WriteAt(sb.encode(), int64(sb.generation%superSlots)*metaSectorSize); err != nil {
		return fail(err)
	}
	if err := p.f.Sync(); err != nil {
		return fail(err)
	}
	t.s.Committed(gen)
	p.sb = sb
	p.journalOff = 0
	return nil
}

// saveDevices brings the device tree up to date: entries of deleted
// devices go, changed ones are written. Called with the trees locked.
func (s *state) saveDevices() error {
	t := s.trees
	for _, id := range t.gone {
		if _, err := t.devs.Delete(uint64(id)); err != nil {
			return err
		}
	}
	t.gone = nil
	for id, d := range s.devs {
		m := d.m.(treeMap).m
		e := btree.DeviceEntry{
			Root: m.Root(), Size: d.meta.size, Blocks: m.Blocks(), Created: d.meta.created,
			Origin: uint64(d.meta.origin), Flags: d.meta.flags,
		}
		enc := encoder{b: make([]byte, 0, d.meta.encodedSize())}
		d.meta.encode(&enc)
		e.Record = enc.b
		if d.saved != nil && sameEntry(d.saved, &e) {
			continue
		}
		if err := t.devs.Put(uint64(id), e); err != nil {
			return err
		}
		d.saved = &e
	}
	return nil
}

func sameEntry(a, b *btree.DeviceEntry) bool {
	return a.Root == b.Root && a.Size == b.Size && a.Blocks == b.Blocks && a.Created == b.Created &&
		a.Time == b.Time && a.Origin == b.Origin && a.Flags == b.Flags && bytes.Equal(a.Record, b.Record)
}

// Metadata nodes a change may allocate in format 3 (M1 in spirit): a
// change either finds them free before it starts or fails with
// ErrMetadataFull, since one that runs out half way leaves a tree half
// changed (and then fails the pool, see treeError). nodesPerChange covers
// the paths from the roots (the runs of one change are neighbours, so they
// share them) and a checkpoint's device leaves; each mapped or unmapped run
// may add a mapping leaf and a data space leaf for its new and its old
// blocks, each with the sibling a split makes. A bound on what one change
// shadows and splits, not a proof: nodesPerRun = 24 (every run on its own
// paths) refused a 42-block write on a 4 MiB metadata area with 872 nodes
// free.
const (
	nodesPerChange = 64
	nodesPerRun    = 6
)

// admitNodes is admit for format 3: a record's extra bytes go to blobs.
// Called with mu held.
func (p *Pool) admitNodes(extra, runs int) error {
	t := p.st.trees
	need := uint64(nodesPerChange + len(p.st.devs) + runs*nodesPerRun + max(extra, 0)/btree.NodeSize)
	t.mu.Lock()
	free := t.s.FreeNodes()
	t.mu.Unlock()
	if free < need {
		return fmt.Errorf("%w: %d free metadata nodes, a change may need %d", ErrMetadataFull, free, need)
	}
	return nil
}

// usedEnd is the highest used data block + 1 (format 3). Called with mu held.
func (s *state) usedEnd() (extent.PBlock, error) {
	s.trees.mu.Lock()
	defer s.trees.mu.Unlock()
	var end extent.PBlock
	err := s.trees.ds.Ascend(func(r extent.RefRun) bool {
		end = r.End()
		return true
	})
	return end, err
}
