package archive

import (
	"errors"
	"io/fs"
	"testing"

	"github.com/thinpool/thinpool/errdefs"
)

// TestErrorKinds: every sentinel is an invalid argument, and an Error
// names the package once, whatever its cause.
func TestErrorKinds(t *testing.T) {
	for _, err := range []error{ErrNotArchive, ErrUnsupported, ErrMissingBlob, ErrDigestMismatch, ErrNoImages, ErrTooLarge, ErrInvalid, errf(ErrMissingBlob, "config")} {
		if errdefs.Kind(err) != errdefs.ErrInvalidArgument {
			t.Errorf("%v: kind %v", err, errdefs.Kind(err))
		}
	}
	tests := []struct {
		err  *Error
		want string
	}{
		{&Error{Path: "x.tar", Err: ErrNoImages}, "archive: x.tar: no images"},
		{&Error{Path: "x.tar", Err: within("layer 1", errf(ErrMissingBlob, "sha256:ab"))}, "archive: x.tar: missing blob: layer 1: sha256:ab"},
		{&Error{Path: "x.tar", Err: within("layer 1", ErrUnsupported)}, "archive: x.tar: unsupported: layer 1"},
		{&Error{Path: "x.tar", Err: &fs.PathError{Op: "open", Path: "x.tar", Err: fs.ErrNotExist}}, "archive: x.tar: open x.tar: file does not exist"},
	}
	for _, tc := range tests {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("%q, want %q", got, tc.want)
		}
		if !errors.Is(tc.err, errors.Unwrap(tc.err)) {
			t.Errorf("%v does not match its cause", tc.err)
		}
	}
}
