package archive

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// editDockerSave rewrites the docker save fixture with f.
func editDockerSave(t testing.TB, f func(name string, data []byte) ([]byte, bool)) string {
	fx := dockerSaveFixture(t)
	b, err := os.ReadFile(fx.path)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "edited.tar", rewriteTar(t, b, f))
}

// editManifest rewrites manifest.json of the docker save fixture with f.
func editManifest(t testing.TB, f func(m tarball.Manifest) tarball.Manifest) string {
	return editDockerSave(t, func(n string, data []byte) ([]byte, bool) {
		if n != "manifest.json" {
			return data, true
		}
		var m tarball.Manifest
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		out, err := json.Marshal(f(m))
		if err != nil {
			t.Fatal(err)
		}
		return out, true
	})
}

// editOCIDir changes the OCI layout fixture with f(dir, manifest).
func editOCIDir(t testing.TB, f func(dir string, m *v1.Manifest)) string {
	fx := ociDirFixture(t)
	a, err := Open(fx.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	idx, err := layout.ImageIndexFromPath(fx.path)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	f(fx.path, m)
	return fx.path
}

func blobFile(dir string, h v1.Hash) string { return filepath.Join(dir, "blobs", h.Algorithm, h.Hex) }

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		name  string
		build func(t *testing.T) string
		want  error
	}{
		{"random bytes", func(t *testing.T) string {
			return writeFile(t, "junk", []byte(strings.Repeat("not a tar at all ", 100)))
		}, ErrNotArchive},
		{"empty file", func(t *testing.T) string { return writeFile(t, "empty", nil) }, ErrNotArchive},
		{"empty tar", func(t *testing.T) string { return writeFile(t, "e.tar", mkTar(t, nil)) }, ErrNotArchive},
		{"missing file", func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }, fs.ErrNotExist},
		{"directory without layout", func(t *testing.T) string { return t.TempDir() }, ErrNotArchive},
		{"truncated docker save", func(t *testing.T) string {
			b, _ := os.ReadFile(dockerSaveFixture(t).path)
			return writeFile(t, "cut.tar", b[:len(b)/2])
		}, ErrNotArchive},
		{"docker save without images", func(t *testing.T) string {
			return editManifest(t, func(tarball.Manifest) tarball.Manifest { return tarball.Manifest{} })
		}, ErrNoImages},
		{"docker save missing layer", func(t *testing.T) string {
			return editDockerSave(t, func(n string, data []byte) ([]byte, bool) {
				return data, !strings.HasSuffix(n, ".tar") || n == "manifest.json"
			})
		}, ErrMissingBlob},
		{"docker save missing config", func(t *testing.T) string {
			return editDockerSave(t, func(n string, data []byte) ([]byte, bool) {
				return data, !strings.HasPrefix(n, "sha256:")
			})
		}, ErrMissingBlob},
		{"docker save config changed", func(t *testing.T) string {
			return editDockerSave(t, func(n string, data []byte) ([]byte, bool) {
				if strings.HasPrefix(n, "sha256:") {
					data = append(data, ' ')
				}
				return data, true
			})
		}, ErrDigestMismatch},
		{"docker save config too large", func(t *testing.T) string {
			return editDockerSave(t, func(n string, data []byte) ([]byte, bool) {
				if strings.HasPrefix(n, "sha256:") {
					data = append(data, make([]byte, MaxMetadataSize)...)
				}
				return data, true
			})
		}, ErrTooLarge},
		{"docker save layer count differs", func(t *testing.T) string {
			return editManifest(t, func(m tarball.Manifest) tarball.Manifest {
				m[0].Layers = m[0].Layers[:2]
				return m
			})
		}, ErrInvalid},
		{"docker save untagged among several", func(t *testing.T) string {
			base, mid, _ := testLayers(t)
			a := buildTestImage(t, false, "amd64", nil, gzLayer(t, base))
			b := buildTestImage(t, false, "amd64", nil, gzLayer(t, mid))
			d, _ := b.Digest()
			untagged, err := name.NewDigest("example.com/b@" + d.String())
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(t.TempDir(), "m.tar")
			err = tarball.MultiRefWriteToFile(p, map[name.Reference]v1.Image{
				name.MustParseReference("example.com/a:1"): a,
				untagged: b,
			})
			if err != nil {
				t.Fatal(err)
			}
			return p
		}, ErrUnsupported},
		{"oci without images", func(t *testing.T) string {
			dir := filepath.Join(t.TempDir(), "l")
			if _, err := layout.Write(dir, empty.Index); err != nil {
				t.Fatal(err)
			}
			return dir
		}, ErrNoImages},
		{"oci missing layer blob", func(t *testing.T) string {
			return editOCIDir(t, func(dir string, m *v1.Manifest) {
				if err := os.Remove(blobFile(dir, m.Layers[1].Digest)); err != nil {
					t.Fatal(err)
				}
			})
		}, ErrMissingBlob},
		{"oci config changed", func(t *testing.T) string {
			return editOCIDir(t, func(dir string, m *v1.Manifest) {
				if err := os.WriteFile(blobFile(dir, m.Config.Digest), []byte("{}"), 0o644); err != nil {
					t.Fatal(err)
				}
			})
		}, ErrDigestMismatch},
		{"oci layer media type", func(t *testing.T) string {
			base, _, _ := testLayers(t)
			img, err := mutate.Append(buildTestImage(t, true, "amd64", nil), mutate.Addendum{
				Layer: gzLayer(t, base), MediaType: "application/vnd.example.layer+tar",
			})
			if err != nil {
				t.Fatal(err)
			}
			return ociDir(t, img)
		}, ErrUnsupported},
		{"oci manifest media type", func(t *testing.T) string {
			dir := filepath.Join(t.TempDir(), "l")
			lp, err := layout.Write(dir, empty.Index)
			if err != nil {
				t.Fatal(err)
			}
			h, _ := v1.NewHash("sha256:" + strings.Repeat("0", 64))
			if err := lp.AppendDescriptor(v1.Descriptor{MediaType: "application/vnd.example+json", Digest: h}); err != nil {
				t.Fatal(err)
			}
			return dir
		}, ErrUnsupported},
		{"oci tar truncated", func(t *testing.T) string {
			b, _ := os.ReadFile(ociTarFixture(t).path)
			return writeFile(t, "cut.tar", b[:len(b)-2000])
		}, nil}, // any error will do
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.build(t)
			a, err := Open(p, nil)
			if err == nil {
				a.Close()
				t.Fatalf("Open worked")
			}
			var ae *Error
			if !errors.As(err, &ae) || ae.Path != p {
				t.Errorf("err %v is no *Error for %s", err, p)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if msg := err.Error(); strings.Count(msg, "archive:") != 1 || strings.Contains(msg, "\n") {
				t.Errorf("message %q is not one line naming the package once", msg)
			}
			t.Log(err)
		})
	}
}

func ociDir(t testing.TB, img v1.Image) string {
	dir := filepath.Join(t.TempDir(), "l")
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestOpenErrorMessage(t *testing.T) {
	p := writeFile(t, "junk", []byte("hello"))
	_, err := Open(p, nil)
	if want := "archive: " + p + ": not a docker save tarball, OCI layout, or tar"; err == nil || err.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
	if _, err := Open("-", nil); err == nil {
		t.Errorf("Open(-, nil) worked")
	}
}

func TestRootFSWithManifestJSON(t *testing.T) {
	// A web root may hold a manifest.json that is no docker manifest.
	b := mkTar(t, map[string]string{"manifest.json": `{"name": "app"}`, "index.html": "<p>"})
	a := mustOpen(t, writeFile(t, "www.tar", b), nil)
	if a.Format != FormatRootFS || a.Images[0].Layers[0].DiffID != digestOf(b) {
		t.Errorf("format %v diffID %s", a.Format, a.Images[0].Layers[0].DiffID)
	}
}
