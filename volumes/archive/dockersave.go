package archive

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// openDockerSave reads every image of the docker save tarball at file,
// whose manifest.json is m.
func (a *Archive) openDockerSave(file string, ix *tarIndex, m tarball.Manifest) error {
	if len(m) == 0 {
		return errf(ErrNoImages, "manifest.json lists no images")
	}
	opener := func() (io.ReadCloser, error) { return os.Open(file) }
	for i := range m {
		im, err := a.dockerImage(file, ix, m, i, opener)
		if err != nil {
			return err
		}
		a.Images = append(a.Images, im)
	}
	return nil
}

// dockerImage reads image i of manifest.json m.
func (a *Archive) dockerImage(file string, ix *tarIndex, m tarball.Manifest, i int, opener tarball.Opener) (Image, error) {
	d := m[i]
	var imgName string
	if len(d.RepoTags) > 0 {
		imgName = d.RepoTags[0]
	}
	what := label(imgName, i, len(m))
	entries, err := dockerEntries(ix, d, what)
	if err != nil {
		return Image{}, err
	}
	tag, err := selectTag(m, i)
	if err != nil {
		return Image{}, err
	}
	img, err := tarball.Image(opener, tag)
	if err != nil {
		return Image{}, errf(ErrInvalid, "%s: %v", what, err)
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return Image{}, errf(ErrInvalid, "config of %s: %v", what, err)
	}
	if err := checkConfigName(d.Config, raw); err != nil {
		return Image{}, within("config of "+what, err)
	}
	cfg, err := parseConfig(raw, len(d.Layers))
	if err != nil {
		return Image{}, within(what, err)
	}
	im := newImage(imgName, raw, cfg)
	// pkg/v1/tarball hands out a layer file as it is when the first layer
	// is not compressed, and decompresses every layer otherwise.
	asIs := len(entries) == 0 || !compressed(file, entries[0])
	for j, diffID := range cfg.RootFS.DiffIDs {
		if src, ok := d.LayerSources[diffID]; ok && !src.MediaType.IsLayer() {
			return Image{}, errf(ErrUnsupported, "layer %d of %s: media type %q", j+1, what, src.MediaType)
		}
		size := int64(-1)
		if e := entries[j]; asIs && !e.sparse && !compressed(file, e) {
			size = e.size
		}
		layerWhat := fmt.Sprintf("layer %d (%s) of %s", j+1, diffID, what)
		im.Layers = append(im.Layers, Layer{
			DiffID: diffID.String(),
			Size:   size,
			Open: func() (io.ReadCloser, error) {
				l, err := img.LayerByDiffID(diffID)
				if err != nil {
					return nil, &Error{Path: a.Path, Err: within(layerWhat, err)}
				}
				return a.openVerified(l, diffID, size, layerWhat)
			},
		})
	}
	return im, nil
}

// dockerEntries checks that the config and layers of d are in the tar, and
// the config is no larger than MaxMetadataSize. It returns the layers'
// entries.
func dockerEntries(ix *tarIndex, d tarball.Descriptor, what string) ([]entry, error) {
	if d.Config == "" {
		return nil, errf(ErrInvalid, "%s: manifest.json names no config", what)
	}
	ce, err := ix.resolve(d.Config)
	if err != nil {
		return nil, within("config of "+what, err)
	}
	if ce.size > MaxMetadataSize {
		return nil, errf(ErrTooLarge, "config of %s is %d bytes (limit %d)", what, ce.size, MaxMetadataSize)
	}
	entries := make([]entry, len(d.Layers))
	for j, p := range d.Layers {
		if entries[j], err = ix.resolve(p); err != nil {
			return nil, within(fmt.Sprintf("layer %d of %s", j+1, what), err)
		}
	}
	return entries, nil
}

// selectTag returns the tag that makes tarball.Image pick image i of m:
// nil for a lone image, else one of its repo tags that no earlier image has.
func selectTag(m tarball.Manifest, i int) (*name.Tag, error) {
	if len(m) == 1 {
		return nil, nil
	}
	earlier := map[string]bool{}
	for j := range i + 1 {
		for _, s := range m[j].RepoTags {
			t, err := name.NewTag(s)
			if err != nil {
				return nil, errf(ErrInvalid, "repo tag %q: %v", s, err)
			}
			if j == i && !earlier[t.Name()] {
				return &t, nil
			}
			earlier[t.Name()] = true
		}
	}
	return nil, errf(ErrUnsupported, "image %d of %d has no repo tag of its own; save it alone", i+1, len(m))
}

// checkConfigName checks raw against the digest in its file name, if the
// name holds one: "<hex>.json", "sha256:<hex>" or "blobs/sha256/<hex>".
func checkConfigName(p string, raw []byte) error {
	base := strings.TrimSuffix(path.Base(p), ".json")
	base = strings.TrimPrefix(base, "sha256:")
	if len(base) != sha256.Size*2 || strings.Trim(base, "0123456789abcdef") != "" {
		return nil
	}
	sum := sha256.Sum256(raw)
	if got := hex.EncodeToString(sum[:]); got != base {
		return errf(ErrDigestMismatch, "%s holds sha256:%s", p, got)
	}
	return nil
}

// compressed reports whether the data of e starts with a gzip or zstd
// magic number.
func compressed(file string, e entry) bool {
	f, err := os.Open(file)
	if err != nil {
		return false
	}
	defer f.Close()
	var magic [4]byte
	n, _ := f.ReadAt(magic[:min(int64(len(magic)), e.size)], e.off)
	return isCompressed(magic[:n])
}
