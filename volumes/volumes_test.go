package volumes

import (
	"errors"
	"testing"
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

func TestBusyError(t *testing.T) {
	err := error(&BusyError{Holders: []Holder{
		{PID: 10, Comm: "sh", Mount: "/mnt/a", How: "cwd"},
		{PID: 11, Comm: "vim", Mount: "/mnt/a", How: "fd"},
		{PID: 12, Comm: "sleep", Mount: "/mnt/b", How: "root"},
	}})
	want := "/mnt/a is busy: held by pid 10 (sh, cwd), pid 11 (vim, fd); /mnt/b is busy: held by pid 12 (sleep, root)"
	if err.Error() != want {
		t.Fatalf("got  %q\nwant %q", err.Error(), want)
	}
	if !errors.Is(err, ErrInUse) {
		t.Fatal("a BusyError does not match ErrInUse")
	}
}
