package daemon

import "github.com/thinpool/thinpool/errdefs"

// reasonf returns an error of kind (a sentinel such as volumes.ErrBusy)
// whose message is its reason alone, worded where it is raised, as volumes
// words its errors. It is [errdefs.Newf].
func reasonf(kind error, format string, args ...any) error {
	return errdefs.Newf(kind, format, args...)
}
