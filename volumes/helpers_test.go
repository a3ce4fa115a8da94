package volumes

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/thinpool/thinpool/thinpool"
)

// testBaseSize is the base device of the tests' images: small, since the
// fake filesystem is a tar stream that must fit in it.
const testBaseSize = 16 << 20

// mustCreatePool creates a pool of dataSize bytes in t.TempDir(); cleanup
// checks it (no errors, no leaks) and closes it.
func mustCreatePool(t *testing.T, dataSize int64) *thinpool.Pool {
	t.Helper()
	p, err := thinpool.Create(filepath.Join(t.TempDir(), "pool.img"), thinpool.Options{DataSize: dataSize})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { checkAndClose(t, p) })
	return p
}

func checkAndClose(t *testing.T, p *thinpool.Pool) {
	t.Helper()
	r, err := p.Check()
	if err != nil || len(r.Errors) > 0 || len(r.Leaks) > 0 {
		t.Errorf("check: %v %+v", err, r)
	}
	if err := p.Close(); err != nil {
		t.Error(err)
	}
}

// newModel returns a manager over a fresh pool of dataSize bytes, served
// by a fake host.
func newModel(t *testing.T, dataSize int64) (*Manager, *fakeHost) {
	t.Helper()
	p := mustCreatePool(t, dataSize)
	h := newFakeHost(p)
	m := New(p, h, t.TempDir(), t.Logf)
	t.Cleanup(func() {
		if err := m.UnmountAll(); err != nil {
			t.Errorf("unmount all: %v", err)
		}
	})
	return m, h
}

// entry is one entry of a layer tar; body "" with dir set makes a
// directory, link a symlink.
type entry struct {
	name, body, link string
	dir              bool
}

func file(name, body string) entry { return entry{name: name, body: body} }
func dirEntry(name string) entry   { return entry{name: name, dir: true} }

// whiteout deletes name from the layers below (the OCI ".wh." marker).
func whiteout(name string) entry {
	return entry{name: filepath.Join(filepath.Dir(name), ".wh."+filepath.Base(name))}
}

// layerTar is an uncompressed layer tar of the entries.
func layerTar(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: tar.TypeReg, ModTime: time.Unix(1, 0)}
		switch {
		case e.dir:
			h.Name, h.Mode, h.Typeflag, h.Size = e.name+"/", 0o755, tar.TypeDir, 0
		case e.link != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e.link, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
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

// image builds an image of the layer tars.
func image(t *testing.T, layers ...[]byte) v1.Image {
	t.Helper()
	img := empty.Image
	for i, b := range layers {
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
		if err != nil {
			t.Fatal(err)
		}
		img, err = mutate.Append(img, mutate.Addendum{Layer: l, History: v1.History{CreatedBy: "layer " + string(rune('1'+i))}})
		if err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// dockerSave writes the images as a docker save tarball and returns its
// path.
func dockerSave(t *testing.T, images map[string]v1.Image) string {
	t.Helper()
	refs := map[name.Reference]v1.Image{}
	for ref, img := range images {
		tag, err := name.NewTag(ref)
		if err != nil {
			t.Fatal(err)
		}
		refs[tag] = img
	}
	p := filepath.Join(t.TempDir(), "images.tar")
	if err := tarball.MultiRefWriteToFile(p, refs); err != nil {
		t.Fatal(err)
	}
	return p
}

// The layers of the tests' images: app:1 is base+appLayer+configLayer,
// tool:1 is base+toolLayer; base is the same bytes in both.
func baseLayer(t *testing.T) []byte {
	return layerTar(t, dirEntry("etc"), file("etc/os-release", "ID=test\n"), dirEntry("data"), file("data/old.txt", "old\n"), dirEntry("bin"), file("bin/sh", "#!sh\n"))
}

func appLayer(t *testing.T) []byte {
	return layerTar(t, dirEntry("app"), file("app/main", "main v1\n"), dirEntry("data"), whiteout("data/old.txt"))
}

func configLayer(t *testing.T) []byte {
	return layerTar(t, dirEntry("app"), file("app/config", "debug=false\n"))
}

func toolLayer(t *testing.T) []byte {
	return layerTar(t, dirEntry("usr"), file("usr/tool", "tool\n"))
}

// mustImport imports the archive at path.
func mustImport(t *testing.T, m *Manager, path string) []*Image {
	t.Helper()
	imgs, err := m.ImportImage(context.Background(), path, nil, ImportOptions{BaseSize: testBaseSize})
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	return imgs
}

// importApp imports app:1 and returns it.
func importApp(t *testing.T, m *Manager) *Image {
	t.Helper()
	imgs := mustImport(t, m, dockerSave(t, map[string]v1.Image{"app:1": image(t, baseLayer(t), appLayer(t), configLayer(t))}))
	if len(imgs) != 1 {
		t.Fatalf("imported %d images", len(imgs))
	}
	return imgs[0]
}

// tree lists the files under dir as path -> content ("/" for a
// directory), without dir itself.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if fi.IsDir() {
			out[rel] = "/"
			return nil
		}
		b, err := os.ReadFile(p)
		out[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// devicesWithRole lists the pool's devices of a role, sorted.
func devicesWithRole(p *thinpool.Pool, role string) []string {
	var out []string
	for _, i := range p.Devices() {
		if i.Labels[labelRole] == role {
			out = append(out, i.Name)
		}
	}
	sort.Strings(out)
	return out
}

// mustWrite writes a file, making its directory.
func mustWrite(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func names(imgs []*Image) string {
	var s []string
	for _, i := range imgs {
		s = append(s, i.Name)
	}
	sort.Strings(s)
	return strings.Join(s, ",")
}
