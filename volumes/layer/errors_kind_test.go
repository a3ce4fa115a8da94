package layer

import (
	"errors"
	"io/fs"
	"testing"

	"github.com/thinpool/thinpool/errdefs"
)

// TestErrorKinds: every sentinel is an invalid argument, and an
// EntryError names the package once, whatever its cause.
func TestErrorKinds(t *testing.T) {
	for _, err := range []error{ErrEscape, ErrTooManyEntries, ErrFileTooLarge, ErrInvalid, errf(ErrInvalid, "uid %d", -1)} {
		if errdefs.Kind(err) != errdefs.ErrInvalidArgument {
			t.Errorf("%v: kind %v", err, errdefs.Kind(err))
		}
	}
	tests := []struct {
		err  *EntryError
		want string
	}{
		{&EntryError{Name: "a", Err: ErrEscape}, `layer: entry "a": path escapes the root`},
		{&EntryError{Name: "a", Err: errf(ErrInvalid, "uid %d", -1)}, `layer: entry "a": invalid entry: uid -1`},
		{&EntryError{Name: "a", Err: &fs.PathError{Op: "mkdir", Path: "a", Err: fs.ErrPermission}}, `layer: entry "a": mkdir a: permission denied`},
	}
	for _, tc := range tests {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("%q, want %q", got, tc.want)
		}
		if !errors.Is(tc.err, tc.err.Err) {
			t.Errorf("%v does not match its cause", tc.err)
		}
	}
}
