package archive

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Three layers; base is shared by the images of the multi-image fixtures.
var (
	baseFiles = map[string]string{"etc/os-release": "ID=test\n", "bin/sh": "#!fake\n"}
	midFiles  = map[string]string{"app/one": strings.Repeat("one ", 1000)}
	topFiles  = map[string]string{"app/two": "two\n", ".wh.old": ""}
)

type wantImage struct {
	name     string
	platform string
	layers   [][]byte // uncompressed tars, base first
}

type fixture struct {
	path   string // file or directory to Open
	format Format
	images []wantImage
	sized  bool // every Layer.Size is known
}

func testLayers(t testing.TB) (base, mid, top []byte) {
	return mkTar(t, baseFiles), mkTar(t, midFiles), mkTar(t, topFiles)
}

// dockerSaveFixture is WriteDockerSave's output: uncompressed layers.
func dockerSaveFixture(t testing.TB) fixture {
	base, mid, top := testLayers(t)
	p := filepath.Join(t.TempDir(), "save.tar")
	if err := WriteDockerSave(p, "example.com/app:1", [][]byte{base, mid, top}, nil); err != nil {
		t.Fatal(err)
	}
	return fixture{p, FormatDockerSave, []wantImage{
		{"example.com/app:1", "linux/" + runtime.GOARCH, [][]byte{base, mid, top}},
	}, true}
}

// dockerSaveMultiFixture has two gzip-layered images sharing a base, as
// tarball.MultiRefWriteToFile writes them.
func dockerSaveMultiFixture(t testing.TB) fixture {
	base, mid, top := testLayers(t)
	a := buildTestImage(t, false, "amd64", nil, gzLayer(t, base), gzLayer(t, mid))
	b := buildTestImage(t, false, "arm64", nil, gzLayer(t, base), gzLayer(t, top))
	refs := map[name.Reference]v1.Image{
		name.MustParseReference("example.com/a:1"): a,
		name.MustParseReference("example.com/b:1"): b,
	}
	p := filepath.Join(t.TempDir(), "multi.tar")
	if err := tarball.MultiRefWriteToFile(p, refs); err != nil {
		t.Fatal(err)
	}
	return fixture{p, FormatDockerSave, []wantImage{
		{"example.com/a:1", "linux/amd64", [][]byte{base, mid}},
		{"example.com/b:1", "linux/arm64", [][]byte{base, top}},
	}, false}
}

// ociImage is an OCI image of gzip, zstd and uncompressed layers.
func ociImage(t testing.TB, arch string) (v1.Image, [][]byte) {
	base, mid, top := testLayers(t)
	img := buildTestImage(t, true, arch, nil,
		gzLayer(t, base, tarball.WithMediaType(types.OCILayer)),
		gzLayer(t, mid, tarball.WithCompression(compression.ZStd), tarball.WithMediaType(types.OCILayerZStd)),
		gzLayer(t, top, tarball.WithMediaType(types.OCILayer)))
	return img, [][]byte{base, mid, top}
}

func ociDirFixture(t testing.TB) fixture {
	img, layers := ociImage(t, "amd64")
	dir := filepath.Join(t.TempDir(), "layout")
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{annotRefName: "example.com/app:1"})); err != nil {
		t.Fatal(err)
	}
	return fixture{dir, FormatOCILayout, []wantImage{{"example.com/app:1", "linux/amd64", layers}}, false}
}

// docker25Fixture is laid out as Docker 25+ saves: an OCI layout of
// uncompressed blobs plus a manifest.json that points into blobs/.
func docker25Fixture(t testing.TB) fixture {
	base, mid, top := testLayers(t)
	img := buildTestImage(t, true, "amd64", nil,
		static.NewLayer(base, types.OCIUncompressedLayer),
		static.NewLayer(mid, types.OCIUncompressedLayer),
		static.NewLayer(top, types.OCIUncompressedLayer))
	dir := filepath.Join(t.TempDir(), "layout")
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{annotRefName: "25"})); err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	d := tarball.Descriptor{Config: "blobs/sha256/" + m.Config.Digest.Hex, RepoTags: []string{"example.com/app:25"}}
	for _, l := range m.Layers {
		d.Layers = append(d.Layers, "blobs/sha256/"+l.Digest.Hex)
	}
	b, err := json.Marshal(tarball.Manifest{d})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return fixture{writeFile(t, "docker25.tar", tarDir(t, dir)), FormatDockerSave, []wantImage{
		{"example.com/app:25", "linux/amd64", [][]byte{base, mid, top}},
	}, true}
}

// legacyFixture is laid out as docker save before Docker 25: <id>/layer.tar
// and <hex>.json, with a repeated layer stored once and linked to.
func legacyFixture(t testing.TB) fixture {
	base, mid, _ := testLayers(t)
	cfg, err := json.Marshal(map[string]any{
		"os": "linux", "architecture": "amd64",
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{digestOf(base), digestOf(mid), digestOf(base)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfgName := strings.TrimPrefix(digestOf(cfg), "sha256:") + ".json"
	manifest, err := json.Marshal(tarball.Manifest{{
		Config:   cfgName,
		RepoTags: []string{"old:1"},
		Layers:   []string{"aaa/layer.tar", "bbb/layer.tar", "ccc/layer.tar"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(hdr *tar.Header, data []byte) {
		hdr.Size, hdr.Mode = int64(len(data)), 0o644
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"aaa/", "bbb/", "ccc/"} {
		add(&tar.Header{Name: d, Typeflag: tar.TypeDir}, nil)
	}
	add(&tar.Header{Name: "aaa/layer.tar", Typeflag: tar.TypeReg}, base)
	add(&tar.Header{Name: "bbb/layer.tar", Typeflag: tar.TypeReg}, mid)
	add(&tar.Header{Name: "ccc/layer.tar", Typeflag: tar.TypeSymlink, Linkname: "../aaa/layer.tar"}, nil)
	add(&tar.Header{Name: cfgName, Typeflag: tar.TypeReg}, cfg)
	add(&tar.Header{Name: "manifest.json", Typeflag: tar.TypeReg}, manifest)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return fixture{writeFile(t, "legacy.tar", buf.Bytes()), FormatDockerSave, []wantImage{
		{"old:1", "linux/amd64", [][]byte{base, mid, base}},
	}, true}
}

func ociTarFixture(t testing.TB) fixture {
	fx := ociDirFixture(t)
	fx.path = writeFile(t, "oci.tar", tarDir(t, fx.path))
	return fx
}

func rootfsFixture(t testing.TB) fixture {
	b := mkTar(t, baseFiles)
	return fixture{writeFile(t, "rootfs.tar", b), FormatRootFS, []wantImage{{"", "linux/" + runtime.GOARCH, [][]byte{b}}}, true}
}

// gzFixture is fx's file gzip compressed.
func gzFixture(t testing.TB, fx fixture) fixture {
	b, err := os.ReadFile(fx.path)
	if err != nil {
		t.Fatal(err)
	}
	fx.path = writeFile(t, filepath.Base(fx.path)+".gz", gz(t, b))
	return fx
}

func allFixtures(t *testing.T) map[string]fixture {
	fxs := map[string]fixture{
		"docker-save":       dockerSaveFixture(t),
		"docker-save-multi": dockerSaveMultiFixture(t),
		"docker-save-25":    docker25Fixture(t),
		"docker-save-old":   legacyFixture(t),
		"oci-dir":           ociDirFixture(t),
		"oci-tar":           ociTarFixture(t),
		"rootfs":            rootfsFixture(t),
	}
	for _, n := range []string{"docker-save", "docker-save-multi", "oci-tar", "rootfs"} {
		fxs[n+".gz"] = gzFixture(t, fxs[n])
	}
	return fxs
}

// chainOf computes chain IDs the long way, for comparison with ChainIDs.
func chainOf(layers [][]byte) []string {
	var out []string
	for i, l := range layers {
		d := digestOf(l)
		if i > 0 {
			d = digestOf([]byte(out[i-1] + " " + d))
		}
		out = append(out, d)
	}
	return out
}

func checkArchive(t *testing.T, a *Archive, fx fixture) {
	t.Helper()
	if a.Format != fx.format {
		t.Errorf("Format = %v, want %v", a.Format, fx.format)
	}
	if len(a.Images) != len(fx.images) {
		t.Fatalf("%d images, want %d", len(a.Images), len(fx.images))
	}
	for i, want := range fx.images {
		im := a.Images[i]
		if im.Name != want.name || im.Platform != want.platform {
			t.Errorf("image %d: name %q platform %q, want %q %q", i, im.Name, im.Platform, want.name, want.platform)
		}
		if im.ConfigDigest != digestOf(im.Config) {
			t.Errorf("image %d: ConfigDigest %s, config hashes to %s", i, im.ConfigDigest, digestOf(im.Config))
		}
		var wantIDs []string
		for _, l := range want.layers {
			wantIDs = append(wantIDs, digestOf(l))
		}
		if got := im.DiffIDs(); !slices.Equal(got, wantIDs) {
			t.Fatalf("image %d: diffIDs\n%q\nwant\n%q", i, got, wantIDs)
		}
		if got, want := ChainIDs(im.DiffIDs()), chainOf(want.layers); !slices.Equal(got, want) {
			t.Errorf("image %d: chain IDs %q, want %q", i, got, want)
		}
		for j, l := range im.Layers {
			if l.Size != -1 && l.Size != int64(len(want.layers[j])) || fx.sized && l.Size == -1 {
				t.Errorf("image %d layer %d: Size %d, want %d (or -1 if not sized: %v)", i, j, l.Size, len(want.layers[j]), fx.sized)
			}
			got, err := readLayer(t, l)
			if err != nil {
				t.Fatalf("image %d layer %d: %v", i, j, err)
			}
			if !bytes.Equal(got, want.layers[j]) || digestOf(got) != l.DiffID {
				t.Errorf("image %d layer %d: stream differs from the layer tar", i, j)
			}
		}
	}
}

func TestOpen(t *testing.T) {
	for n, fx := range allFixtures(t) {
		t.Run(n, func(t *testing.T) {
			checkArchive(t, mustOpen(t, fx.path, nil), fx)
		})
	}
}

func TestOpenStdin(t *testing.T) {
	for n, fx := range allFixtures(t) {
		if fx.format == FormatOCILayout && !strings.Contains(n, "tar") {
			continue // a directory has no stream
		}
		t.Run(n, func(t *testing.T) {
			b, err := os.ReadFile(fx.path)
			if err != nil {
				t.Fatal(err)
			}
			a, err := Open("-", bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			checkArchive(t, a, fx)
			tmp := a.tmp
			if _, err := os.Stat(tmp); err != nil {
				t.Fatalf("temp dir: %v", err)
			}
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("temp dir %s still there after Close: %v", tmp, err)
			}
			if _, err := readLayer(t, a.Images[0].Layers[0]); err == nil {
				t.Errorf("Layer.Open after Close of a spooled archive worked")
			}
		})
	}
}

// TestLayersConcurrently reads every layer of every image at once; the
// race detector checks that Layer.Open is safe for concurrent use.
func TestLayersConcurrently(t *testing.T) {
	for n, fx := range allFixtures(t) {
		t.Run(n, func(t *testing.T) {
			a := mustOpen(t, fx.path, nil)
			var wg sync.WaitGroup
			for i, im := range a.Images {
				for j, l := range im.Layers {
					for range 2 {
						wg.Go(func() {
							got, err := readLayer(t, l)
							if err != nil || !bytes.Equal(got, fx.images[i].layers[j]) {
								t.Errorf("image %d layer %d: %v", i, j, err)
							}
						})
					}
				}
			}
			wg.Wait()
		})
	}
}

func TestChainIDs(t *testing.T) {
	d1 := "sha256:" + strings.Repeat("1", 64)
	d2 := "sha256:" + strings.Repeat("2", 64)
	d3 := "sha256:" + strings.Repeat("3", 64)
	// Computed with sha256sum: printf '%s %s' "$c1" "$d3" | sha256sum.
	want := []string{
		d1,
		"sha256:9932074217c35353d2e03a3f5a86549f7c67bfeb0ba53e23d69f4d4c8f7958f5",
		"sha256:50127c0d6b338be78246434b4bce23ecf75e505158ea0bbd15effeb162fbf3ec",
	}
	if got := ChainIDs([]string{d1, d2, d3}); !slices.Equal(got, want) {
		t.Errorf("ChainIDs = %q, want %q", got, want)
	}
	if got := ChainIDs(nil); len(got) != 0 {
		t.Errorf("ChainIDs(nil) = %q", got)
	}
}

func TestWriteDockerSaveConfig(t *testing.T) {
	base, mid, _ := testLayers(t)
	cfg := map[string]any{
		"created": "2024-01-02T03:04:05Z",
		"config":  map[string]any{"Env": []string{"X=1"}, "Cmd": []string{"/bin/sh"}},
		"history": []map[string]any{
			{"created_by": "ADD base", "created": "2024-01-02T03:04:05Z"},
			{"created_by": "ENV X=1", "empty_layer": true},
			{"created_by": "ADD mid", "comment": "hello"},
		},
	}
	p := filepath.Join(t.TempDir(), "img.tar")
	if err := WriteDockerSave(p, "app:latest", [][]byte{base, mid}, cfg); err != nil {
		t.Fatal(err)
	}
	a := mustOpen(t, p, nil)
	im := a.Images[0]
	if im.Name != "app:latest" || !im.Created.Equal(epoch) {
		t.Errorf("name %q created %v", im.Name, im.Created)
	}
	wantHist := []History{
		{Created: epoch, CreatedBy: "ADD base"},
		{CreatedBy: "ENV X=1", EmptyLayer: true},
		{CreatedBy: "ADD mid", Comment: "hello"},
	}
	if !slices.EqualFunc(im.History, wantHist, func(a, b History) bool {
		return a.Created.Equal(b.Created) && a.CreatedBy == b.CreatedBy && a.Comment == b.Comment && a.EmptyLayer == b.EmptyLayer
	}) {
		t.Errorf("history %+v, want %+v", im.History, wantHist)
	}
	if !bytes.Contains(im.Config, []byte(`"X=1"`)) {
		t.Errorf("config lacks Env: %s", im.Config)
	}
	if got := im.DiffIDs(); !slices.Equal(got, []string{digestOf(base), digestOf(mid)}) {
		t.Errorf("diffIDs %q", got)
	}

	// More layer steps in the history than layers.
	err := WriteDockerSave(p, "", [][]byte{base}, map[string]any{"history": []map[string]any{{}, {}}})
	if err == nil {
		t.Errorf("WriteDockerSave with too much history worked")
	}
}

// TestOpenMultiPlatform reads an OCI layout whose index.json names an
// index of two platforms and a buildx attestation manifest.
func TestOpenMultiPlatform(t *testing.T) {
	amd, layers := ociImage(t, "amd64")
	arm, _ := ociImage(t, "arm64")
	att, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer:     gzLayer(t, []byte(`{"_type":"https://in-toto.io/Statement/v0.1"}`)),
		MediaType: "application/vnd.in-toto+json",
	})
	if err != nil {
		t.Fatal(err)
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{
			Platform:    &v1.Platform{OS: "unknown", Architecture: "unknown"},
			Annotations: map[string]string{annotRefType: "attestation-manifest"},
		}},
	)
	dir := filepath.Join(t.TempDir(), "layout")
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{annotContainerdName: "docker.io/library/app:2"})); err != nil {
		t.Fatal(err)
	}
	checkArchive(t, mustOpen(t, dir, nil), fixture{dir, FormatOCILayout, []wantImage{
		{"docker.io/library/app:2", "linux/amd64", layers},
		{"docker.io/library/app:2", "linux/arm64", layers},
	}, false})
}

// TestCorruptLayer changes a layer after the archive was written: Open
// still works, and the layer's stream fails at its end naming the layer.
func TestCorruptLayer(t *testing.T) {
	t.Run("docker-save", func(t *testing.T) {
		fx := dockerSaveFixture(t)
		b, _ := os.ReadFile(fx.path)
		mid := digestOf(fx.images[0].layers[1])
		b = rewriteTar(t, b, func(n string, data []byte) ([]byte, bool) {
			if strings.HasPrefix(n, strings.TrimPrefix(mid, "sha256:")) {
				data = bytes.Replace(data, []byte("one one"), []byte("one 1ne"), 1)
			}
			return data, true
		})
		checkCorrupt(t, writeFile(t, "bad.tar", b), 1, mid)
	})
	t.Run("docker-save-gzip", func(t *testing.T) {
		fx := dockerSaveMultiFixture(t)
		b, _ := os.ReadFile(fx.path)
		top := digestOf(fx.images[1].layers[1])
		other := gz(t, mkTar(t, map[string]string{"app/two": "TWO\n"}))
		// Replace every layer blob that decompresses to top with other.
		b = rewriteTar(t, b, func(n string, data []byte) ([]byte, bool) {
			if strings.HasSuffix(n, ".tar.gz") && bytes.Equal(gunzip(t, data), fx.images[1].layers[1]) {
				return other, true
			}
			return data, true
		})
		a := mustOpen(t, writeFile(t, "bad.tar", b), nil)
		_, err := readLayer(t, a.Images[1].Layers[1])
		checkMismatch(t, err, top)
	})
	t.Run("oci-dir", func(t *testing.T) {
		fx := ociDirFixture(t)
		a := mustOpen(t, fx.path, nil)
		l := a.Images[0].Layers[2]
		h, _ := v1.NewHash(l.Digest)
		other := gz(t, mkTar(t, map[string]string{"app/two": "TWO\n"}))
		if err := os.WriteFile(filepath.Join(fx.path, "blobs", "sha256", h.Hex), other, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := readLayer(t, l)
		checkMismatch(t, err, l.DiffID)
	})
	t.Run("rootfs", func(t *testing.T) {
		fx := rootfsFixture(t)
		a := mustOpen(t, fx.path, nil)
		b := fx.images[0].layers[0]
		b[600] ^= 1 // inside the first file's data
		if err := os.WriteFile(fx.path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := readLayer(t, a.Images[0].Layers[0])
		checkMismatch(t, err, a.Images[0].Layers[0].DiffID)
	})
}

// checkCorrupt opens path and reads layer j of its image, which must fail
// with a mismatch naming diffID.
func checkCorrupt(t *testing.T, path string, j int, diffID string) {
	t.Helper()
	a := mustOpen(t, path, nil)
	for k, l := range a.Images[0].Layers {
		_, err := readLayer(t, l)
		if k != j {
			if err != nil {
				t.Errorf("layer %d: %v", k, err)
			}
			continue
		}
		checkMismatch(t, err, diffID)
	}
}

func checkMismatch(t *testing.T, err error, diffID string) {
	t.Helper()
	var ae *Error
	if !errors.Is(err, ErrDigestMismatch) || !errors.As(err, &ae) {
		t.Fatalf("err = %v, want an *Error wrapping ErrDigestMismatch", err)
	}
	if !strings.Contains(err.Error(), diffID) || strings.Count(err.Error(), "archive:") != 1 {
		t.Errorf("error %q does not name layer %s once", err, diffID)
	}
}

// TestStreamsLayers checks A2: opening an archive and reading an 8 MiB
// layer allocates far less than the layer.
func TestStreamsLayers(t *testing.T) {
	if testing.Short() {
		t.Skip("writes an 8 MiB layer")
	}
	const size = 8 << 20
	big := mkTar(t, map[string]string{"big": strings.Repeat("0123456789abcdef", size/16)})
	p := filepath.Join(t.TempDir(), "big.tar")
	if err := WriteDockerSave(p, "big:1", [][]byte{big}, nil); err != nil {
		t.Fatal(err)
	}
	want := digestOf(big)
	big = nil
	for _, in := range []string{p, writeFile(t, "big.tar.gz", gzFile(t, p))} {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		a := mustOpen(t, in, nil)
		rc, err := a.Images[0].Layers[0].Open()
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		if _, err := io.Copy(h, rc); err != nil {
			t.Fatal(err)
		}
		rc.Close()
		runtime.ReadMemStats(&after)
		if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != want {
			t.Fatalf("%s: layer hashes to %s", in, got)
		}
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("%s: allocated %d bytes", filepath.Base(in), alloc)
		if alloc > 1<<20 {
			t.Errorf("%s: Open and one layer allocated %d bytes for a %d byte layer", in, alloc, size)
		}
	}
}

func gzFile(t testing.TB, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return gz(t, b)
}
