package thinpool

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
)

// TestSnapshotTrees builds deep and wide snapshot trees through the Pool
// API (snapshots of snapshots, origins deleted while their children live,
// writes everywhere) in both formats, and checks every device's contents
// against a model after each reopen, and Check after each step batch. In
// format 3, Check compares mapped and counted blocks; that each count
// equals the leaves that map it (N2) and the node counts (N1) are checked
// by the btree package's own walkers (TestModel there).
func TestSnapshotTrees(t *testing.T) {
	forEachFormat(t, func(t *testing.T, format int) {
		for _, seed := range []uint64{1, 2} {
			t.Run(fmt.Sprint(seed), func(t *testing.T) { snapshotTrees(t, format, seed) })
		}
	})
}

func snapshotTrees(t *testing.T, format int, seed uint64) {
	const (
		devBlocks = 24
		bs        = DefaultBlockSize
	)
	steps := 600
	if testing.Short() || raceEnabled {
		steps = 200
	}
	rng := rand.New(rand.NewPCG(seed, 99))
	path := filepath.Join(t.TempDir(), "pool.img")
	p, err := Create(path, Options{DataSize: 4096 * bs, FormatVersion: format})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { p.Close() }()
	// model[name][i] is the byte block i of device name is filled with (0:
	// never written, reads as zeros).
	model := map[string][]byte{}
	next := 0
	newName := func() string { next++; return fmt.Sprintf("d%d", next) }
	names := func() []string {
		out := make([]string, 0, len(model))
		for n := range model {
			out = append(out, n)
		}
		slices.Sort(out)
		return out
	}
	verify := func(what string) {
		t.Helper()
		for _, n := range names() {
			d, err := p.Device(n)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			b := make([]byte, devBlocks*bs)
			if _, err := d.ReadAt(b, 0); err != nil {
				t.Fatalf("%s: read %s: %v", what, n, err)
			}
			for i, v := range model[n] {
				if !bytes.Equal(b[i*bs:(i+1)*bs], bytes.Repeat([]byte{v}, bs)) {
					t.Fatalf("%s: device %s block %d is not %d", what, n, i, v)
				}
			}
		}
	}
	write := func(n string) {
		d, err := p.Device(n)
		if err != nil {
			t.Fatal(err)
		}
		i, v := rng.IntN(devBlocks), byte(1+rng.IntN(255))
		mustWrite(t, d, bytes.Repeat([]byte{v}, bs), int64(i)*bs)
		model[n][i] = v
	}
	origin := newName()
	mustThin(t, p, origin, devBlocks*bs)
	model[origin] = make([]byte, devBlocks)
	for range devBlocks {
		write(origin)
	}
	deepest := origin
	for i := range steps {
		all := names()
		n := all[rng.IntN(len(all))]
		switch x := rng.IntN(100); {
		case x < 15 && len(model) < 60: // deep: a snapshot of the newest
			sn := newName()
			if _, err := p.Snapshot(deepest, sn, false); err != nil {
				t.Fatal(err)
			}
			model[sn], deepest = slices.Clone(model[deepest]), sn
		case x < 30 && len(model) < 60: // wide
			sn := newName()
			if _, err := p.Snapshot(n, sn, false); err != nil {
				t.Fatal(err)
			}
			model[sn] = slices.Clone(model[n])
		case x < 42 && len(model) > 2:
			if err := p.Delete(n); err != nil {
				t.Fatal(err)
			}
			delete(model, n)
			if n == deepest {
				deepest = names()[0]
			}
		default:
			write(n)
		}
		switch {
		case i%100 == 99:
			mustCheck(t, p)
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if p, err = Open(path); err != nil {
				t.Fatal(err)
			}
			mustCheck(t, p)
			verify(fmt.Sprintf("step %d, reopened", i))
		case i%25 == 24:
			if err := p.Checkpoint(); err != nil {
				t.Fatal(err)
			}
		case i%5 == 4:
			if err := p.Sync(); err != nil {
				t.Fatal(err)
			}
		}
	}
	mustCheck(t, p)
	verify("end")
	u := p.Usage()
	t.Logf("format %d: %d devices, %d used blocks, metadata %d bytes", format, u.Devices, u.UsedBlocks, u.MetadataUsed)
}
