package daemon

import (
	"errors"
	"testing"

	"github.com/thinpool/thinpool/volumes"
)

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
	if !errors.Is(err, volumes.ErrInUse) {
		t.Fatal("a BusyError does not match volumes.ErrInUse")
	}
}
