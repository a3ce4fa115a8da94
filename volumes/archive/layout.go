package archive

import (
	"archive/tar"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

const (
	// maxIndexDepth bounds how deep Open follows indexes inside indexes.
	maxIndexDepth = 4
	// annotations naming an image in an OCI index, best first.
	annotContainerdName = "io.containerd.image.name"
	annotRefName        = "org.opencontainers.image.ref.name"
	// annotRefType marks buildx attestation manifests, which are no images.
	annotRefType = "vnd.docker.reference.type"
)

// openLayout reads every image of the OCI layout directory dir.
func (a *Archive) openLayout(dir string) error {
	lp := layout.Path(dir)
	if err := checkLayoutFile(dir); err != nil {
		return err
	}
	if err := statFile(dir, "index.json", MaxMetadataSize); err != nil {
		return err
	}
	idx, err := lp.ImageIndex()
	if err != nil {
		return err
	}
	if err := a.walkIndex(lp, idx, "", 0); err != nil {
		return err
	}
	if len(a.Images) == 0 {
		return errf(ErrNoImages, "index.json lists no images")
	}
	return nil
}

// checkLayoutFile checks dir/oci-layout, which marks an OCI layout.
func checkLayoutFile(dir string) error {
	p := filepath.Join(dir, "oci-layout")
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return errf(ErrNotArchive, "directory has no oci-layout file")
	}
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Size() > 4096 {
		return errf(ErrNotArchive, "oci-layout is not a small regular file")
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	var l struct {
		Version string `json:"imageLayoutVersion"`
	}
	if err := json.Unmarshal(b, &l); err != nil || l.Version == "" {
		return errf(ErrNotArchive, "oci-layout has no imageLayoutVersion")
	}
	return nil
}

// walkIndex adds the images of idx, whose own name (from its parent's
// descriptor) is name.
func (a *Archive) walkIndex(lp layout.Path, idx v1.ImageIndex, name string, depth int) error {
	im, err := idx.IndexManifest()
	if err != nil {
		return errf(ErrInvalid, "index: %v", err)
	}
	for _, d := range im.Manifests {
		n := name
		if s := d.Annotations[annotRefName]; s != "" {
			n = s
		}
		if s := d.Annotations[annotContainerdName]; s != "" {
			n = s
		}
		switch {
		case d.MediaType.IsImage():
			if d.Annotations[annotRefType] == "attestation-manifest" {
				continue
			}
			img, err := a.layoutImage(lp, idx, d, n)
			if err != nil {
				return err
			}
			a.Images = append(a.Images, img)
		case d.MediaType.IsIndex():
			if depth >= maxIndexDepth {
				return errf(ErrInvalid, "indexes nested deeper than %d", maxIndexDepth)
			}
			if err := statBlob(lp, d.Digest, MaxMetadataSize); err != nil {
				return within(fmt.Sprintf("index %s", d.Digest), err)
			}
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return errf(ErrInvalid, "index %s: %v", d.Digest, err)
			}
			raw, err := child.RawManifest()
			if err != nil {
				return err
			}
			if err := checkDigest(raw, d.Digest, "index"); err != nil {
				return err
			}
			if err := a.walkIndex(lp, child, n, depth+1); err != nil {
				return err
			}
		default:
			return errf(ErrUnsupported, "manifest %s: media type %q", d.Digest, d.MediaType)
		}
	}
	return nil
}

// layoutImage reads the image that d describes.
func (a *Archive) layoutImage(lp layout.Path, idx v1.ImageIndex, d v1.Descriptor, imgName string) (Image, error) {
	what := fmt.Sprintf("image %s", d.Digest)
	if imgName != "" {
		what = fmt.Sprintf("image %q (%s)", imgName, d.Digest)
	}
	img, m, err := layoutManifest(lp, idx, d, what)
	if err != nil {
		return Image{}, err
	}
	raw, err := layoutConfig(lp, img, m, what)
	if err != nil {
		return Image{}, err
	}
	cfg, err := parseConfig(raw, len(m.Layers))
	if err != nil {
		return Image{}, within(what, err)
	}
	im := newImage(imgName, raw, cfg)
	for j, ld := range m.Layers {
		diffID := cfg.RootFS.DiffIDs[j]
		l, err := a.layoutLayer(lp, img, ld, diffID, fmt.Sprintf("layer %d (%s) of %s", j+1, diffID, what))
		if err != nil {
			return Image{}, err
		}
		im.Layers = append(im.Layers, l)
	}
	return im, nil
}

// layoutManifest reads and checks the image manifest that d describes.
func layoutManifest(lp layout.Path, idx v1.ImageIndex, d v1.Descriptor, what string) (v1.Image, *v1.Manifest, error) {
	if err := statBlob(lp, d.Digest, MaxMetadataSize); err != nil {
		return nil, nil, within("manifest of "+what, err)
	}
	img, err := idx.Image(d.Digest)
	if err != nil {
		return nil, nil, errf(ErrInvalid, "%s: %v", what, err)
	}
	raw, err := img.RawManifest()
	if err != nil {
		return nil, nil, err
	}
	if err := checkDigest(raw, d.Digest, "manifest of "+what); err != nil {
		return nil, nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, nil, errf(ErrInvalid, "manifest of %s: %v", what, err)
	}
	return img, m, nil
}

// layoutConfig reads and checks the config of img, whose manifest is m.
func layoutConfig(lp layout.Path, img v1.Image, m *v1.Manifest, what string) ([]byte, error) {
	if !m.Config.MediaType.IsConfig() {
		return nil, errf(ErrUnsupported, "config of %s: media type %q", what, m.Config.MediaType)
	}
	if err := statBlob(lp, m.Config.Digest, MaxMetadataSize); err != nil {
		return nil, within("config of "+what, err)
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return nil, err
	}
	if err := checkDigest(raw, m.Config.Digest, "config of "+what); err != nil {
		return nil, err
	}
	return raw, nil
}

// layoutLayer checks the layer that ld describes and returns it.
func (a *Archive) layoutLayer(lp layout.Path, img v1.Image, ld v1.Descriptor, diffID v1.Hash, what string) (Layer, error) {
	if !ld.MediaType.IsLayer() {
		return Layer{}, errf(ErrUnsupported, "%s: media type %q", what, ld.MediaType)
	}
	if err := statBlob(lp, ld.Digest, -1); err != nil {
		return Layer{}, within(what, err)
	}
	return Layer{
		DiffID: diffID.String(),
		Digest: ld.Digest.String(),
		Size:   -1,
		Open: func() (io.ReadCloser, error) {
			l, err := img.LayerByDigest(ld.Digest)
			if err != nil {
				return nil, &Error{Path: a.Path, Err: within(what, err)}
			}
			return a.openVerified(l, diffID, -1, what)
		},
	}, nil
}

// statBlob checks that the blob h is a regular file no larger than limit
// (if limit >= 0). A parsed v1.Hash has a known algorithm and a hex body,
// so the path stays inside the layout.
func statBlob(lp layout.Path, h v1.Hash, limit int64) error {
	if h.Algorithm == "" {
		return errf(ErrInvalid, "descriptor has no digest")
	}
	return statFile(string(lp), path.Join("blobs", h.Algorithm, h.Hex), limit)
}

// statFile checks that dir/name is a regular file no larger than limit (if
// limit >= 0).
func statFile(dir, name string, limit int64) error {
	fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(name)))
	if errors.Is(err, fs.ErrNotExist) {
		return errf(ErrMissingBlob, "%s", name)
	}
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return errf(ErrMissingBlob, "%s is not a regular file", name)
	}
	if limit >= 0 && fi.Size() > limit {
		return errf(ErrTooLarge, "%s is %d bytes (limit %d)", name, fi.Size(), limit)
	}
	return nil
}

// checkDigest checks raw against want.
func checkDigest(raw []byte, want v1.Hash, what string) error {
	h, err := v1.Hasher(want.Algorithm)
	if err != nil {
		return errf(ErrUnsupported, "%s: %v", what, err)
	}
	h.Write(raw)
	if got := hex.EncodeToString(h.Sum(nil)); got != want.Hex {
		return errf(ErrDigestMismatch, "%s: content is %s:%s", what, want.Algorithm, got)
	}
	return nil
}

// extractLayout copies the layout files of the OCI layout tar at file
// (oci-layout, index.json, blobs/ALG/HEX) to a temporary directory and
// returns it. The first entry of a name wins, as in scanTar.
func (a *Archive) extractLayout(file string) (string, error) {
	tmp, err := a.tempDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(tmp, "layout")
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return dir, nil
		}
		if err != nil {
			return "", errf(ErrNotArchive, "%v", err)
		}
		name := path.Clean(hdr.Name)
		if !isLayoutName(name) || hdr.Typeflag != tar.TypeReg {
			continue
		}
		if err := extractFile(filepath.Join(dir, filepath.FromSlash(name)), tr); err != nil {
			return "", err
		}
	}
}

// isLayoutName reports whether name is a file of an OCI layout.
func isLayoutName(name string) bool {
	if name == "oci-layout" || name == "index.json" {
		return true
	}
	parts := strings.Split(name, "/")
	return len(parts) == 3 && parts[0] == "blobs" &&
		parts[1] != "" && strings.Trim(parts[1], "abcdefghijklmnopqrstuvwxyz0123456789") == "" &&
		parts[2] != "" && strings.Trim(parts[2], "0123456789abcdef") == ""
}

// extractFile copies r to a new file dst, unless dst exists.
func extractFile(dst string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = io.Copy(out, r)
	return errors.Join(err, out.Close())
}
