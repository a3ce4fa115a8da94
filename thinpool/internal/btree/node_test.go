package btree

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// sampleNodes are valid nodes of every kind, for round trips and fuzz seeds.
func sampleNodes() []*node {
	mapping := &node{id: 7, gen: 3, kind: KindLeaf, tree: TreeMapping}
	ds := &node{id: 8, gen: 3, kind: KindLeaf, tree: TreeDataSpace}
	for i := range uint64(5) {
		var v [16]byte
		binary.LittleEndian.PutUint64(v[:], 1000+10*i)
		binary.LittleEndian.PutUint32(v[8:], uint32(i+1))
		binary.LittleEndian.PutUint32(v[12:], uint32(i))
		mapping.insertLeaf(int(i), 10*i, v[:])
		var d [8]byte
		binary.LittleEndian.PutUint32(d[:], uint32(i+1))
		binary.LittleEndian.PutUint32(d[4:], uint32(2*i+1))
		ds.insertLeaf(int(i), 10*i, d[:])
	}
	full := &node{id: 9, gen: 4, kind: KindLeaf, tree: TreeDataSpace}
	for i := range uint64(leafCap(TreeDataSpace)) {
		var d [8]byte
		binary.LittleEndian.PutUint32(d[:], 1)
		binary.LittleEndian.PutUint32(d[4:], 1)
		full.insertLeaf(int(i), 2*i, d[:])
	}
	internal := &node{id: 10, gen: 5, kind: KindInternal, tree: TreeMapping, level: 1}
	for i := range uint64(internalCap) {
		internal.insertKid(int(i), 100*i, Ref{ID: NodeID(20 + i), Gen: 1 + i%5})
	}
	page := &node{id: 1018, gen: 6, kind: KindSpaceMap, counts: make([]uint32, pageCounts)}
	for i := range page.counts {
		page.counts[i] = uint32(i % 7)
	}
	empty := &node{id: 11, gen: 1, kind: KindLeaf, tree: TreeMapping}
	dev := &node{id: 12, gen: 4, kind: KindLeaf, tree: TreeDevice}
	for i := range uint64(3) {
		e := DeviceEntry{Root: Ref{ID: NodeID(30 + i), Gen: 2}, Size: 1 << 30, Blocks: i, Created: 5, Time: 1, Origin: i, Flags: 1}
		b := blobRef{}
		if i > 0 {
			b = blobRef{ref: Ref{ID: NodeID(40 + i), Gen: 3}, len: uint32(100 * i)}
		}
		dev.insertLeaf(int(i), i+1, encodeDevice(&e, b))
	}
	blob := &node{id: 13, gen: 4, kind: KindBlob, tree: TreeDevice, vals: []byte("name and labels"), next: Ref{ID: 14, Gen: 4}}
	return []*node{mapping, ds, full, internal, page, empty, dev, blob}
}

func TestNodeRoundTrip(t *testing.T) {
	for _, n := range sampleNodes() {
		t.Run(n.kind.String()+"/"+n.tree.String(), func(t *testing.T) {
			b := n.encode(testSeed)
			got, err := decode(b, testSeed, n.ref())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.encode(testSeed), b) {
				t.Fatal("encode(decode(b)) != b")
			}
			if got.nr() != n.nr() || got.level != n.level || got.tree != n.tree || len(got.counts) != len(n.counts) {
				t.Fatalf("decoded %+v, encoded %+v", got, n)
			}
			if _, err := decode(b, testSeed+1, n.ref()); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("another pool's seed: %v", err)
			}
		})
	}
}

// reseal recomputes the checksum of b after a change.
func reseal(b []byte) []byte {
	binary.LittleEndian.PutUint32(b[4:], checksum(b, testSeed))
	return b
}

func TestNodeCorrupt(t *testing.T) {
	le := binary.LittleEndian
	nodes := sampleNodes()
	mapping, ds, internal, page, dev, blob := nodes[0], nodes[1], nodes[3], nodes[4], nodes[6], nodes[7]
	for _, tc := range []struct {
		name   string
		n      *node
		want   Ref // zero: n.ref()
		mutate func(b []byte) []byte
	}{
		{"short", mapping, Ref{}, func(b []byte) []byte { return b[:100] }},
		{"magic", mapping, Ref{}, func(b []byte) []byte { b[0] = 'X'; return reseal(b) }},
		{"checksum", mapping, Ref{}, func(b []byte) []byte { b[100] ^= 1; return b }},
		{"misdirected", mapping, Ref{ID: 8, Gen: 3}, nil},
		{"stale generation", mapping, Ref{ID: 7, Gen: 4}, nil},
		{"kind 0", mapping, Ref{}, func(b []byte) []byte { le.PutUint16(b[24:], 0); return reseal(b) }},
		{"kind blob", mapping, Ref{}, func(b []byte) []byte { le.PutUint16(b[24:], uint16(KindBlob)); return reseal(b) }},
		{"tree 0", mapping, Ref{}, func(b []byte) []byte { le.PutUint16(b[30:], 0); return reseal(b) }},
		{"tree 9", mapping, Ref{}, func(b []byte) []byte { le.PutUint16(b[30:], 9); return reseal(b) }},
		{"leaf at level 1", mapping, Ref{}, func(b []byte) []byte { le.PutUint16(b[26:], 1); return reseal(b) }},
		{"internal at level 0", internal, Ref{}, func(b []byte) []byte { le.PutUint16(b[26:], 0); return reseal(b) }},
		{"internal empty", internal, Ref{}, func(b []byte) []byte { le.PutUint16(b[28:], 0); return reseal(b) }},
		{"too many entries", ds, Ref{}, func(b []byte) []byte { le.PutUint16(b[28:], 255); return reseal(b) }},
		{"keys out of order", ds, Ref{}, func(b []byte) []byte { le.PutUint64(b[headerSize+16:], 0); return reseal(b) }},
		{"reserved not zero", ds, Ref{}, func(b []byte) []byte { b[NodeSize-1] = 1; return reseal(b) }},
		{"run length 0", ds, Ref{}, func(b []byte) []byte { le.PutUint32(b[headerSize+8:], 0); return reseal(b) }},
		{"count 0", ds, Ref{}, func(b []byte) []byte { le.PutUint32(b[headerSize+12:], 0); return reseal(b) }},
		{"runs overlap", ds, Ref{}, func(b []byte) []byte { le.PutUint32(b[headerSize+8:], 11); return reseal(b) }},
		{"extent length 0", mapping, Ref{}, func(b []byte) []byte { le.PutUint32(b[headerSize+16:], 0); return reseal(b) }},
		{"extent pool overflow", mapping, Ref{}, func(b []byte) []byte { le.PutUint64(b[headerSize+8:], ^uint64(0)); return reseal(b) }},
		{"child newer than parent", internal, Ref{}, func(b []byte) []byte { le.PutUint64(b[headerSize+16:], 99); return reseal(b) }},
		{"child is itself", internal, Ref{}, func(b []byte) []byte { le.PutUint64(b[headerSize+8:], 10); return reseal(b) }},
		{"page count number", page, Ref{}, func(b []byte) []byte { le.PutUint16(b[28:], 5); return reseal(b) }},
		{"page level", page, Ref{}, func(b []byte) []byte { le.PutUint16(b[26:], 1); return reseal(b) }},
		{"device without root", dev, Ref{}, func(b []byte) []byte { le.PutUint64(b[headerSize+8:], 0); return reseal(b) }},
		{"device reserved", dev, Ref{}, func(b []byte) []byte { b[headerSize+8+60] = 1; return reseal(b) }},
		{"device record too long", dev, Ref{}, func(b []byte) []byte { le.PutUint32(b[headerSize+92+88:], MaxRecord+1); return reseal(b) }},
		{"device record without blob", dev, Ref{}, func(b []byte) []byte { le.PutUint32(b[headerSize+88:], 5); return reseal(b) }},
		{"blob empty", blob, Ref{}, func(b []byte) []byte { le.PutUint16(b[28:], 0); return reseal(b) }},
		{"blob too long", blob, Ref{}, func(b []byte) []byte { le.PutUint16(b[28:], blobCap+1); return reseal(b) }},
		{"blob of the mapping tree", blob, Ref{}, func(b []byte) []byte { le.PutUint16(b[30:], uint16(TreeMapping)); return reseal(b) }},
		{"blob continues at itself", blob, Ref{}, func(b []byte) []byte { le.PutUint64(b[headerSize:], 13); return reseal(b) }},
		{"blob continues in a newer generation", blob, Ref{}, func(b []byte) []byte { le.PutUint64(b[headerSize+8:], 5); return reseal(b) }},
		{"blob reserved", blob, Ref{}, func(b []byte) []byte { b[NodeSize-1] = 1; return reseal(b) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.n.encode(testSeed)
			if tc.mutate != nil {
				b = tc.mutate(b)
			}
			want := tc.want
			if want == (Ref{}) {
				want = tc.n.ref()
			}
			_, err := decode(b, testSeed, want)
			var ce *CorruptionError
			if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) || ce.Node != want.ID {
				t.Fatalf("decode: %v, want a CorruptionError of node %d", err, want.ID)
			}
		})
	}
}

// FuzzNode: decode never panics, and what it accepts encodes back to the
// same bytes.
func FuzzNode(f *testing.F) {
	for _, n := range sampleNodes() {
		f.Add(n.encode(testSeed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < headerSize {
			return
		}
		if len(b) == NodeSize {
			b = reseal(bytes.Clone(b)) // reach past the checksum
		}
		want := Ref{ID: NodeID(binary.LittleEndian.Uint64(b[8:])), Gen: binary.LittleEndian.Uint64(b[16:])}
		n, err := decode(b, testSeed, want)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if !bytes.Equal(n.encode(testSeed), b) {
			t.Fatal("encode(decode(b)) != b")
		}
	})
}
