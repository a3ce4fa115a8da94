package volumes

import (
	"errors"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/thinpool/thinpool/thinpool"
)

func TestParseImageRef(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"alpine", "alpine:latest"},
		{"alpine:3.20", "alpine:3.20"},
		{"docker.io/library/alpine", "docker.io/library/alpine:latest"},
		{"localhost:5000/app", "localhost:5000/app:latest"},
		{"localhost:5000/app:v2", "localhost:5000/app:v2"},
		{"sha256:0123456789ab", "sha256:0123456789ab"}, // an image imported without a name
	}
	for _, tc := range tests {
		got, err := ParseImageRef(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseImageRef(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "x:", ":y", "UPPER:tag", "a b:c", "x:a/b", "x@sha256:nope"} {
		got, err := ParseImageRef(bad)
		if err == nil {
			t.Errorf("ParseImageRef(%q) = %q, want an error", bad, got)
			continue
		}
		if !errors.Is(err, thinpool.ErrInvalid) {
			t.Errorf("ParseImageRef(%q): %v does not match thinpool.ErrInvalid", bad, err)
		}
		var bn *name.ErrBadName
		if !errors.As(err, &bn) {
			t.Errorf("ParseImageRef(%q): %v does not carry go-containerregistry's reason", bad, err)
		}
	}
}

func TestNotAttached(t *testing.T) {
	err := NotAttached("nothing")
	if !errors.Is(err, ErrNotAttached) || err.Error() != `no attached device or loop device named "nothing"` {
		t.Fatalf("NotAttached: %v", err)
	}
}

// TestReasons: volumes words its errors where it raises them, with no
// package prefix for the CLI to cut, and they still match their kind.
func TestReasons(t *testing.T) {
	_, err := ParseVolumeFlag("bad")
	if !errors.Is(err, thinpool.ErrInvalid) || err.Error() != `-v "bad": want SOURCE:/path[:ro] or /path` {
		t.Fatalf("ParseVolumeFlag: %q", err)
	}
	err = validObjectName("container", "-x")
	if !errors.Is(err, thinpool.ErrInvalid) || err.Error() != `container name "-x": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed` {
		t.Fatalf("validObjectName: %q", err)
	}
	err = NotMounted("/mnt/x")
	if !errors.Is(err, ErrNotAttached) || err.Error() != "nothing of ours is mounted at or named /mnt/x" {
		t.Fatalf("NotMounted: %q", err)
	}
}
