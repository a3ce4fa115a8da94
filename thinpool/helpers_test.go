package thinpool

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"
)

// mustCreatePool creates a pool of dataSize bytes in a temp dir. Cleanup
// checks it (if still open) and closes it.
func mustCreatePool(t testing.TB, dataSize int64) (*Pool, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pool.img")
	p, err := Create(path, Options{DataSize: dataSize})
	if err != nil {
		t.Fatalf("create pool: %v", err)
	}
	t.Cleanup(func() {
		p.mu.RLock()
		closed := p.closed
		p.mu.RUnlock()
		if closed {
			return
		}
		mustCheck(t, p)
		if err := p.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return p, path
}

// mustCheck fails the test unless Check finds nothing wrong.
func mustCheck(t testing.TB, p *Pool) {
	t.Helper()
	r, err := p.Check()
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	if !r.OK() {
		t.Fatalf("check: errors %q leaks %q", r.Errors, r.Leaks)
	}
}

// mustReopen closes p and opens its file again.
func mustReopen(t testing.TB, p *Pool, path string) *Pool {
	t.Helper()
	if err := p.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	q, err := Open(path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	mustCheck(t, q)
	return q
}

func mustThin(t testing.TB, p *Pool, name string, size int64) *Thin {
	t.Helper()
	d, err := p.CreateThin(name, size, nil)
	if err != nil {
		t.Fatalf("create %q: %v", name, err)
	}
	return d
}

func mustWrite(t testing.TB, d *Thin, b []byte, off int64) {
	t.Helper()
	if n, err := d.WriteAt(b, off); err != nil || n != len(b) {
		t.Fatalf("write %d at %d: n=%d err=%v", len(b), off, n, err)
	}
}

func mustRead(t testing.TB, d *Thin, off int64, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := d.ReadAt(b, off); err != nil {
		t.Fatalf("read %d at %d: %v", n, off, err)
	}
	return b
}

func mustEqual(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("%s: differs at byte %d (len %d vs %d)", what, i, len(got), len(want))
	}
}

func pattern(seed byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7+i/251)
	}
	return b
}

// forEachFormat runs fn as a subtest for each on-disk format the engine
// writes: 2 (the default) and 3 (B+trees, opt-in).
func forEachFormat(t *testing.T, fn func(t *testing.T, format int)) {
	for _, format := range []int{formatVersion, formatV3} {
		t.Run(fmt.Sprintf("format=%d", format), func(t *testing.T) { fn(t, format) })
	}
}
