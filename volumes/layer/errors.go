package layer

import (
	"fmt"

	"github.com/thinpool/thinpool/errdefs"
)

// Every sentinel is an invalid argument (errdefs.ErrInvalidArgument): the
// layer, not the system, is at fault.
var (
	// ErrEscape is returned when an entry name or a hard link target leaves
	// the root lexically ("../x" after cleaning); see the package doc, C2.
	ErrEscape = error(&sentinel{"path escapes the root"})
	// ErrTooManyEntries is returned when a layer has more tar headers than
	// Options.MaxEntries.
	ErrTooManyEntries = error(&sentinel{"too many entries"})
	// ErrFileTooLarge is returned when a regular file's size is larger than
	// Options.MaxFileSize.
	ErrFileTooLarge = error(&sentinel{"file too large"})
	// ErrInvalid is returned for an entry Apply cannot apply as given: an
	// empty, too long or NUL-holding name, an unsupported type, an out of
	// range uid, gid or device number, a hard link to a directory or to a
	// missing target, or a malformed whiteout.
	ErrInvalid = error(&sentinel{"invalid entry"})
)

// EntryError is the error Apply returns for a failed entry: the entry's name
// as it is in the tar and the cause. Its message names the package once:
// `layer: entry "a/b": ...`. Match the cause with errors.Is.
type EntryError struct {
	Name string // hdr.Name, uncleaned; cut short past MaxNameLen bytes
	Err  error
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("layer: entry %q: %s", e.Name, reason(e.Err))
}

// Unwrap returns the cause.
func (e *EntryError) Unwrap() error { return e.Err }

// sentinel is an error of this package: it says "layer: " and its reason,
// and matches errdefs.ErrInvalidArgument.
type sentinel struct{ msg string }

func (e *sentinel) Error() string  { return "layer: " + e.msg }
func (e *sentinel) Unwrap() error  { return errdefs.ErrInvalidArgument }
func (e *sentinel) reason() string { return e.msg }

// detailError is a sentinel with a detail: "layer: invalid entry: uid -1".
type detailError struct {
	sentinel error
	detail   string
}

func (e *detailError) Error() string  { return e.sentinel.Error() + ": " + e.detail }
func (e *detailError) Unwrap() error  { return e.sentinel }
func (e *detailError) reason() string { return reason(e.sentinel) + ": " + e.detail }

// reason is what err says after the package name, for a message that
// names the package once: an error of this package gives its reason
// without "layer: ", any other its whole text.
func reason(err error) string {
	if r, ok := err.(interface{ reason() string }); ok {
		return r.reason()
	}
	return err.Error()
}

// errf wraps sentinel with a detail: "layer: invalid entry: uid -1".
func errf(sentinel error, format string, args ...any) error {
	return &detailError{sentinel: sentinel, detail: fmt.Sprintf(format, args...)}
}
