package daemon

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestForwardCancel: a client's cancellation reaches the handler's context
// with the client's signal as the cause, the client still gets the
// handler's answer, and a client that goes away cancels with
// ErrClientGone.
func TestForwardCancel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the daemon socket serves root only")
	}
	causes := make(chan error, 2)
	sock := filepath.Join(t.TempDir(), "sock")
	l, err := Listen(sock, func(ctx context.Context, req Request, stdin, stdout, stderr *os.File) int {
		select {
		case <-ctx.Done():
		case <-time.After(30 * time.Second):
			causes <- errors.New("not cancelled within 30s")
			return 1
		}
		cause := context.Cause(ctx)
		causes <- cause
		var in *Interrupted
		if errors.As(cause, &in) {
			return in.ExitCode()
		}
		return 1
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	devNull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()

	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(100*time.Millisecond, func() { cancel(&Interrupted{Signal: syscall.SIGTERM}) })
	code, err := Forward(ctx, sock, Request{Args: []string{"x"}}, devNull, devNull, devNull)
	if err != nil || code != 143 {
		t.Fatalf("Forward cancelled by SIGTERM = %d, %v; want 143", code, err)
	}
	var in *Interrupted
	if cause := <-causes; !errors.As(cause, &in) || in.Signal != syscall.SIGTERM {
		t.Fatalf("the handler's cause is %v, want SIGTERM", cause)
	}

	// A client that goes away: its connection closes under the request.
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	fd := int(devNull.Fd())
	if _, _, err := c.(*net.UnixConn).WriteMsgUnix([]byte(`{"args":["x"]}`), unix.UnixRights(fd, fd, fd), nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	c.Close()
	if cause := <-causes; !errors.Is(cause, ErrClientGone) {
		t.Fatalf("the handler's cause after the client closed is %v, want ErrClientGone", cause)
	}
}
