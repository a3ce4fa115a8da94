package layer

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrEscape is returned when an entry name or a hard link target leaves
	// the root lexically ("../x" after cleaning); see the package doc, C2.
	ErrEscape = errors.New("layer: path escapes the root")
	// ErrTooManyEntries is returned when a layer has more tar headers than
	// Options.MaxEntries.
	ErrTooManyEntries = errors.New("layer: too many entries")
	// ErrFileTooLarge is returned when a regular file's size is larger than
	// Options.MaxFileSize.
	ErrFileTooLarge = errors.New("layer: file too large")
	// ErrInvalid is returned for an entry Apply cannot apply as given: an
	// empty, too long or NUL-holding name, an unsupported type, an out of
	// range uid, gid or device number, a hard link to a directory or to a
	// missing target, or a malformed whiteout.
	ErrInvalid = errors.New("layer: invalid entry")
)

// EntryError is the error Apply returns for a failed entry: the entry's name
// as it is in the tar and the cause. Its message names the package once:
// `layer: entry "a/b": ...`. Match the cause with errors.Is.
type EntryError struct {
	Name string // hdr.Name, uncleaned; cut short past MaxNameLen bytes
	Err  error
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("layer: entry %q: %s", e.Name, strings.TrimPrefix(e.Err.Error(), "layer: "))
}

// Unwrap returns the cause.
func (e *EntryError) Unwrap() error { return e.Err }

// errf wraps sentinel with a detail: "layer: invalid entry: uid -1".
func errf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))
}
