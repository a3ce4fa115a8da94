package errdefs

import (
	"errors"
	"fmt"
)

// The kinds. They are matched with errors.Is, never by their text, which
// no error of a kind shows: a package sentinel made with [New] and an
// error made with [Newf] say only their own message.
var (
	// ErrNotFound is returned when a named object does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists is returned when a name is already taken.
	ErrAlreadyExists = errors.New("already exists")
	// ErrInUse is returned when something still holds the object the call
	// would change or tear down: a locked pool, a busy device, a mounted
	// volume, an image that containers use.
	ErrInUse = errors.New("in use")
	// ErrFailedPrecondition is returned when the object's state refuses the
	// call and waiting will not change it: a write to a read-only device, a
	// call on a closed or failed pool, detaching what is not attached.
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrInvalidArgument is returned for bad input: a size, a name, a label,
	// an offset past the end of a device.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrNoSpace is returned when the pool's data or metadata area is full.
	ErrNoSpace = errors.New("no space")
	// ErrCorrupt is returned when on-disk data fails validation.
	ErrCorrupt = errors.New("corrupt")
	// ErrPermission is returned when the caller lacks the privileges the
	// call needs, usually root.
	ErrPermission = errors.New("permission denied")
	// ErrUnavailable is returned when a service the call needs is not
	// running or cannot be reached: the pool daemon.
	ErrUnavailable = errors.New("unavailable")
)

// kinds lists every kind, in the order [Kind] tries them.
var kinds = []error{
	ErrNotFound, ErrAlreadyExists, ErrInUse, ErrFailedPrecondition,
	ErrInvalidArgument, ErrNoSpace, ErrCorrupt, ErrPermission, ErrUnavailable,
}

// Kind returns the kind err matches with errors.Is, or nil if none. An
// error that matches several (a busy device that is also out of space)
// gives the first of: not found, already exists, in use, failed
// precondition, invalid argument, no space, corrupt, permission,
// unavailable.
func Kind(err error) error {
	for _, k := range kinds {
		if errors.Is(err, k) {
			return k
		}
	}
	return nil
}

// kindError is an error of a kind whose message is its reason alone.
type kindError struct {
	kind   error // a kind, or a sentinel that matches one
	reason error // what Error says; wraps the %w arguments of Newf
	cause  error // matched but not shown; see Wrapf
}

func (e *kindError) Error() string { return e.reason.Error() }

func (e *kindError) Unwrap() []error {
	if e.cause != nil {
		return []error{e.kind, e.reason, e.cause}
	}
	return []error{e.kind, e.reason}
}

// New returns an error that says msg and matches kind with errors.Is. A
// package makes its sentinels with it:
//
//	ErrNotFound = errdefs.New(errdefs.ErrNotFound, "thinpool: device not found")
//
// Each call returns a distinct error, so the sentinel matches itself and,
// through it, the kind.
func New(kind error, msg string) error {
	return &kindError{kind: kind, reason: errors.New(msg)}
}

// Newf returns an error of kind whose message is the formatted reason
// alone, worded where it is raised with the names it is about:
//
//	errdefs.Newf(thinpool.ErrNotFound, "device %q not found", name)
//
// says `device "web" not found` and matches thinpool.ErrNotFound and
// ErrNotFound with errors.Is. kind is a kind or a sentinel that matches
// one. The error also matches every argument given with %w, whose text
// the reason shows.
func Newf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, reason: fmt.Errorf(format, args...)}
}

// Wrapf is Newf for a reason that says all that cause says, and better:
// the error matches cause with errors.Is as well, but its message is the
// reason alone. thinpool.Open uses it for the *fs.PathError of a missing
// pool file: `pool /x does not exist` matches fs.ErrNotExist.
func Wrapf(cause, kind error, format string, args ...any) error {
	return &kindError{kind: kind, reason: fmt.Errorf(format, args...), cause: cause}
}
