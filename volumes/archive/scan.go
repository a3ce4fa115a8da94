package archive

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const (
	// maxEntries bounds how many tar entries scanTar indexes; a docker
	// save tarball needs a few per layer.
	maxEntries = 1 << 16
	// maxNameBytes bounds the names and link targets scanTar keeps.
	maxNameBytes = 16 << 20
	// maxLinks bounds how many links resolve follows.
	maxLinks = 16
)

// entry is what scanTar keeps of one tar entry.
type entry struct {
	typeflag byte
	size     int64
	linkname string
	off      int64 // file offset of the entry's data
	sparse   bool  // data is not stored contiguously from off
}

// tarIndex is a tar's entries by cleaned name, the first of each name (as
// pkg/v1/tarball finds them).
type tarIndex struct {
	entries  map[string]entry // nil once more than maxEntries were seen
	count    int              // entries seen
	layout   bool             // has oci-layout and index.json
	manifest bool             // has manifest.json
}

// scanTar reads the headers of the tar at file, skipping the data.
func scanTar(file string) (*tarIndex, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ix := &tarIndex{entries: map[string]entry{}}
	names := 0
	tr := tar.NewReader(f) // f is an io.Seeker, so Next seeks over data
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if ix.count == 0 {
				return nil, ErrNotArchive
			}
			return nil, errf(ErrNotArchive, "entry %d: %v", ix.count+1, err)
		}
		ix.count++
		name := path.Clean(hdr.Name)
		if name == "manifest.json" {
			ix.manifest = true
		}
		if ix.entries == nil {
			continue
		}
		if _, dup := ix.entries[name]; dup {
			continue
		}
		names += len(name) + len(hdr.Linkname)
		if len(ix.entries) >= maxEntries || names > maxNameBytes {
			ix.entries = nil
			continue
		}
		off, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, err
		}
		ix.entries[name] = entry{
			typeflag: hdr.Typeflag,
			size:     hdr.Size,
			linkname: hdr.Linkname,
			off:      off,
			sparse:   isSparse(hdr),
		}
	}
	if ix.count == 0 {
		return nil, errf(ErrNotArchive, "empty tar")
	}
	_, l := ix.resolve("oci-layout")
	_, i := ix.resolve("index.json")
	ix.layout = l == nil && i == nil
	return ix, nil
}

func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// resolve finds the regular file name, following links the way
// pkg/v1/tarball does.
func (ix *tarIndex) resolve(name string) (entry, error) {
	if ix.entries == nil {
		return entry{}, errf(ErrTooLarge, "more than %d tar entries", maxEntries)
	}
	for range maxLinks {
		e, ok := ix.entries[path.Clean(name)]
		if !ok {
			return entry{}, errf(ErrMissingBlob, "%s", name)
		}
		switch e.typeflag {
		case tar.TypeReg: // tar.Reader reads the old TypeRegA as TypeReg
			return e, nil
		case tar.TypeSymlink, tar.TypeLink:
			name = path.Join(path.Dir(name), path.Clean(e.linkname))
		default:
			return entry{}, errf(ErrMissingBlob, "%s is not a regular file", name)
		}
	}
	return entry{}, errf(ErrMissingBlob, "%s: too many links", name)
}

// dockerManifest returns the tar's manifest.json if it is a docker save
// one (a JSON array), or nil if the tar is no docker save tarball.
func (ix *tarIndex) dockerManifest(file string) (tarball.Manifest, error) {
	if !ix.manifest || ix.entries == nil {
		return nil, nil // no docker save has that many entries
	}
	e, err := ix.resolve("manifest.json")
	if errors.Is(err, ErrMissingBlob) {
		return nil, nil // e.g. a directory called manifest.json
	}
	if err != nil {
		return nil, err
	}
	if e.size > MaxMetadataSize {
		return nil, errf(ErrTooLarge, "manifest.json is %d bytes (limit %d)", e.size, MaxMetadataSize)
	}
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(file) })
	if err != nil {
		var serr *json.SyntaxError
		var terr *json.UnmarshalTypeError
		if errors.As(err, &serr) || errors.As(err, &terr) || err == io.EOF {
			return nil, nil // some other manifest.json, in a rootfs
		}
		return nil, within("manifest.json", err)
	}
	if m == nil {
		m = tarball.Manifest{} // "null"
	}
	return m, nil
}
