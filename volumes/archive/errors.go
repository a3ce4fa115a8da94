package archive

import (
	"fmt"

	"github.com/thinpool/thinpool/errdefs"
)

// Every sentinel is an invalid argument (errdefs.ErrInvalidArgument): the
// archive, not the system, is at fault.
var (
	// ErrNotArchive is returned when the input is neither a docker save
	// tarball, an OCI image layout, nor a tar.
	ErrNotArchive = error(&sentinel{"not a docker save tarball, OCI layout, or tar"})
	// ErrUnsupported is returned for a manifest, config or layer media type
	// that this package cannot read, and for an image it cannot select.
	ErrUnsupported = error(&sentinel{"unsupported"})
	// ErrMissingBlob is returned when a manifest names a config or layer
	// that is not in the archive.
	ErrMissingBlob = error(&sentinel{"missing blob"})
	// ErrDigestMismatch is returned when a blob's content does not hash to
	// its digest: a manifest or config at Open, a layer at the end of the
	// stream from [Layer.Open].
	ErrDigestMismatch = error(&sentinel{"digest mismatch"})
	// ErrNoImages is returned when an archive holds no image (manifest count
	// 0).
	ErrNoImages = error(&sentinel{"no images"})
	// ErrTooLarge is returned when a manifest, index or config is larger
	// than [MaxMetadataSize].
	ErrTooLarge = error(&sentinel{"too large"})
	// ErrInvalid is returned for a manifest, index or config that is
	// malformed or inconsistent (e.g. layer count differs from diff_ids).
	ErrInvalid = error(&sentinel{"invalid image"})
)

// Error is the error type of Open and of the streams from Layer.Open: the
// archive's path and what went wrong. Its message names the package once:
// "archive: img.tar: missing blob: ...". Match the cause with errors.Is.
type Error struct {
	Path string // as passed to Open ("-" for stdin)
	Err  error
}

func (e *Error) Error() string {
	return "archive: " + e.Path + ": " + reason(e.Err)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// detailError is a sentinel error with a detail: "archive: missing blob:
// config of image "x": sha256:...".
type detailError struct {
	sentinel error
	detail   string
}

func (e *detailError) Error() string  { return e.sentinel.Error() + ": " + e.detail }
func (e *detailError) Unwrap() error  { return e.sentinel }
func (e *detailError) reason() string { return reason(e.sentinel) + ": " + e.detail }

// sentinel is an error of this package: it says "archive: " and its
// reason, and matches errdefs.ErrInvalidArgument.
type sentinel struct{ msg string }

func (e *sentinel) Error() string  { return "archive: " + e.msg }
func (e *sentinel) Unwrap() error  { return errdefs.ErrInvalidArgument }
func (e *sentinel) reason() string { return e.msg }

// reason is what err says after the package name, for a message that
// names the package once: an error of this package gives its reason
// without "archive: ", any other its whole text.
func reason(err error) string {
	if r, ok := err.(interface{ reason() string }); ok {
		return r.reason()
	}
	return err.Error()
}

// errf returns sentinel with a detail.
func errf(sentinel error, format string, args ...any) error {
	return &detailError{sentinel: sentinel, detail: fmt.Sprintf(format, args...)}
}

// within says where err happened. The place goes after a sentinel's text,
// so that a message names the package once.
func within(where string, err error) error {
	if de, ok := err.(*detailError); ok {
		return &detailError{sentinel: de.sentinel, detail: where + ": " + de.detail}
	}
	if s, ok := err.(*sentinel); ok {
		return &detailError{sentinel: s, detail: where}
	}
	return fmt.Errorf("%s: %w", where, err)
}
