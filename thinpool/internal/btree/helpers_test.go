package btree

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// memStorage is an in-memory Storage that loses unsynced writes on crash:
// each 4 KiB write since the last sync survives or not at random (a write
// is atomic, as the format assumes of a sector-aligned node).
type memStorage struct {
	cur, durable []byte
	pending      []memWrite
	// failAfter, when ≥ 0, is how many more writes succeed before every
	// write fails (a crash in the middle of a flush).
	failAfter int
	writes    int
}

type memWrite struct {
	off  int64
	data []byte
}

var errInjected = errors.New("injected write failure")

func newMemStorage(size int64) *memStorage {
	return &memStorage{cur: make([]byte, size), durable: make([]byte, size), failAfter: -1}
}

func (m *memStorage) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > int64(len(m.cur)) {
		return 0, fmt.Errorf("read past end: %d+%d", off, len(p))
	}
	return copy(p, m.cur[off:]), nil
}

func (m *memStorage) WriteAt(p []byte, off int64) (int, error) {
	if m.failAfter == 0 {
		return 0, errInjected
	}
	if m.failAfter > 0 {
		m.failAfter--
	}
	m.grow(off + int64(len(p)))
	m.writes++
	copy(m.cur[off:], p)
	m.pending = append(m.pending, memWrite{off: off, data: slices.Clone(p)})
	return len(p), nil
}

func (m *memStorage) grow(size int64) {
	if size > int64(len(m.cur)) {
		m.cur = append(m.cur, make([]byte, size-int64(len(m.cur)))...)
		m.durable = append(m.durable, make([]byte, size-int64(len(m.durable)))...)
	}
}

func (m *memStorage) Sync() {
	for _, w := range m.pending {
		copy(m.durable[w.off:], w.data)
	}
	m.pending = m.pending[:0]
}

const testBase = 8192 // nodes start past a pretend superblock area

const testSeed = 0x5eed5eed

func mustCreateStore(t testing.TB, nodes uint64) (*Store, *memStorage) {
	t.Helper()
	st := newMemStorage(testBase + int64(nodes)*NodeSize)
	s, err := Create(st, testBase, nodes, testSeed)
	if err != nil {
		t.Fatal(err)
	}
	return s, st
}

// commit runs the commit protocol on s: Flush, sync, (superblock), Committed.
func commit(t testing.TB, s *Store, st *memStorage) {
	t.Helper()
	g := s.Gen()
	if err := s.Flush(g); err != nil {
		t.Fatal(err)
	}
	st.Sync()
	s.Committed(g)
}
