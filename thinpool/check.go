package thinpool

import (
	"errors"
	"fmt"

	"github.com/thinpool/thinpool/extent"
)

// CheckReport is the result of Pool.Check. Errors break an invariant and
// may lose data; leaks only waste space (blocks counted as used that no
// device maps), and Repair fixes them, as thin_check and thin_repair do.
type CheckReport struct {
	Errors []string
	Leaks  []string
	// LeakedBlocks is the number of blocks that leaks hold.
	LeakedBlocks uint64
	Devices      int
	Mappings     int // extents over all devices
}

// OK reports whether the check found nothing wrong.
func (r *CheckReport) OK() bool { return len(r.Errors) == 0 && len(r.Leaks) == 0 }

func (r *CheckReport) errorf(format string, args ...any) {
	if len(r.Errors) < 100 {
		r.Errors = append(r.Errors, fmt.Sprintf(format, args...))
	}
}

// Check verifies every invariant of the pool (see doc.go) against its
// mappings, and the checksums of the metadata on disk. It stops the pool's
// I/O while it runs. The error is for failures to run the check.
func (p *Pool) Check() (*CheckReport, error) {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	p.ioGate.Lock()
	defer p.ioGate.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	r := &CheckReport{Devices: len(p.st.devs)}
	computed := p.checkDevices(r)
	p.checkRefs(r, computed)
	p.checkFree(r)
	if err := p.checkDisk(r); err != nil {
		return nil, err
	}
	return r, nil
}

// checkDevices checks each device's mappings (I2, I3, E1) and returns the
// reference counts they imply.
func (p *Pool) checkDevices(r *CheckReport) *extent.RefCounts {
	computed := extent.NewRefCounts()
	nrEntries, metaBytes := 0, 0
	for id, d := range p.st.devs {
		if d.meta.id != id || p.st.names[d.meta.name] != d {
			r.errorf("device %d (%q): index out of step", id, d.meta.name)
		}
		if id >= p.st.nextID {
			r.errorf("device %d: id not below next id %d", id, p.st.nextID)
		}
		if err := d.meta.validate(); err != nil {
			r.errorf("device %d: %v", id, err)
		}
		nrEntries += entries(d.m)
		metaBytes += d.meta.encodedSize()
		devBlocks := p.st.devBlocks(d)
		var prev extent.Mapping
		var blocks uint64
		first := true
		extents := 0
		if err := d.m.Ascend(func(m extent.Mapping) bool {
			extents++
			switch {
			case m.Len == 0:
				r.errorf("device %d: empty mapping at %d", id, m.V)
			case !first && m.V < prev.End():
				r.errorf("device %d: mappings %v and %v overlap", id, prev, m)
			case uint64(m.End()) > devBlocks:
				r.errorf("device %d: mapping %v past the end of the device (%d blocks)", id, m, devBlocks)
			case uint64(m.PEnd()) > p.st.nrBlocks:
				r.errorf("device %d: mapping %v past the end of the data area (%d blocks)", id, m, p.st.nrBlocks)
			default:
				computed.Inc(m.P, m.Len)
			}
			blocks += m.Len
			prev, first = m, false
			return true
		}); err != nil {
			r.errorf("device %d: %v", id, err)
		}
		if blocks != d.m.Blocks() {
			r.errorf("device %d: mapped block count %d, counted %d", id, d.m.Blocks(), blocks)
		}
		r.Mappings += extents
	}
	if len(p.st.names) != len(p.st.devs) {
		r.errorf("%d names for %d devices", len(p.st.names), len(p.st.devs))
	}
	if nrEntries != p.st.mapEntries || metaBytes != p.st.metaBytes {
		r.errorf("metadata size accounting: %d extents and %d record bytes, counted %d and %d",
			p.st.mapEntries, p.st.metaBytes, nrEntries, metaBytes)
	}
	return computed
}

// checkRefs compares the stored reference counts with the ones the mappings
// imply (I1): more is a leak, fewer an error.
func (p *Pool) checkRefs(r *CheckReport, computed *extent.RefCounts) {
	if p.st.trees != nil {
		p.checkTreeRefs(r, computed)
		return
	}
	compare := func(run extent.RefRun, want uint32) {
		switch {
		case run.Count > want:
			r.Leaks = append(r.Leaks, fmt.Sprintf("blocks %d+%d: %d references, %d mapped", run.P, run.Len, run.Count, want))
			if want == 0 {
				r.LeakedBlocks += run.Len
			}
		case run.Count < want:
			r.errorf("blocks %d+%d: %d references, %d mappings point at them", run.P, run.Len, run.Count, want)
		}
	}
	p.st.memRefs().Ascend(func(run extent.RefRun) bool {
		computed.Runs(run.P, run.Len, func(c extent.RefRun) bool {
			compare(extent.RefRun{P: c.P, Len: c.Len, Count: run.Count}, c.Count)
			return true
		})
		return true
	})
	computed.Ascend(func(c extent.RefRun) bool {
		p.st.memRefs().Runs(c.P, c.Len, func(s extent.RefRun) bool {
			if s.Count == 0 {
				compare(s, c.Count)
			}
			return true
		})
		return true
	})
}

// checkFree checks that free and used blocks do not overlap and that every
// block is accounted for (A1).
func (p *Pool) checkFree(r *CheckReport) {
	var inFlight uint64
	for _, run := range append(append([]extent.Run(nil), p.pending...), p.committed...) {
		inFlight += run.Len
		if err := p.st.refs.Runs(run.P, run.Len, func(c extent.RefRun) bool {
			if c.Count > 0 {
				r.errorf("blocks %d+%d are freed but still referenced", c.P, c.Len)
			}
			return true
		}); err != nil {
			r.errorf("data space map: %v", err)
		}
	}
	p.free.Ascend(func(run extent.Run) bool {
		if uint64(run.End()) > p.st.nrBlocks {
			r.errorf("free blocks %d+%d past the end of the data area", run.P, run.Len)
		}
		if err := p.st.refs.Runs(run.P, run.Len, func(c extent.RefRun) bool {
			if c.Count > 0 {
				r.errorf("blocks %d+%d are both free and referenced", c.P, c.Len)
			}
			return true
		}); err != nil {
			r.errorf("data space map: %v", err)
			return false
		}
		return true
	})
	used, free := p.st.refs.Used(), p.free.Blocks()
	if used+free+inFlight+p.reserved != p.st.nrBlocks {
		r.errorf("space accounting: %d used + %d free + %d awaiting commit + %d in flight != %d blocks",
			used, free, inFlight, p.reserved, p.st.nrBlocks)
	}
}

// checkDisk re-reads the superblock, checkpoint and journal and verifies
// their checksums. Called with syncMu held, so nothing is being written.
func (p *Pool) checkDisk(r *CheckReport) error {
	sb, err := readSuperblock(p.f)
	if err != nil {
		r.errorf("superblock: %v", err)
		return nil
	}
	if sb.generation != p.sb.generation || sb.ckptOffset != p.sb.ckptOffset {
		r.errorf("superblock on disk is generation %d, in memory %d", sb.generation, p.sb.generation)
		return nil
	}
	var st *state
	if sb.version == formatV3 {
		st, err = openTrees(p.f, sb)
	} else {
		off := int64(sb.metaOffset + sb.ckptOffset)
		st, _, err = readCheckpoint(p.f, off, sb.ckptLen, uint64(sb.blockSize), sb.nrDataBlocks)
	}
	if err != nil && !errors.Is(err, ErrCorrupt) {
		return err
	}
	if err != nil {
		r.errorf("checkpoint: %v", err)
		return nil
	}
	end, _, _, err := replay(p.f, sb, st)
	switch {
	case err != nil:
		r.errorf("journal: %v", err)
	case end != p.journalOff:
		r.errorf("journal ends at %d on disk, %d in memory", end, p.journalOff)
	case st.tid != p.st.tid:
		r.errorf("journal replays to transaction %d, pool is at %d", st.tid, p.st.tid)
	}
	return nil
}

// Repair fixes what Check reports as leaks: reference counts above what the
// mappings imply are lowered, and blocks no device maps become free. It
// refuses when Check finds errors, which need a person.
func (p *Pool) Repair() (*CheckReport, error) {
	r, err := p.Check()
	if err != nil || r.OK() {
		return r, err
	}
	if len(r.Errors) > 0 {
		return r, fmt.Errorf("%w: %d errors, not repairing", ErrCorrupt, len(r.Errors))
	}
	if p.st.trees != nil {
		return r, invalidf("repair of a format %d pool is not supported yet", formatV3)
	}
	p.syncMu.Lock()
	p.ioGate.Lock()
	p.mu.Lock()
	computed := extent.NewRefCounts()
	for _, d := range p.st.devs {
		d.mem().Ascend(func(m extent.Mapping) bool {
			computed.Inc(m.P, m.Len)
			return true
		})
	}
	var freed []extent.Run
	p.st.memRefs().Ascend(func(run extent.RefRun) bool {
		computed.Runs(run.P, run.Len, func(c extent.RefRun) bool {
			if c.Count == 0 {
				freed = append(freed, extent.Run{P: c.P, Len: c.Len})
			}
			return true
		})
		return true
	})
	if grow := (computed.Len() - p.st.memRefs().Len()) * refRunSize; grow > 0 {
		if err := p.admit(grow, 0); err != nil {
			p.mu.Unlock()
			p.ioGate.Unlock()
			p.syncMu.Unlock()
			return r, err
		}
	}
	p.st.refs = memCounts{computed}
	p.pending = append(p.pending, freed...)
	p.mu.Unlock()
	p.ioGate.Unlock()
	p.syncMu.Unlock()
	// The repaired counts reach the disk with a checkpoint.
	return r, p.Checkpoint()
}

// checkTreeRefs is checkRefs for format 3, whose counts are per leaf (N2),
// not per device: a mapped block must have a count, and a counted block
// that no device maps is a leak. That each count equals the leaves that
// map it is for the tree walk of step 3 (the btree package's tests check
// it on their own trees).
func (p *Pool) checkTreeRefs(r *CheckReport, computed *extent.RefCounts) {
	t := p.st.trees
	t.mu.Lock()
	defer t.mu.Unlock()
	var runs []extent.RefRun
	if err := t.ds.Ascend(func(run extent.RefRun) bool {
		runs = append(runs, run)
		return true
	}); err != nil {
		r.errorf("data space map: %v", err)
		return
	}
	stored := extent.NewRefCounts()
	for _, run := range runs {
		stored.Set(run.P, run.Len, run.Count)
		computed.Runs(run.P, run.Len, func(c extent.RefRun) bool {
			if c.Count == 0 {
				r.Leaks = append(r.Leaks, fmt.Sprintf("blocks %d+%d: %d references, none mapped", c.P, c.Len, run.Count))
				r.LeakedBlocks += c.Len
			}
			return true
		})
	}
	computed.Ascend(func(c extent.RefRun) bool {
		stored.Runs(c.P, c.Len, func(s extent.RefRun) bool {
			if s.Count == 0 {
				r.errorf("blocks %d+%d: no references, %d mappings point at them", s.P, s.Len, c.Count)
			}
			return true
		})
		return true
	})
}
