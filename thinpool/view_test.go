package thinpool

import (
	"errors"
	"slices"
	"testing"

	"github.com/thinpool/thinpool/extent"
)

// TestView checks that a View holds every device with its mappings as they
// were when it was taken, whatever happens to the pool afterwards.
func TestView(t *testing.T) {
	const blk = DefaultBlockSize
	p, _ := mustCreatePool(t, 64*blk)
	a := mustThin(t, p, "a", 8*blk)
	mustWrite(t, a, pattern(1, 2*blk), 0)
	if _, err := p.Snapshot("a", "b", true); err != nil {
		t.Fatal(err)
	}
	v, err := p.View()
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, a, pattern(2, blk), 4*blk) // after the view
	if len(v.Devices) != 2 || v.Devices[0].Name != "a" || v.Devices[1].Name != "b" || !v.Devices[1].ReadOnly {
		t.Fatalf("view devices %+v", v.Devices)
	}
	want, err := p.Mappings("b")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(v.Devices[0].Mappings, want) || !slices.Equal(v.Devices[1].Mappings, want) {
		t.Fatalf("view mappings %v and %v, want %v for both", v.Devices[0].Mappings, v.Devices[1].Mappings, want)
	}
	if want[0] != (extent.Mapping{V: 0, P: want[0].P, Len: 2}) || v.Usage.Devices != 2 || v.Usage.UsedBlocks != 2 {
		t.Fatalf("view %+v", v.Usage)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.View(); !errors.Is(err, ErrClosed) {
		t.Fatalf("View of a closed pool: %v", err)
	}
}

// TestMappedBytes: a device reports the bytes its mapped blocks cover, at
// most its size, so du on its FUSE file shows what it uses.
func TestMappedBytes(t *testing.T) {
	const blk = DefaultBlockSize
	p, _ := mustCreatePool(t, 64*blk)
	d := mustThin(t, p, "d", 8*blk+512) // the last block is partly past the end
	if got := d.MappedBytes(); got != 0 {
		t.Fatalf("empty device maps %d bytes", got)
	}
	mustWrite(t, d, pattern(1, 100), 3*blk)
	if got := d.MappedBytes(); got != blk {
		t.Fatalf("one block written: %d bytes mapped, want %d", got, blk)
	}
	mustWrite(t, d, pattern(2, 512), 8*blk)
	if got := d.MappedBytes(); got != blk+512 {
		t.Fatalf("with the partial last block: %d bytes mapped, want %d", got, blk+512)
	}
}
