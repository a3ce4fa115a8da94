package errdefs

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"
)

func TestKinds(t *testing.T) {
	notFound := New(ErrNotFound, "pkg: thing not found")
	busy := New(ErrInUse, "pkg: busy")
	tests := []struct {
		name string
		err  error
		msg  string
		kind error
		is   []error // also matched
	}{
		{"kind itself", ErrCorrupt, "corrupt", ErrCorrupt, nil},
		{"sentinel", notFound, "pkg: thing not found", ErrNotFound, []error{notFound}},
		{"wrapped sentinel", fmt.Errorf("open web: %w", notFound), "open web: pkg: thing not found", ErrNotFound, []error{notFound}},
		{"reason", Newf(notFound, "device %q not found", "web"), `device "web" not found`, ErrNotFound, []error{notFound}},
		{"reason of a kind", Newf(ErrInvalidArgument, "bad size %d", -1), "bad size -1", ErrInvalidArgument, nil},
		{"reason wrapping", Newf(busy, "device %q: %w", "web", fs.ErrExist), `device "web": file already exists`, ErrInUse, []error{busy, fs.ErrExist}},
		{"wrapped reason", fmt.Errorf("attach: %w", Newf(busy, "device %q is mounted", "web")), `attach: device "web" is mounted`, ErrInUse, []error{busy}},
		{"cause", Wrapf(&fs.PathError{Op: "open", Path: "/x", Err: fs.ErrNotExist}, ErrNotFound, "pool %s does not exist", "/x"), "pool /x does not exist", ErrNotFound, []error{fs.ErrNotExist}},
		{"no space", New(ErrNoSpace, "pkg: full"), "pkg: full", ErrNoSpace, nil},
		{"permission", Newf(ErrPermission, "pool %s: permission denied", "/x"), "pool /x: permission denied", ErrPermission, nil},
		{"unavailable", New(ErrUnavailable, "pkg: no daemon"), "pkg: no daemon", ErrUnavailable, nil},
		{"already exists", New(ErrAlreadyExists, "pkg: exists"), "pkg: exists", ErrAlreadyExists, nil},
		{"precondition", New(ErrFailedPrecondition, "pkg: read-only"), "pkg: read-only", ErrFailedPrecondition, nil},
		{"plain", errors.New("boom"), "boom", nil, nil},
		{"nil", nil, "", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err != nil && tc.err.Error() != tc.msg {
				t.Errorf("message %q, want %q", tc.err.Error(), tc.msg)
			}
			if got := Kind(tc.err); got != tc.kind {
				t.Errorf("Kind = %v, want %v", got, tc.kind)
			}
			for _, k := range kinds {
				if errors.Is(tc.err, k) != (k == tc.kind) {
					t.Errorf("errors.Is(err, %v) = %v", k, !(k == tc.kind))
				}
			}
			for _, target := range tc.is {
				if !errors.Is(tc.err, target) {
					t.Errorf("does not match %v", target)
				}
			}
		})
	}
}

// TestSentinelsDistinct: two sentinels of one kind do not match each other.
func TestSentinelsDistinct(t *testing.T) {
	a, b := New(ErrNotFound, "a: not found"), New(ErrNotFound, "b: not found")
	if errors.Is(a, b) || errors.Is(b, a) || errors.Is(Newf(a, "x"), b) {
		t.Fatal("sentinels of one kind match each other")
	}
	if errors.Is(ErrNotFound, a) {
		t.Fatal("the kind matches a sentinel of it")
	}
}
