package daemon

import (
	"testing"

	"github.com/thinpool/thinpool/errdefs"
)

// TestErrorKinds: every sentinel and error type of daemon matches its kind
// in errdefs.
func TestErrorKinds(t *testing.T) {
	tests := []struct {
		err  error
		kind error
	}{
		{ErrNoDaemon, errdefs.ErrUnavailable},
		{ErrClientGone, nil},
	}
	for _, tc := range tests {
		if got := errdefs.Kind(tc.err); got != tc.kind {
			t.Errorf("%v: kind %v, want %v", tc.err, got, tc.kind)
		}
	}
}
