package thinpool

import (
	"bytes"
	"path/filepath"
	"testing"
)

// TestFormat3Basic creates a format 3 pool, writes, snapshots, deletes the
// origin, checkpoints, reopens with and without a journal to replay, and
// checks the data and Check at each step.
func TestFormat3Basic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pool.img")
	p, err := Create(path, Options{DataSize: 64 << 20, FormatVersion: 3})
	if err != nil {
		t.Fatal(err)
	}
	a := mustThin(t, p, "a", 8<<20)
	blk := bytes.Repeat([]byte("A"), 64<<10)
	for i := range int64(20) {
		mustWrite(t, a, blk, 2*i*(64<<10))
	}
	mustCheck(t, p)
	if err := p.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	s, err := p.Snapshot("a", "s", false)
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, a, bytes.Repeat([]byte("B"), 4096), 0) // CoW: s keeps A
	if got := mustRead(t, s, 0, 4096); !bytes.Equal(got, blk[:4096]) {
		t.Fatal("snapshot sees the origin's write")
	}
	mustCheck(t, p)
	if err := p.Sync(); err != nil { // journal only
		t.Fatal(err)
	}
	p2 := reopenFile(t, p, path)
	s2, err := p2.Device("s")
	if err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, s2, 0, 4096); !bytes.Equal(got, blk[:4096]) {
		t.Fatal("snapshot after reopen")
	}
	a2, err := p2.Device("a")
	if err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, a2, 0, 4096); !bytes.Equal(got, bytes.Repeat([]byte("B"), 4096)) {
		t.Fatal("origin after reopen")
	}
	if err := p2.Delete("a"); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s2, bytes.Repeat([]byte("C"), 4096), 2*(64<<10))
	mustCheck(t, p2)
	p3 := reopenFile(t, p2, path)
	s3, err := p3.Device("s")
	if err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, s3, 2*(64<<10), 4096); !bytes.Equal(got, bytes.Repeat([]byte("C"), 4096)) {
		t.Fatal("snapshot write after reopen")
	}
	if got := mustRead(t, s3, 4*(64<<10), 4096); !bytes.Equal(got, blk[:4096]) {
		t.Fatal("snapshot data after reopen")
	}
	if u := p3.Usage(); u.UsedBlocks != 20 {
		t.Fatalf("used blocks %d, want 20", u.UsedBlocks)
	}
	if err := p3.Close(); err != nil {
		t.Fatal(err)
	}
}

// reopenFile closes p (a checkpoint), opens path again and checks it.
func reopenFile(t *testing.T, p *Pool, path string) *Pool {
	t.Helper()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	q, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	mustCheck(t, q)
	return q
}
