package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// t0 is the default modification time of test entries.
var t0 = time.Unix(1_600_000_000, 0)

// canary is the file name hostile tests try to create outside the root.
const canary = "thinpool-layertest-escape"

var isRoot = os.Geteuid() == 0

// ent is one tar entry: a header and, for regular files, its body.
type ent struct {
	hdr  tar.Header
	body string
}

func reg(name, body string, mode int64) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode}, body: body}
}

func dir(name string, mode int64) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode}}
}

func sym(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

func hard(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644}}
}

func fifo(name string, mode int64) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: name, Mode: mode}}
}

// wh is a whiteout entry as Docker writes them: an empty regular file.
func wh(name string) ent { return reg(name, "", 0o644) }

// with returns e changed by f.
func (e ent) with(f func(h *tar.Header)) ent {
	f(&e.hdr)
	return e
}

func xattr(k, v string) func(h *tar.Header) {
	return func(h *tar.Header) {
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords["SCHILY.xattr."+k] = v
	}
}

func owner(uid, gid int) func(h *tar.Header) {
	return func(h *tar.Header) { h.Uid, h.Gid = uid, gid }
}

func mkTar(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := e.hdr
		if h.ModTime.IsZero() {
			h.ModTime = t0
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if len(h.PAXRecords) > 0 || !h.AccessTime.IsZero() || h.ModTime.Nanosecond() != 0 {
			h.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %q: %v", h.Name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// hostState is what hostile tests must leave unchanged outside the root.
type hostState struct {
	passwd unix.Stat_t
	data   []byte
}

func readHost(t testing.TB) hostState {
	t.Helper()
	var s hostState
	if err := unix.Lstat("/etc/passwd", &s.passwd); err != nil {
		t.Fatal(err)
	}
	var err error
	if s.data, err = os.ReadFile("/etc/passwd"); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s hostState) check(t testing.TB) {
	t.Helper()
	now := readHost(t)
	if now.passwd.Ino != s.passwd.Ino || now.passwd.Nlink != s.passwd.Nlink ||
		now.passwd.Mtim != s.passwd.Mtim || !bytes.Equal(now.data, s.data) {
		t.Errorf("/etc/passwd changed: %+v -> %+v", s.passwd, now.passwd)
	}
	for _, p := range []string{"/" + canary, "/etc/" + canary, "/tmp/" + canary, "/etc/passwd/" + canary} {
		if _, err := os.Lstat(p); err == nil {
			os.Remove(p)
			t.Errorf("escape: %s was created", p)
		}
	}
}

// newRoot returns an empty root directory at <base>/a/b/root, so that a
// lexical escape of one or two levels lands inside the test's own temporary
// directory, next to a sentinel file. At cleanup it checks that nothing
// outside the root changed: no new files under base, the sentinel intact,
// and /etc/passwd and the canary paths untouched.
func newRoot(t testing.TB) string {
	t.Helper()
	host := readHost(t)
	base := t.TempDir()
	root := filepath.Join(base, "a", "b", "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "a", "sentinel"), []byte("sentinel"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		checkOutside(t, base, root)
		host.check(t)
		makeRemovable(root)
	})
	return root
}

func checkOutside(t testing.TB, base, root string) {
	t.Helper()
	want := map[string]bool{".": true, "a": true, "a/b": true, "a/sentinel": true, "a/b/root": true}
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(base, p)
		if !want[rel] {
			t.Errorf("escape: %s was created outside the root", p)
		}
		delete(want, rel)
		if p == root {
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	for p := range want {
		t.Errorf("escape: %s was removed", filepath.Join(base, p))
	}
	if b, err := os.ReadFile(filepath.Join(base, "a", "sentinel")); err != nil || string(b) != "sentinel" {
		t.Errorf("escape: sentinel changed: %q, %v", b, err)
	}
}

// makeRemovable lets t.TempDir's cleanup remove read-only directories a
// layer made when not running as root.
func makeRemovable(root string) {
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
}

// testOpts is o for the test's user: without root Apply cannot keep owners.
func testOpts(o Options) Options {
	o.NoSameOwner = o.NoSameOwner || !isRoot
	return o
}

func apply(t testing.TB, root string, o Options, ents ...ent) (Stats, error) {
	t.Helper()
	return Apply(context.Background(), root, bytes.NewReader(mkTar(t, ents...)), testOpts(o))
}

func mustApply(t testing.TB, root string, ents ...ent) Stats {
	t.Helper()
	st, err := apply(t, root, Options{}, ents...)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return st
}

func lstat(t testing.TB, p string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t)
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// requireTree checks that each path in present exists under root and each
// in absent does not.
func requireTree(t testing.TB, root string, present, absent []string) {
	t.Helper()
	for _, p := range present {
		if !exists(filepath.Join(root, p)) {
			t.Errorf("%s is missing", p)
		}
	}
	for _, p := range absent {
		if exists(filepath.Join(root, p)) {
			t.Errorf("%s exists", p)
		}
	}
}

// listTree returns every path under root, sorted, as "path" or "path/" for
// directories and "path -> target" for symlinks.
func listTree(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case d.IsDir():
			rel += "/"
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			rel += " -> " + target
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// noWhiteoutFiles checks W2: no name under root starts with ".wh.".
func noWhiteoutFiles(t testing.TB, root string) {
	t.Helper()
	for _, p := range listTree(t, root) {
		for c := range strings.SplitSeq(p, "/") {
			if strings.HasPrefix(c, whiteoutPrefix) {
				t.Errorf("whiteout file created: %s", p)
			}
		}
	}
}

// rawHeader is a ustar header block, for formats archive/tar cannot write.
func rawHeader(name string, typ byte, size int64) []byte {
	b := make([]byte, 512)
	copy(b[0:], name)
	copy(b[100:], "0000644\x00")
	copy(b[108:], "0000000\x00")
	copy(b[116:], "0000000\x00")
	copy(b[124:], fmt.Sprintf("%011o\x00", size))
	copy(b[136:], fmt.Sprintf("%011o\x00", t0.Unix()))
	b[156] = typ
	copy(b[257:], "ustar\x0000")
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

func paxRecord(k, v string) string {
	s := " " + k + "=" + v + "\n"
	n := len(s) + 1
	for len(strconv.Itoa(n))+len(s) != n {
		n = len(strconv.Itoa(n)) + len(s)
	}
	return strconv.Itoa(n) + s
}

func padBlock(b []byte) []byte {
	if r := len(b) % 512; r != 0 {
		b = append(b, make([]byte, 512-r)...)
	}
	return b
}

// sparseTar is a tar of one GNU PAX 0.1 sparse file of realSize bytes:
// "hello" at offset 0, "world" at the end, a hole between.
func sparseTar(name string, realSize int64) []byte {
	recs := paxRecord("GNU.sparse.size", strconv.FormatInt(realSize, 10)) +
		paxRecord("GNU.sparse.numblocks", "2") +
		paxRecord("GNU.sparse.map", fmt.Sprintf("0,5,%d,5", realSize-5))
	var b []byte
	b = append(b, rawHeader("PaxHeaders/"+name, tar.TypeXHeader, int64(len(recs)))...)
	b = padBlock(append(b, recs...))
	b = append(b, rawHeader(name, tar.TypeReg, 10)...)
	b = padBlock(append(b, "helloworld"...))
	return append(b, make([]byte, 1024)...)
}
