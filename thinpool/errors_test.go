package thinpool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/thinpool/thinpool/errdefs"
)

// TestErrorKinds: every sentinel matches its kind in errdefs, and the
// errors worded where they are raised match the sentinel and the kind.
func TestErrorKinds(t *testing.T) {
	tests := []struct {
		err  error
		kind error
	}{
		{ErrNoSpace, errdefs.ErrNoSpace},
		{ErrMetadataFull, errdefs.ErrNoSpace},
		{ErrNotFound, errdefs.ErrNotFound},
		{ErrExists, errdefs.ErrAlreadyExists},
		{ErrReadOnly, errdefs.ErrFailedPrecondition},
		{ErrOutOfRange, errdefs.ErrInvalidArgument},
		{ErrInvalid, errdefs.ErrInvalidArgument},
		{ErrLocked, errdefs.ErrInUse},
		{ErrClosed, errdefs.ErrFailedPrecondition},
		{ErrFailed, errdefs.ErrFailedPrecondition},
		{ErrCorrupt, errdefs.ErrCorrupt},
		{&CorruptionError{Off: -1, What: "x"}, errdefs.ErrCorrupt},
		{invalidf("bad %d", 1), errdefs.ErrInvalidArgument},
	}
	for _, tc := range tests {
		if got := errdefs.Kind(tc.err); got != tc.kind {
			t.Errorf("%v: kind %v, want %v", tc.err, got, tc.kind)
		}
	}
	if !errors.Is(&CorruptionError{What: "x"}, ErrCorrupt) {
		t.Error("CorruptionError does not match ErrCorrupt")
	}
}

// TestErrorMessages: errors about a named device or pool name it in their
// own words, once, and still match their sentinel.
func TestErrorMessages(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pool.img")
	p, err := Create(path, Options{DataSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.CreateThin("web", 1<<20, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Snapshot("web", "ro", true); err != nil {
		t.Fatal(err)
	}
	ro, err := p.Device("ro")
	if err != nil {
		t.Fatal(err)
	}
	web, err := p.Device("web")
	if err != nil {
		t.Fatal(err)
	}
	_, errDevice := p.Device("nope")
	_, errCreate := p.CreateThin("web", 1<<20, nil)
	_, errSnap := p.Snapshot("nope", "s", false)
	_, errWrite := ro.WriteAt([]byte{1}, 0)
	_, errRange := web.WriteAt([]byte{1}, 1<<20)
	_, errPool := Create(path, Options{DataSize: 64 << 20})
	_, errOpen := Open(path)
	_, errMissing := Open(filepath.Join(dir, "none.img"))
	tests := []struct {
		err      error
		sentinel error
		msg      string
	}{
		{errDevice, ErrNotFound, `device "nope" not found`},
		{p.Delete("nope"), ErrNotFound, `device "nope" not found`},
		{p.Rename("web", "ro"), ErrExists, `device "ro" already exists`},
		{errCreate, ErrExists, `device "web" already exists`},
		{errSnap, ErrNotFound, `origin "nope" not found`},
		{p.Resize("ro", 2<<20), ErrReadOnly, `device "ro" is read-only`},
		{errWrite, ErrReadOnly, `device "ro" is read-only`},
		{errRange, ErrOutOfRange, `device "web" of 1048576 bytes: 1048576+1 is out of range`},
		{p.Resize("web", 1000), ErrInvalid, fmt.Sprintf("size 1000 is not a positive multiple of 512 bytes up to %d", int64(MaxDeviceSize))},
		{errPool, ErrExists, "pool " + path + " already exists"},
		{errOpen, ErrLocked, "pool " + path + " is in use by pid " + strconv.Itoa(os.Getpid())},
		{errMissing, os.ErrNotExist, "pool " + filepath.Join(dir, "none.img") + " does not exist"},
	}
	for _, tc := range tests {
		if tc.err == nil || tc.err.Error() != tc.msg || !errors.Is(tc.err, tc.sentinel) || errdefs.Kind(tc.err) == nil {
			t.Errorf("error %v, want %q matching %v and a kind", tc.err, tc.msg, tc.sentinel)
		}
	}
	if !errors.Is(errMissing, errdefs.ErrNotFound) {
		t.Errorf("%v does not match errdefs.ErrNotFound", errMissing)
	}
}
