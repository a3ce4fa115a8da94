package archive

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// MaxMetadataSize bounds every manifest.json, index, image manifest and
// config that Open reads into memory (A2).
const MaxMetadataSize = 16 << 20

// Format is the kind of archive Open found.
type Format int

const (
	// FormatUnknown is the zero value; no Archive has it.
	FormatUnknown Format = iota
	// FormatDockerSave is the output of docker save (manifest.json).
	FormatDockerSave
	// FormatOCILayout is an OCI image layout, a directory or a tar of one.
	FormatOCILayout
	// FormatRootFS is a plain tar of a root filesystem.
	FormatRootFS
)

func (f Format) String() string {
	switch f {
	case FormatDockerSave:
		return "docker-save"
	case FormatOCILayout:
		return "oci-layout"
	case FormatRootFS:
		return "rootfs"
	default:
		return "unknown"
	}
}

// Archive is an opened image archive. Close it to remove its temporary
// files; Layer.Open fails after that if the input was spooled from stdin,
// decompressed or extracted.
type Archive struct {
	Path   string  // as passed to Open
	Format Format  // what Open found
	Images []Image // in archive order; at least one

	tmp string // temporary directory for spooled or extracted input, or ""
}

// Image is one image of an archive.
type Image struct {
	// Name is "repo:tag" as the archive has it (first RepoTags entry, or the
	// io.containerd.image.name or org.opencontainers.image.ref.name
	// annotation), "" if none.
	Name string
	// Platform is "os/arch[/variant]" from the config, "" if it names none.
	Platform     string
	Config       []byte // raw config JSON, as in the archive
	ConfigDigest string // "sha256:..." of Config
	Layers       []Layer
	History      []History // from the config, oldest first
	Created      time.Time // from the config; zero if absent
}

// DiffIDs returns the layers' diffIDs, base first.
func (im *Image) DiffIDs() []string {
	ids := make([]string, len(im.Layers))
	for i, l := range im.Layers {
		ids[i] = l.DiffID
	}
	return ids
}

// Layer is one layer of an image.
type Layer struct {
	DiffID string // "sha256:..." of the uncompressed layer tar
	Digest string // digest of the blob as stored, if the archive records one
	Size   int64  // uncompressed size if known, else -1
	// Open returns the uncompressed layer tar. The stream is checked
	// against DiffID (and Size) while it is read: a mismatch is reported
	// at EOF as an *Error wrapping ErrDigestMismatch (A1).
	Open func() (io.ReadCloser, error)
}

// History is one entry of the config's history.
type History struct {
	Created    time.Time
	CreatedBy  string
	Comment    string
	EmptyLayer bool // the step made no layer
}

// ChainIDs computes OCI chain IDs: ChainID(L0) = DiffID(L0) and
// ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)).
// REF: https://github.com/opencontainers/image-spec/blob/main/config.md#layer-chainid
func ChainIDs(diffIDs []string) []string {
	out := make([]string, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		sum := sha256.Sum256([]byte(out[i-1] + " " + d))
		out[i] = "sha256:" + hex.EncodeToString(sum[:])
	}
	return out
}

// Open reads the image archive at path: a docker save tarball, an OCI
// layout directory, an OCI layout tar, or a plain rootfs tar; a file may be
// gzip or zstd compressed. The format comes from the content. Path "-"
// reads stdin to a temporary file first. Errors are *Error values naming
// path.
func Open(path string, stdin io.Reader) (*Archive, error) {
	a := &Archive{Path: path}
	if err := a.open(stdin); err != nil {
		if cerr := a.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, &Error{Path: path, Err: err}
	}
	return a, nil
}

// Close removes the temporary files. It may be called more than once.
func (a *Archive) Close() error {
	if a.tmp == "" {
		return nil
	}
	err := os.RemoveAll(a.tmp)
	a.tmp = ""
	return err
}

func (a *Archive) open(stdin io.Reader) error {
	file := a.Path
	if file == "-" {
		if stdin == nil {
			return errors.New("no standard input")
		}
		var err error
		if file, err = a.spool(stdin, "stdin"); err != nil {
			return err
		}
	}
	fi, err := os.Stat(file)
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err // the path is in the message already
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		a.Format = FormatOCILayout
		return a.openLayout(file)
	}
	if file, err = a.decompress(file); err != nil {
		return err
	}
	ix, err := scanTar(file)
	if err != nil {
		return err
	}
	m, err := ix.dockerManifest(file)
	switch {
	case err != nil:
		return err
	case m != nil:
		a.Format = FormatDockerSave
		return a.openDockerSave(file, ix, m)
	case ix.layout:
		a.Format = FormatOCILayout
		dir, err := a.extractLayout(file)
		if err != nil {
			return err
		}
		return a.openLayout(dir)
	default:
		a.Format = FormatRootFS
		return a.openRootFS(file)
	}
}

// tempDir returns the archive's temporary directory, making it once.
func (a *Archive) tempDir() (string, error) {
	if a.tmp == "" {
		dir, err := os.MkdirTemp("", "thinpool-archive-")
		if err != nil {
			return "", err
		}
		a.tmp = dir
	}
	return a.tmp, nil
}

// spool copies r to a new file in the temporary directory.
func (a *Archive) spool(r io.Reader, name string) (string, error) {
	dir, err := a.tempDir()
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, name+"-")
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(f, r); err != nil {
		return "", errors.Join(fmt.Errorf("copy %s: %w", name, err), f.Close())
	}
	return f.Name(), f.Close()
}

// decompress returns file itself, or a decompressed copy if file starts
// with a gzip or zstd magic number.
func (a *Archive) decompress(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	var magic [4]byte
	n, err := io.ReadFull(f, magic[:])
	f.Close()
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return "", err
	}
	if !isCompressed(magic[:n]) {
		return file, nil
	}
	// partial's Uncompressed peeks the magic number and picks gzip or zstd.
	l, err := partial.CompressedToLayer(compressedFile(file))
	if err != nil {
		return "", err
	}
	rc, err := l.Uncompressed()
	if err != nil {
		return "", err
	}
	out, err := a.spool(rc, "decompressed")
	if cerr := rc.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("decompress: %w", cerr)
	}
	return out, err
}

// isCompressed reports whether b starts with a gzip or zstd magic number.
func isCompressed(b []byte) bool {
	return bytes.HasPrefix(b, []byte{0x1f, 0x8b}) ||
		bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd})
}

// compressedFile is a compressed file seen as a partial.CompressedLayer, so
// that go-containerregistry decompresses it.
type compressedFile string

var _ partial.CompressedLayer = compressedFile("")

func (f compressedFile) Digest() (v1.Hash, error)           { return v1.Hash{}, errors.New("no digest") }
func (f compressedFile) Compressed() (io.ReadCloser, error) { return os.Open(string(f)) }
func (f compressedFile) Size() (int64, error)               { return -1, nil }
func (f compressedFile) MediaType() (types.MediaType, error) {
	return types.OCILayer, nil
}

// newImage fills the config-derived fields of an Image.
func newImage(name string, raw []byte, cfg *v1.ConfigFile) Image {
	sum := sha256.Sum256(raw)
	im := Image{
		Name:         name,
		Config:       raw,
		ConfigDigest: "sha256:" + hex.EncodeToString(sum[:]),
		Created:      cfg.Created.Time,
	}
	if p := cfg.Platform(); p != nil {
		im.Platform = p.String()
	}
	for _, h := range cfg.History {
		im.History = append(im.History, History{
			Created:    h.Created.Time,
			CreatedBy:  h.CreatedBy,
			Comment:    h.Comment,
			EmptyLayer: h.EmptyLayer,
		})
	}
	return im
}

// parseConfig decodes a raw config and checks it has one diffID per layer.
func parseConfig(raw []byte, nlayers int) (*v1.ConfigFile, error) {
	cfg, err := v1.ParseConfigFile(bytes.NewReader(raw))
	if err != nil {
		return nil, errf(ErrInvalid, "config: %v", err)
	}
	if n := len(cfg.RootFS.DiffIDs); n != nlayers {
		return nil, errf(ErrInvalid, "config has %d diff_ids for %d layers", n, nlayers)
	}
	return cfg, nil
}

// label names image i of n for error messages.
func label(name string, i, n int) string {
	if name != "" {
		return fmt.Sprintf("image %q", name)
	}
	return fmt.Sprintf("image %d of %d", i+1, n)
}
