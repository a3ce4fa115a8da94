package thinpool

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestDirectWrites checks the direct-I/O path of large writes against the
// buffered one: fresh and in-place, aligned and not, overlapping cached
// data, read back before and after reopening; and that the pool falls back
// to buffered writes where the file system has no O_DIRECT (tmpfs).
func TestDirectWrites(t *testing.T) {
	dirs := map[string]string{"disk": t.TempDir()}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "thinpool-test")
		if err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			dirs["tmpfs"] = d
		}
	}
	for name, dir := range dirs {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, "pool.img")
			p, err := Create(path, Options{DataSize: 64 << 20})
			if err != nil {
				t.Fatal(err)
			}
			of := p.f.(*osFile)
			t.Logf("direct I/O open: %v", of.direct != nil)
			d, err := p.CreateThin("d", 16<<20, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]byte, 16<<20)
			r := rand.New(rand.NewPCG(1, 2))
			write := func(off int64, n int) {
				t.Helper()
				b := make([]byte, n)
				for i := range b {
					b[i] = byte(r.Uint32())
				}
				if _, err := d.WriteAt(b, off); err != nil {
					t.Fatalf("write %d at %d: %v", n, off, err)
				}
				copy(want[off:], b)
			}
			check := func(what string) {
				t.Helper()
				got := make([]byte, len(want))
				if _, err := d.ReadAt(got, 0); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					i := 0
					for got[i] == want[i] {
						i++
					}
					t.Fatalf("%s: first difference at byte %d", what, i)
				}
			}
			write(0, 4<<20)   // fresh, aligned: direct
			write(4096, 8192) // small in-place, buffered (cached)
			check("after small write")
			write(0, 1<<20) // in-place over the cached pages: direct
			check("after a direct write over cached data")
			write(5<<20+512, 300<<10)   // fresh, unaligned: buffered
			write(8<<20, 3<<20+64<<10)  // fresh, aligned, several bounce buffers
			write(12<<20+4096, 512<<10) // fresh blocks, partial first and last block
			check("before sync")
			if err := p.Sync(); err != nil {
				t.Fatal(err)
			}
			if name == "disk" && of.direct != nil && of.noDirect.Load() {
				t.Error("direct writes were turned off on a disk file system")
			}
			mustCheck(t, p)
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if p, err = Open(path); err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if d, err = p.Device("d"); err != nil {
				t.Fatal(err)
			}
			check("after reopen")
		})
	}
}
