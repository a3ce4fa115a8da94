package volumes

import (
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/thinpool/thinpool/blockdev"
	"github.com/thinpool/thinpool/errdefs"
	"github.com/thinpool/thinpool/thinpool"
)

// TestErrorKinds: every sentinel and error type of volumes matches its
// kind in errdefs, and a reason says only itself.
func TestErrorKinds(t *testing.T) {
	noSpace := &NoSpaceError{DataBytes: 1 << 30, Err: &blockdev.WriteError{Name: "web", Op: "write", Errno: syscall.ENOSPC, Err: thinpool.ErrNoSpace}}
	tests := []struct {
		err  error
		kind error
	}{
		{ErrNotFound, errdefs.ErrNotFound},
		{ErrExists, errdefs.ErrAlreadyExists},
		{ErrInUse, errdefs.ErrInUse},
		{ErrBusy, errdefs.ErrInUse},
		{ErrNotAttached, errdefs.ErrNotFound},
		{&BusyError{Holders: []Holder{{PID: 1, Comm: "sh", Mount: "/m", How: "cwd"}}}, errdefs.ErrInUse},
		{noSpace, errdefs.ErrNoSpace},
		{reasonf(ErrNotFound, "image %q not found", "x:latest"), errdefs.ErrNotFound},
		{reasonf(thinpool.ErrInvalid, "--fs %q: ext4 or xfs", "ntfs"), errdefs.ErrInvalidArgument},
	}
	for _, tc := range tests {
		if got := errdefs.Kind(tc.err); got != tc.kind {
			t.Errorf("%v: kind %v, want %v", tc.err, got, tc.kind)
		}
	}
	if !errors.Is(&BusyError{}, ErrInUse) || !errors.Is(noSpace, thinpool.ErrNoSpace) || !errors.Is(noSpace, syscall.ENOSPC) {
		t.Error("BusyError or NoSpaceError lost its sentinel")
	}
	inner := fmt.Errorf("parse: %w", errors.New("bad tag"))
	err := reasonf(thinpool.ErrInvalid, "invalid image name %q: %w", "x:", inner)
	if err.Error() != `invalid image name "x:": parse: bad tag` || !errors.Is(err, inner) || !errors.Is(err, thinpool.ErrInvalid) {
		t.Errorf("reasonf: %v", err)
	}
}
