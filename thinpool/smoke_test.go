package thinpool

import (
	"bytes"
	"path/filepath"
	"testing"
)

func TestSmoke(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pool.img")
	p, err := Create(path, Options{DataSize: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	d, err := p.CreateThin("a", 100<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("x"), 1<<20)
	if _, err := d.WriteAt(data, 4096); err != nil {
		t.Fatal(err)
	}
	s, err := p.Snapshot("a", "s", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteAt([]byte("hello"), 8192); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 16)
	d.ReadAt(got, 8190)
	t.Logf("%q", got)
	s.ReadAt(got, 8190)
	t.Logf("%q", got)
	r, err := p.Check()
	if err != nil || !r.OK() {
		t.Fatalf("%v %+v", err, r)
	}
	t.Logf("%+v", p.Usage())
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s, _ = p.Device("s")
	s.ReadAt(got, 8190)
	t.Logf("%q", got)
	r, err = p.Check()
	if err != nil || !r.OK() {
		t.Fatalf("%v %+v", err, r)
	}
	u, _ := s.Usage()
	t.Logf("%+v %+v", p.Usage(), u)
	p.Close()
}
