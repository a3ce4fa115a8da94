package archive

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
)

// openAndRead opens p and reads every layer; it fails t only on what must
// never happen, whatever the input: a panic, an error that is no *Error, a
// success without images.
func openAndRead(t *testing.T, p string) {
	a, err := Open(p, nil)
	if err != nil {
		var ae *Error
		if !errors.As(err, &ae) {
			t.Fatalf("Open error %v is no *Error", err)
		}
		return
	}
	defer a.Close()
	if len(a.Images) == 0 {
		t.Fatal("Open returned no images and no error")
	}
	for _, im := range a.Images {
		if n := len(ChainIDs(im.DiffIDs())); n != len(im.Layers) {
			t.Fatalf("%d chain IDs for %d layers", n, len(im.Layers))
		}
		for _, l := range im.Layers {
			rc, err := l.Open()
			if err != nil {
				continue
			}
			_, _ = io.Copy(io.Discard, io.LimitReader(rc, 64<<20))
			rc.Close()
		}
	}
}

// FuzzOpen opens random files, seeded with small archives of every format.
func FuzzOpen(f *testing.F) {
	for _, fx := range []fixture{dockerSaveFixture(f), ociTarFixture(f), rootfsFixture(f)} {
		b, err := os.ReadFile(fx.path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(gz(f, b))
	}
	f.Add([]byte("hello"))
	f.Add(mkTar(f, map[string]string{"manifest.json": "[]"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		openAndRead(t, writeFile(t, "in", data))
	})
}

// Placeholders that metadataTar replaces with the digest of the blob.
const (
	phLayer    = "@L@" // layer diffID (= digest: the layer is uncompressed)
	phConfig   = "@C@"
	phManifest = "@M@"
)

// metadataTar builds an archive around fuzzed metadata: a docker save of
// manifest.json top and config c.json, or an OCI layout tar of index.json
// top, image manifest and config. Placeholders become real digests, so
// that mutated JSON still points at blobs that are there.
func metadataTar(t testing.TB, docker bool, top, manifest, config []byte) string {
	layer := mkTar(t, map[string]string{"f": "x"})
	ld := digestOf(layer)
	config = bytes.ReplaceAll(config, []byte(phLayer), []byte(ld))
	files := map[string]string{}
	if docker {
		files["manifest.json"] = string(top)
		files["c.json"] = string(config)
		files["l.tar"] = string(layer)
	} else {
		cd := digestOf(config)
		manifest = bytes.ReplaceAll(manifest, []byte(phLayer), []byte(ld))
		manifest = bytes.ReplaceAll(manifest, []byte(phConfig), []byte(cd))
		md := digestOf(manifest)
		top = bytes.ReplaceAll(top, []byte(phManifest), []byte(md))
		files["oci-layout"] = `{"imageLayoutVersion":"1.0.0"}`
		files["index.json"] = string(top)
		files["blobs/sha256/"+strings.TrimPrefix(ld, "sha256:")] = string(layer)
		files["blobs/sha256/"+strings.TrimPrefix(cd, "sha256:")] = string(config)
		files["blobs/sha256/"+strings.TrimPrefix(md, "sha256:")] = string(manifest)
	}
	return writeFile(t, "meta.tar", mkTar(t, files))
}

var metadataSeeds = []struct {
	docker                bool
	top, manifest, config string
}{
	{true, `[{"Config":"c.json","RepoTags":["a:1"],"Layers":["l.tar"]}]`, ``,
		`{"architecture":"amd64","os":"linux","history":[{"created_by":"x"}],"rootfs":{"type":"layers","diff_ids":["@L@"]}}`},
	{false, `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"@M@","size":1,"annotations":{"org.opencontainers.image.ref.name":"a:1"}}]}`,
		`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"@C@","size":1},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"@L@","size":1}]}`,
		`{"architecture":"arm64","os":"linux","rootfs":{"type":"layers","diff_ids":["@L@"]}}`},
}

// TestMetadataSeeds checks that FuzzOpenMetadata's seeds are good archives,
// so that the fuzzer starts from inputs that reach deep.
func TestMetadataSeeds(t *testing.T) {
	for _, s := range metadataSeeds {
		a := mustOpen(t, metadataTar(t, s.docker, []byte(s.top), []byte(s.manifest), []byte(s.config)), nil)
		if a.Images[0].Name != "a:1" {
			t.Errorf("name %q", a.Images[0].Name)
		}
		if _, err := readLayer(t, a.Images[0].Layers[0]); err != nil {
			t.Error(err)
		}
	}
}

// FuzzOpenMetadata opens archives whose manifests and configs are fuzzed.
func FuzzOpenMetadata(f *testing.F) {
	for _, s := range metadataSeeds {
		f.Add(s.docker, []byte(s.top), []byte(s.manifest), []byte(s.config))
	}
	f.Fuzz(func(t *testing.T, docker bool, top, manifest, config []byte) {
		openAndRead(t, metadataTar(t, docker, top, manifest, config))
	})
}
