package btree

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestDevicesModel runs random Put, Delete and Get on the device tree
// against a map, with records from empty to several blobs long, across
// commits and reopens, and checks N1 (blobs included), N4 and B1.
func TestDevicesModel(t *testing.T) {
	s, st := mustCreateStore(t, 4000)
	d, err := NewDevices(s)
	if err != nil {
		t.Fatal(err)
	}
	model := map[uint64]DeviceEntry{}
	rng := rand.New(rand.NewPCG(3, 4))
	record := func() []byte {
		switch x := rng.IntN(10); {
		case x == 0:
			return nil
		case x < 8:
			return []byte(fmt.Sprintf("name-%d", rng.IntN(1000)))
		default:
			b := make([]byte, rng.IntN(3*blobCap))
			for i := range b {
				b[i] = byte(rng.IntN(256))
			}
			return b
		}
	}
	check := func() {
		t.Helper()
		checkStore(t, s, []rootOf{{TreeDevice, d.Root()}})
		var ids []uint64
		if err := d.Ascend(func(id uint64, e DeviceEntry) bool {
			ids = append(ids, id)
			if want := model[id]; !equalEntry(e, want) {
				t.Fatalf("device %d: %+v, want %+v", id, e, want)
			}
			return true
		}); err != nil {
			t.Fatal(err)
		}
		if want := slices.Sorted(maps.Keys(model)); !slices.Equal(ids, want) {
			t.Fatalf("devices %v, want %v", ids, want)
		}
	}
	for i := range ops(6000) {
		id := rng.Uint64N(400)
		switch x := rng.IntN(100); {
		case x < 45:
			e := DeviceEntry{
				Root: Ref{ID: NodeID(1 + rng.IntN(1000)), Gen: rng.Uint64N(9)}, Size: rng.Uint64(), Blocks: rng.Uint64(),
				Created: rng.Int64(), Time: rng.Uint32(), Origin: rng.Uint64N(400), Flags: rng.Uint32(), Record: record(),
			}
			if old, ok := model[id]; ok && rng.IntN(2) == 0 {
				e.Record = old.Record // a change that keeps the blobs
			}
			if err := d.Put(id, e); err != nil {
				t.Fatal(err)
			}
			model[id] = e
		case x < 70:
			ok, err := d.Delete(id)
			if _, want := model[id]; err != nil || ok != want {
				t.Fatalf("Delete(%d) = %v %v, want %v", id, ok, err, want)
			}
			delete(model, id)
		default:
			e, ok, err := d.Get(id)
			want, wok := model[id]
			if err != nil || ok != wok || !equalEntry(e, want) {
				t.Fatalf("Get(%d) = %+v %v %v, want %+v %v", id, e, ok, err, want, wok)
			}
		}
		if i%500 == 0 {
			check()
		}
		if i%300 == 299 {
			commit(t, s, st)
			if i%600 == 599 {
				root, gen := d.Root(), s.Gen()-1
				if s, err = Open(st, testBase, s.Nodes(), gen, testSeed); err != nil {
					t.Fatal(err)
				}
				d = OpenDevices(s, root)
			}
			check()
		}
	}
	check()
}

func equalEntry(a, b DeviceEntry) bool {
	return a.Root == b.Root && a.Size == b.Size && a.Blocks == b.Blocks && a.Created == b.Created &&
		a.Time == b.Time && a.Origin == b.Origin && a.Flags == b.Flags && bytes.Equal(a.Record, b.Record)
}

// TestDevicesShared shares the device tree's root (as a point-in-time view
// would), changes one copy, and checks that the other still reads as before
// and that the blobs' counts follow (N1).
func TestDevicesShared(t *testing.T) {
	s, st := mustCreateStore(t, 200)
	d, err := NewDevices(s)
	if err != nil {
		t.Fatal(err)
	}
	long := bytes.Repeat([]byte("x"), 2*blobCap+5)
	for id := range uint64(60) {
		if err := d.Put(id, DeviceEntry{Root: Ref{ID: 5, Gen: 1}, Record: long[:id*100]}); err != nil {
			t.Fatal(err)
		}
	}
	commit(t, s, st)
	if err := s.IncRoot(d.Root()); err != nil {
		t.Fatal(err)
	}
	view := OpenDevices(s, d.Root())
	for id := range uint64(60) {
		if id%2 == 0 {
			if _, err := d.Delete(id); err != nil {
				t.Fatal(err)
			}
		} else if err := d.Put(id, DeviceEntry{Root: Ref{ID: 6, Gen: 1}, Record: []byte("renamed")}); err != nil {
			t.Fatal(err)
		}
	}
	checkStore(t, s, []rootOf{{TreeDevice, d.Root()}, {TreeDevice, view.Root()}})
	n := 0
	if err := view.Ascend(func(id uint64, e DeviceEntry) bool {
		if e.Root != (Ref{ID: 5, Gen: 1}) || !bytes.Equal(e.Record, long[:id*100]) {
			t.Fatalf("view: device %d changed: %+v", id, e.Root)
		}
		n++
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if n != 60 {
		t.Fatalf("view holds %d devices, want 60", n)
	}
	if err := view.Release(); err != nil {
		t.Fatal(err)
	}
	checkStore(t, s, []rootOf{{TreeDevice, d.Root()}})
}
