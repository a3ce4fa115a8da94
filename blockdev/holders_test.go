package blockdev

import "testing"

func TestWatchMountOf(t *testing.T) {
	w := &watch{dirs: []string{"/mnt/c/data", "/mnt/c"}, paths: map[string]string{"/dev/loop3": "/dev/loop3"}}
	for path, want := range map[string]string{
		"/mnt/c/data/x":        "/mnt/c/data",
		"/mnt/c":               "/mnt/c",
		"/mnt/c/etc (deleted)": "/mnt/c",
		"/dev/loop3":           "/dev/loop3",
		"/mnt/cc":              "",
		"/dev/loop30":          "",
	} {
		got, ok := w.mountOf(path)
		if got != want || ok != (want != "") {
			t.Errorf("mountOf(%q) = %q, %v; want %q", path, got, ok, want)
		}
	}
}
