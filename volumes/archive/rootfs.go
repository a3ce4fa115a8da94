package archive

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// openRootFS reads the tar at file as the only layer of an image, checking
// every entry and hashing the whole file for the diffID.
func (a *Archive) openRootFS(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	h := sha256.New()
	tr := tar.NewReader(io.TeeReader(f, h))
	for {
		_, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err == nil {
			_, err = io.Copy(io.Discard, tr)
		}
		if err != nil {
			return errf(ErrNotArchive, "%v", err)
		}
	}
	if _, err := io.Copy(h, f); err != nil { // padding after the end marker
		return err
	}
	diffID, err := v1.NewHash("sha256:" + hex.EncodeToString(h.Sum(nil)))
	if err != nil {
		return err
	}
	source := filepath.Base(a.Path)
	if a.Path == "-" {
		source = "from stdin"
	}
	created := v1.Time{Time: fi.ModTime().UTC().Truncate(1e9)}
	cfg := v1.ConfigFile{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Created:      created,
		RootFS:       v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{diffID}},
		History: []v1.History{{
			Created:   created,
			CreatedBy: "rootfs tar " + source,
		}},
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	im := newImage("", raw, &cfg)
	size := fi.Size()
	what := fmt.Sprintf("layer 1 (%s) of rootfs", diffID)
	im.Layers = []Layer{{
		DiffID: diffID.String(),
		Size:   size,
		Open: func() (io.ReadCloser, error) {
			f, err := os.Open(file)
			if err != nil {
				return nil, &Error{Path: a.Path, Err: err}
			}
			return a.verify(f, diffID, size, what)
		},
	}}
	a.Images = []Image{im}
	return nil
}
