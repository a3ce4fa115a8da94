package volumes

import (
	"errors"
	"testing"

	"github.com/thinpool/thinpool/thinpool"
)

func TestParseVolumeFlagAnonymous(t *testing.T) {
	tests := []struct {
		in   string
		want MountSpec
		bad  bool
	}{
		{in: "/data", want: MountSpec{Type: "volume", Target: "/data"}},
		{in: "vol:/data", want: MountSpec{Type: "volume", Source: "vol", Target: "/data", AutoCreate: true}},
		{in: "/host:/data:ro", want: MountSpec{Type: "bind", Source: "/host", Target: "/data", ReadOnly: true}},
		{in: "data", bad: true},
		{in: "a:b:c:d", bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseVolumeFlag(tc.in)
			if tc.bad {
				if err == nil {
					t.Fatalf("ParseVolumeFlag(%q) = %+v, want an error", tc.in, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseVolumeFlag(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestAutoextendValidate(t *testing.T) {
	for _, a := range []Autoextend{{49, 20}, {101, 20}, {80, 0}, {80, -1}, {80, 1001}} {
		if err := a.Validate(); !errors.Is(err, thinpool.ErrInvalid) {
			t.Errorf("%+v: %v", a, err)
		}
	}
	for _, a := range []Autoextend{{0, 20}, {100, 20}, {50, 1}, {99, 1000}} {
		if err := a.Validate(); err != nil {
			t.Errorf("%+v: %v", a, err)
		}
	}
}
