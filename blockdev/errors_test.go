package blockdev

import (
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/thinpool/thinpool/errdefs"
)

// TestErrorKinds: every sentinel matches its kind in errdefs, and so does
// a kernel EBUSY marked as ErrBusy.
func TestErrorKinds(t *testing.T) {
	tests := []struct {
		err  error
		kind error
	}{
		{ErrBusy, errdefs.ErrInUse},
		{ErrExists, errdefs.ErrAlreadyExists},
		{ErrNotFound, errdefs.ErrNotFound},
		{ErrInvalid, errdefs.ErrInvalidArgument},
		{ErrClosed, errdefs.ErrFailedPrecondition},
		{ErrStale, errdefs.ErrFailedPrecondition},
		{ErrAborted, nil},
		{markBusy(fmt.Errorf("umount /x: %w", syscall.EBUSY)), errdefs.ErrInUse},
		{fmt.Errorf("remove %q: %w", "web", ErrNotFound), errdefs.ErrNotFound},
	}
	for _, tc := range tests {
		if got := errdefs.Kind(tc.err); got != tc.kind {
			t.Errorf("%v: kind %v, want %v", tc.err, got, tc.kind)
		}
	}
	if err := markBusy(syscall.EBUSY); !errors.Is(err, ErrBusy) || !errors.Is(err, syscall.EBUSY) || err.Error() != syscall.EBUSY.Error() {
		t.Errorf("markBusy(EBUSY) = %v", err)
	}
}
