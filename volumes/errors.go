package volumes

import "github.com/thinpool/thinpool/errdefs"

// reasonf returns an error of kind (a sentinel such as ErrNotAttached or
// thinpool.ErrInvalid) whose message is its reason alone, worded where it
// is raised: `no attached device or loop device named "nothing"`. The CLI
// prints it as it is; callers match the kind with errors.Is, and any error
// the reason wraps with %w as well. It is [errdefs.Newf].
func reasonf(kind error, format string, args ...any) error {
	return errdefs.Newf(kind, format, args...)
}
