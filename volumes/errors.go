package volumes

import "fmt"

// reasonError is an error of a kind (a sentinel such as ErrNotAttached or
// thinpool.ErrInvalid) whose message is its reason alone, worded where it
// is raised: `no attached device or loop device named "nothing"`. The CLI
// prints it as it is; callers match the kind with errors.Is, and any error
// the reason wraps with %w as well.
type reasonError struct {
	kind   error
	reason error
}

func (e *reasonError) Error() string   { return e.reason.Error() }
func (e *reasonError) Unwrap() []error { return []error{e.kind, e.reason} }

// reasonf returns an error of kind whose message is the formatted reason.
func reasonf(kind error, format string, args ...any) error {
	return &reasonError{kind: kind, reason: fmt.Errorf(format, args...)}
}
