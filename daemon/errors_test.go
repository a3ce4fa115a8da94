package daemon

import (
	"errors"
	"syscall"
	"testing"

	"github.com/thinpool/thinpool/blockdev"
	"github.com/thinpool/thinpool/errdefs"
	"github.com/thinpool/thinpool/thinpool"
	"github.com/thinpool/thinpool/volumes"
)

// TestErrorKinds: every sentinel and error type of daemon matches its kind
// in errdefs.
func TestErrorKinds(t *testing.T) {
	noSpace := &NoSpaceError{DataBytes: 1 << 30, Err: &blockdev.WriteError{Name: "web", Op: "write", Errno: syscall.ENOSPC, Err: thinpool.ErrNoSpace}}
	tests := []struct {
		err  error
		kind error
	}{
		{ErrNoDaemon, errdefs.ErrUnavailable},
		{ErrClientGone, nil},
		{&BusyError{Holders: []Holder{{PID: 1, Comm: "sh", Mount: "/m", How: "cwd"}}}, errdefs.ErrInUse},
		{noSpace, errdefs.ErrNoSpace},
		{reasonf(volumes.ErrBusy, "not removing %s: %s is mounted", "/run/x", "/run/x/fuse"), errdefs.ErrInUse},
	}
	for _, tc := range tests {
		if got := errdefs.Kind(tc.err); got != tc.kind {
			t.Errorf("%v: kind %v, want %v", tc.err, got, tc.kind)
		}
	}
	if !errors.Is(&BusyError{}, volumes.ErrInUse) || !errors.Is(noSpace, thinpool.ErrNoSpace) || !errors.Is(noSpace, syscall.ENOSPC) {
		t.Error("BusyError or NoSpaceError lost its sentinel")
	}
}
