package blockdev

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Device is the part of a thin device that blockdev serves over FUSE.
type Device interface {
	io.ReaderAt
	io.WriterAt
	Size() int64
	Sync() error
	// WriteZeroes makes [off, off+n) read as zeros, unmapping what it can.
	WriteZeroes(off, n int64) error
}

// MappedSizer is an optional interface of a Device. MappedBytes reports how
// many bytes of the device hold data; the served file reports it as
// st_blocks, so du(1) shows the real usage. It must be cheap: it is called on
// every getattr. Without it st_blocks covers the whole size.
type MappedSizer interface {
	MappedBytes() int64
}

// Options configure a Server. The zero value is usable.
type Options struct {
	// Errno converts a Device error to the errno the kernel sees. It may
	// return 0 to mean "use the default". Nil means DefaultErrno.
	Errno func(error) syscall.Errno
	// Logf receives one line for the first I/O error of each kind (device,
	// operation, errno), and go-fuse's own diagnostics. Nil discards them.
	Logf func(format string, args ...any)
	// BlockSize is the st_blksize of the files (the preferred I/O size that
	// cp and friends use) and the f_bsize of the filesystem. It does not
	// change a loop device's limits: on Linux 6.18 a loop device over a
	// served file reports 512-byte discard granularity either way; set
	// LoopOptions.BlockSize for its logical block size. Zero means 4096.
	BlockSize uint32
	// CloseTimeout bounds how long Close waits for the unmount and for the
	// serving goroutines before it aborts the connection. Zero means 10s.
	CloseTimeout time.Duration
	// Debug logs every FUSE request and reply through Logf.
	Debug bool
}

func (o Options) withDefaults() Options {
	if o.Errno == nil {
		o.Errno = DefaultErrno
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.BlockSize == 0 {
		o.BlockSize = 4096
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = 10 * time.Second
	}
	return o
}

// Server serves devices as files in one FUSE mount. It is safe for
// concurrent use.
type Server struct {
	dir  string // absolute mount point
	opts Options
	fsrv *fuse.Server
	root *rootNode
	// conn is the connection's number under /sys/fs/fuse/connections: the
	// kernel dev_t of the mount (MKDEV(major, minor) = major<<20 | minor).
	conn uint64
	done chan struct{} // closed when go-fuse's serving loops have exited

	mu     sync.Mutex
	files  map[string]*thinFile // guarded by mu
	closed bool                 // guarded by mu

	logged sync.Map // errKey -> struct{}: kinds of I/O error already logged
}

// errKey is one kind of I/O error, logged once.
type errKey struct {
	name, op string
	errno    syscall.Errno
}

// Attribute and entry timeouts. Sizes only change through Server.Resized,
// which invalidates the kernel's copy, so these only bound staleness after a
// lost notification.
const (
	attrTimeout  = time.Second
	entryTimeout = time.Second
)

// Serve mounts a FUSE filesystem at dir, creating dir if it is missing, and
// serves it until Close. The root directory is empty until Add.
func Serve(dir string, opts Options) (*Server, error) {
	opts = opts.withDefaults()
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("blockdev: serve %q: %w", dir, err)
	}
	if mounted, alive := probeMount(abs); mounted {
		if alive {
			return nil, fmt.Errorf("serve %q: already served: %w", abs, ErrBusy)
		}
		return nil, fmt.Errorf("serve %q: %w", abs, ErrStale)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		if errors.Is(err, syscall.ENOTCONN) {
			return nil, fmt.Errorf("serve %q: %w: %w", abs, ErrStale, err)
		}
		return nil, fmt.Errorf("blockdev: serve: %w", err)
	}
	s := &Server{dir: abs, opts: opts, files: map[string]*thinFile{}, done: make(chan struct{})}
	s.root = &rootNode{srv: s}
	attr, entry, neg := attrTimeout, entryTimeout, time.Duration(0)
	logger := log.New(logfWriter(opts.Logf), "blockdev: fuse: ", 0)
	fopts := &fs.Options{
		MountOptions: fuse.MountOptions{
			DirectMount:       true,
			DirectMountStrict: true,
			AllowOther:        false,
			MaxWrite:          1 << 20,
			MaxBackground:     64,
			DisableSplice:     true,
			DisableXAttrs:     true,
			ExtraCapabilities: fuse.CAP_ASYNC_DIO,
			FsName:            "thinpool",
			Name:              "thinpool",
			Debug:             opts.Debug,
			Logger:            logger,
		},
		EntryTimeout:    &entry,
		AttrTimeout:     &attr,
		NegativeTimeout: &neg,
		Logger:          logger,
	}
	fsrv, err := fs.Mount(abs, s.root, fopts)
	if err != nil {
		err = fmt.Errorf("blockdev: serve %q: mount: %w", abs, err)
		if isMountPoint(abs) { // mounted, but the first requests failed
			err = errors.Join(err, unix.Unmount(abs, unix.MNT_DETACH))
		}
		return nil, err
	}
	s.fsrv = fsrv
	go func() {
		fsrv.Wait()
		close(s.done)
	}()
	var st unix.Stat_t
	if err := unix.Stat(abs, &st); err != nil {
		err = fmt.Errorf("blockdev: serve %q: stat: %w", abs, err)
		return nil, errors.Join(err, unix.Unmount(abs, unix.MNT_DETACH))
	}
	s.conn = uint64(unix.Major(st.Dev))<<20 | uint64(unix.Minor(st.Dev))
	return s, nil
}

// logfWriter adapts Options.Logf to an io.Writer for log.Logger.
type logfWriter func(format string, args ...any)

func (w logfWriter) Write(p []byte) (int, error) {
	w("%s", strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// Dir returns the mount point.
func (s *Server) Dir() string { return s.dir }

// Done returns a channel that is closed when the FUSE connection is gone:
// after Close, or when the connection was aborted.
func (s *Server) Done() <-chan struct{} { return s.done }

// validName reports whether name can be a file name in the root directory.
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && name != probeName &&
		len(name) <= 255 && !strings.ContainsAny(name, "/\x00")
}

// Add serves d as the file name and returns the file's path. A read-only
// file refuses opens for writing with EROFS and never calls d's write
// methods.
func (s *Server) Add(name string, d Device, readOnly bool) (path string, err error) {
	if !validName(name) || d == nil {
		return "", fmt.Errorf("add %q: %w", name, ErrInvalid)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return "", ErrClosed
	}
	if _, ok := s.files[name]; ok {
		s.mu.Unlock()
		return "", fmt.Errorf("add %q: %w", name, ErrExists)
	}
	f := &thinFile{srv: s, name: name, dev: d, readOnly: readOnly, mtime: time.Now()}
	f.released = sync.NewCond(&f.mu)
	ch := s.root.NewPersistentInode(context.Background(), f, fs.StableAttr{Mode: syscall.S_IFREG})
	if !s.root.AddChild(name, ch, false) {
		s.mu.Unlock()
		ch.ForgetPersistent()
		return "", fmt.Errorf("add %q: %w", name, ErrExists)
	}
	s.files[name] = f
	s.mu.Unlock()
	// The kernel may hold a negative dentry from before; drop it. This
	// writes to /dev/fuse, so it runs without s.mu held.
	s.root.NotifyEntry(name)
	return filepath.Join(s.dir, name), nil
}

// releaseWait is how long Remove waits for the kernel's RELEASE of a file
// that was just closed: the kernel sends it asynchronously after the last
// close (for example after a loop device was detached).
const releaseWait = time.Second

// Remove stops serving name. It fails with ErrBusy while the file is open,
// which is the case as long as a loop device is attached to it.
func (s *Server) Remove(name string) error {
	s.mu.Lock()
	f, ok := s.files[name]
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if !ok {
		return fmt.Errorf("remove %q: %w", name, ErrNotFound)
	}
	if err := f.retire(releaseWait); err != nil {
		return err
	}
	s.mu.Lock()
	if s.files[name] != f { // a concurrent Remove won
		s.mu.Unlock()
		return fmt.Errorf("remove %q: %w", name, ErrNotFound)
	}
	delete(s.files, name)
	s.root.RmChild(name)
	s.mu.Unlock()
	// These write to /dev/fuse, so they run without s.mu held. The kernel
	// drops its dentry; go-fuse forgets the inode once the kernel has.
	s.root.NotifyDelete(name, &f.Inode)
	f.ForgetPersistent()
	return nil
}

// Path returns the path of the file that serves name, and whether name is
// served.
func (s *Server) Path(name string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.files[name]
	if !ok {
		return "", false
	}
	return filepath.Join(s.dir, name), true
}

// Names returns the served names, sorted.
func (s *Server) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.files))
	for n := range s.files {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// WriteErr returns the first write to the file name that failed since it
// was added (B5), or nil if none did; served is false if name is not
// served. A filesystem on the device may have lost data after such an
// error even though its own calls succeeded (writeback is asynchronous):
// check WriteErr after syncing the filesystem (syncfs) and after
// unmounting it, before Remove, which forgets it.
func (s *Server) WriteErr(name string) (werr *WriteError, served bool) {
	s.mu.Lock()
	f, ok := s.files[name]
	s.mu.Unlock()
	if !ok {
		return nil, false
	}
	return f.werr.Load(), true
}

// Resized makes the kernel forget the cached size of name's file and read
// Device.Size() again. Call it after the device was resized, then
// SetCapacity on its loop device.
func (s *Server) Resized(name string) error {
	s.mu.Lock()
	f, ok := s.files[name]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("resized %q: %w", name, ErrNotFound)
	}
	// Offset -1 invalidates the attributes only, not cached data.
	if errno := f.NotifyContent(-1, 0); errno != 0 && errno != syscall.ENOENT {
		return fmt.Errorf("blockdev: resized %q: notify: %w", name, errno)
	}
	// A stat makes the kernel fetch the new size now, so that a following
	// LOOP_SET_CAPACITY, which reads the cached size, sees it.
	if _, err := os.Stat(filepath.Join(s.dir, name)); err != nil {
		return fmt.Errorf("blockdev: resized %q: %w", name, err)
	}
	return nil
}

// Close unmounts the filesystem and stops serving. It fails with an error
// matching ErrBusy, and keeps serving, while any file is open (a loop device
// is still attached): detach loop devices first. If the unmount or the
// serving goroutines do not finish within Options.CloseTimeout, Close aborts
// the FUSE connection, unmounts lazily and returns an error matching
// ErrAborted. Close on a closed Server returns nil.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()

	err := s.unmount()
	switch {
	case errors.Is(err, ErrBusy):
		if open := s.openNames(); len(open) > 0 {
			return fmt.Errorf("blockdev: close: open device files: %s: %w", strings.Join(open, ", "), err)
		}
		return fmt.Errorf("blockdev: close: %w", err)
	case err != nil:
		return err
	}
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	select {
	case <-s.done:
		return nil
	case <-time.After(s.opts.CloseTimeout):
		// Unmounted, but requests are still running in the Device.
		// Abort so the kernel stops waiting for them; the goroutines
		// end when the Device returns.
		err := s.Abort()
		return errors.Join(fmt.Errorf("close %s: requests still in the Device after %v: %w",
			s.dir, s.opts.CloseTimeout, ErrAborted), err)
	}
}

// unmount runs umount(dir) with a deadline. After the deadline it aborts
// the connection, which makes a stuck unmount return, and falls back to a
// lazy unmount. It returns an error matching ErrBusy, without waiting, when
// a file is open.
func (s *Server) unmount() error {
	res := make(chan error, 1)
	go func() { res <- unix.Unmount(s.dir, 0) }()
	select {
	case err := <-res:
		if err == nil || errors.Is(err, syscall.EINVAL) { // EINVAL: not mounted any more
			return nil
		}
		return markBusy(fmt.Errorf("unmount %s: %w", s.dir, err))
	case <-time.After(s.opts.CloseTimeout):
		return s.forceClose()
	}
}

// forceClose aborts the connection and detaches the mount lazily.
func (s *Server) forceClose() error {
	s.opts.Logf("blockdev: %s: aborting FUSE connection %d", s.dir, s.conn)
	err := s.Abort()
	if uerr := unix.Unmount(s.dir, unix.MNT_DETACH); uerr != nil && !errors.Is(uerr, syscall.EINVAL) {
		err = errors.Join(err, fmt.Errorf("blockdev: lazy unmount %s: %w", s.dir, uerr))
	}
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return errors.Join(fmt.Errorf("close %s: %w", s.dir, ErrAborted), err)
}

// fusectlDir is where the fusectl filesystem lists FUSE connections.
// REF: https://docs.kernel.org/filesystems/fuse.html#control-filesystem
const fusectlDir = "/sys/fs/fuse/connections"

// Abort aborts the FUSE connection, as if the serving process had died:
// every pending and future request on the files fails (EIO, ENOTCONN), and
// the serving goroutines exit once their Device calls return. The mount
// stays until Close or Cleanup. It mounts fusectl on
// /sys/fs/fuse/connections if it is not mounted. Aborting a connection that
// is gone succeeds.
func (s *Server) Abort() error {
	return abortConn(s.conn)
}

func abortConn(conn uint64) error {
	p := filepath.Join(fusectlDir, strconv.FormatUint(conn, 10), "abort")
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		// fusectl is not mounted (systemd mounts it; containers often
		// do not). Mounting it twice fails with EBUSY, which is fine.
		_ = unix.Mount("fusectl", fusectlDir, "fusectl", 0, "")
	}
	if err := os.WriteFile(p, []byte("1"), 0); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // the connection is gone already
		}
		return fmt.Errorf("blockdev: abort FUSE connection %d: %w", conn, err)
	}
	return nil
}

// openNames returns the names of files with open handles.
func (s *Server) openNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for n, f := range s.files {
		f.mu.Lock()
		if f.opens > 0 {
			names = append(names, n)
		}
		f.mu.Unlock()
	}
	slices.Sort(names)
	return names
}

// errno converts a Device error for the kernel and logs the first error of
// each kind.
func (s *Server) errno(name, op string, err error) syscall.Errno {
	e := s.opts.Errno(err)
	if e == 0 {
		e = DefaultErrno(err)
	}
	if _, dup := s.logged.LoadOrStore(errKey{name, op, e}, struct{}{}); !dup {
		s.opts.Logf("blockdev: %s: %s: %v (%v; further %s errors of this kind are not logged)",
			name, op, err, e, op)
	}
	return e
}

// rootNode is the root directory. Its children are the thinFiles.
type rootNode struct {
	fs.Inode
	srv *Server
}

var _ = (fs.NodeStatfser)((*rootNode)(nil))
var _ = (fs.NodeGetattrer)((*rootNode)(nil))

func (r *rootNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o700
	out.Nlink = 2
	out.SetTimeout(attrTimeout)
	return 0
}

// Statfs reports the served devices' total size as used space. The loop
// driver calls statfs on its backing file when it sets up discard (older
// kernels took f_bsize as the discard granularity), so it must succeed.
func (r *rootNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	bs := uint64(r.srv.opts.BlockSize)
	r.srv.mu.Lock()
	var total uint64
	for _, f := range r.srv.files {
		total += (uint64(f.dev.Size()) + bs - 1) / bs
	}
	out.Files = uint64(len(r.srv.files))
	r.srv.mu.Unlock()
	out.Blocks = total
	out.Bsize = uint32(bs)
	out.Frsize = uint32(bs)
	out.NameLen = 255
	return 0
}

// thinFile is one served Device.
type thinFile struct {
	fs.Inode
	srv      *Server
	name     string
	dev      Device
	readOnly bool
	mtime    time.Time // when it was added; constant, so the kernel keeps its page cache

	// dirty is set before each write or zeroing and cleared just before a
	// Sync, so that Flush can skip Sync when nothing was written (B4).
	dirty atomic.Bool
	// werr is the first write, zeroing or sync that failed since Add (B5);
	// nil while every one succeeded. Set once.
	werr atomic.Pointer[WriteError]

	mu       sync.Mutex
	opens    int        // open handles; guarded by mu
	retired  bool       // set by Remove: Open fails with ENOENT; guarded by mu
	released *sync.Cond // signalled when opens drops; uses mu
}

// handle is one open of a thinFile.
type handle struct {
	writable bool
}

var _ = (fs.NodeOpener)((*thinFile)(nil))
var _ = (fs.NodeReleaser)((*thinFile)(nil))
var _ = (fs.NodeGetattrer)((*thinFile)(nil))
var _ = (fs.NodeSetattrer)((*thinFile)(nil))
var _ = (fs.NodeReader)((*thinFile)(nil))
var _ = (fs.NodeWriter)((*thinFile)(nil))
var _ = (fs.NodeFsyncer)((*thinFile)(nil))
var _ = (fs.NodeFlusher)((*thinFile)(nil))
var _ = (fs.NodeAllocater)((*thinFile)(nil))

// retire marks the file removed if it has no open handles, waiting up to
// wait for handles that are being released (B2).
func (f *thinFile) retire(wait time.Duration) error {
	deadline := time.Now().Add(wait)
	timer := time.AfterFunc(wait, func() {
		f.mu.Lock()
		f.released.Broadcast()
		f.mu.Unlock()
	})
	defer timer.Stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.opens > 0 && time.Now().Before(deadline) {
		f.released.Wait()
	}
	if f.opens > 0 {
		return fmt.Errorf("remove %q: %d open handle(s): %w", f.name, f.opens, ErrBusy)
	}
	f.retired = true
	return nil
}

func (f *thinFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	writable := flags&syscall.O_ACCMODE != syscall.O_RDONLY
	if writable && f.readOnly {
		return nil, 0, syscall.EROFS
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.retired {
		return nil, 0, syscall.ENOENT
	}
	f.opens++
	var fuseFlags uint32
	if !writable {
		// Nothing to flush on close.
		fuseFlags |= fuse.FOPEN_NOFLUSH
	}
	return &handle{writable: writable}, fuseFlags, 0
}

func (f *thinFile) Release(ctx context.Context, fh fs.FileHandle) syscall.Errno {
	f.mu.Lock()
	f.opens--
	f.released.Broadcast()
	f.mu.Unlock()
	return 0
}

func (f *thinFile) fillAttr(out *fuse.Attr) {
	size := f.dev.Size()
	out.Mode = syscall.S_IFREG | 0o600
	if f.readOnly {
		out.Mode = syscall.S_IFREG | 0o400
	}
	out.Nlink = 1
	out.Size = uint64(size)
	used := size
	if m, ok := f.dev.(MappedSizer); ok {
		used = m.MappedBytes()
	}
	out.Blocks = uint64(used+511) / 512
	out.Blksize = f.srv.opts.BlockSize
	out.SetTimes(nil, &f.mtime, &f.mtime)
}

func (f *thinFile) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.fillAttr(&out.Attr)
	out.SetTimeout(attrTimeout)
	return 0
}

// Setattr refuses size changes (B1) and owner or mode changes; it accepts
// and ignores time changes, so touch(1) works.
func (f *thinFile) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok && sz != uint64(f.dev.Size()) {
		return syscall.EINVAL
	}
	_, modeSet := in.GetMode()
	_, uidSet := in.GetUID()
	_, gidSet := in.GetGID()
	if modeSet || uidSet || gidSet {
		return syscall.EPERM
	}
	f.fillAttr(&out.Attr)
	out.SetTimeout(attrTimeout)
	return 0
}

// Read reads straight into the request buffer.
func (f *thinFile) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	size := f.dev.Size()
	if off < 0 {
		return nil, syscall.EINVAL
	}
	if off >= size {
		return fuse.ReadResultData(nil), 0
	}
	n := min(int64(len(dest)), size-off)
	got, err := f.dev.ReadAt(dest[:n], off)
	if err != nil && !(errors.Is(err, io.EOF) && got > 0) {
		if errors.Is(err, io.EOF) {
			return fuse.ReadResultData(nil), 0
		}
		return nil, f.srv.errno(f.name, "read", err)
	}
	return fuse.ReadResultData(dest[:got]), 0
}

// Write writes what fits below the device's end; a write that starts at or
// past the end fails with EFBIG.
func (f *thinFile) Write(ctx context.Context, fh fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	if f.readOnly {
		return 0, syscall.EROFS
	}
	size := f.dev.Size()
	if off < 0 {
		return 0, syscall.EINVAL
	}
	if len(data) == 0 {
		return 0, 0
	}
	if off >= size {
		return 0, syscall.EFBIG
	}
	n := min(int64(len(data)), size-off)
	f.dirty.Store(true)
	w, err := f.dev.WriteAt(data[:n], off)
	if err != nil {
		return 0, f.failed("write", off, err)
	}
	return uint32(w), 0
}

// failed converts a Device error from a write, zeroing or sync for the
// kernel and remembers the first one (B5).
func (f *thinFile) failed(op string, off int64, err error) syscall.Errno {
	e := f.srv.errno(f.name, op, err)
	f.werr.CompareAndSwap(nil, &WriteError{Name: f.name, Op: op, Off: off, Errno: e, Err: err})
	return e
}

// sync calls Device.Sync, keeping the dirty mark if it fails.
func (f *thinFile) sync(op string) syscall.Errno {
	f.dirty.Store(false)
	if err := f.dev.Sync(); err != nil {
		f.dirty.Store(true)
		return f.failed(op, 0, err)
	}
	return 0
}

func (f *thinFile) Fsync(ctx context.Context, fh fs.FileHandle, flags uint32) syscall.Errno {
	return f.sync("fsync")
}

// Flush runs on every close(2) of a writable handle; it syncs only when
// something was written since the last sync.
func (f *thinFile) Flush(ctx context.Context, fh fs.FileHandle) syscall.Errno {
	if h, ok := fh.(*handle); ok && !h.writable {
		return 0
	}
	if !f.dirty.Load() {
		return 0
	}
	return f.sync("flush")
}

// fallocate(2) mode bits. REF: https://man7.org/linux/man-pages/man2/fallocate.2.html
const (
	fallocKeepSize    = 0x01 // FALLOC_FL_KEEP_SIZE
	fallocPunchHole   = 0x02 // FALLOC_FL_PUNCH_HOLE: loop's DISCARD, WRITE_ZEROES without NOUNMAP
	fallocZeroRange   = 0x10 // FALLOC_FL_ZERO_RANGE: loop's WRITE_ZEROES with NOUNMAP
	fallocWriteZeroes = 0x80 // FALLOC_FL_WRITE_ZEROES (Linux 6.17)
)

// Allocate maps the fallocate modes a loop device sends to WriteZeroes.
// Zero-range is treated like a hole punch, "unmap, reads return zeros":
// mkfs.ext4 zero-ranges its journal, and a thin device should not pay for
// it. Plain allocation is a no-op: a thin device does not reserve space.
func (f *thinFile) Allocate(ctx context.Context, fh fs.FileHandle, off, length uint64, mode uint32) syscall.Errno {
	if f.readOnly {
		return syscall.EROFS
	}
	size := uint64(f.dev.Size())
	end := off + length
	if end < off || off > 1<<62 || length > 1<<62 {
		return syscall.EINVAL
	}
	keep := mode&fallocKeepSize != 0
	if end > size && !keep {
		return syscall.EFBIG // the file cannot grow
	}
	switch mode &^ fallocKeepSize {
	case 0:
		return 0
	case fallocPunchHole, fallocZeroRange, fallocWriteZeroes:
	default:
		return syscall.EOPNOTSUPP
	}
	end = min(end, size)
	if off >= end {
		return 0
	}
	f.dirty.Store(true)
	if err := f.dev.WriteZeroes(int64(off), int64(end-off)); err != nil {
		return f.failed("zero", int64(off), err)
	}
	return 0
}
