package volumes

import (
	"errors"
	"fmt"
	"testing"

	"github.com/thinpool/thinpool/errdefs"
	"github.com/thinpool/thinpool/thinpool"
)

// TestErrorKinds: every sentinel and error type of volumes matches its
// kind in errdefs, and a reason says only itself.
func TestErrorKinds(t *testing.T) {
	tests := []struct {
		err  error
		kind error
	}{
		{ErrNotFound, errdefs.ErrNotFound},
		{ErrExists, errdefs.ErrAlreadyExists},
		{ErrInUse, errdefs.ErrInUse},
		{ErrBusy, errdefs.ErrInUse},
		{ErrNotAttached, errdefs.ErrNotFound},
		{ErrNoHost, errdefs.ErrUnavailable},
		{reasonf(ErrNotFound, "image %q not found", "x:latest"), errdefs.ErrNotFound},
		{reasonf(thinpool.ErrInvalid, "--fs %q: ext4 or xfs", "ntfs"), errdefs.ErrInvalidArgument},
	}
	for _, tc := range tests {
		if got := errdefs.Kind(tc.err); got != tc.kind {
			t.Errorf("%v: kind %v, want %v", tc.err, got, tc.kind)
		}
	}
	inner := fmt.Errorf("parse: %w", errors.New("bad tag"))
	err := reasonf(thinpool.ErrInvalid, "invalid image name %q: %w", "x:", inner)
	if err.Error() != `invalid image name "x:": parse: bad tag` || !errors.Is(err, inner) || !errors.Is(err, thinpool.ErrInvalid) {
		t.Errorf("reasonf: %v", err)
	}
}
