package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/thinpool/thinpool/errdefs"
	"github.com/thinpool/thinpool/thinpool"
)

// importSource is the image being imported: a file or block device read
// with ReadAt, or a stream read in order.
type importSource struct {
	name string    // for messages: the path, or "standard input"
	f    *os.File  // regular file or block device; nil for a stream
	r    io.Reader // the stream when f is nil
	c    io.Closer // what close closes, if anything
	size int64     // -1 if unknown (a stream)
	// sparse is set when f is a regular file, whose holes SEEK_DATA and
	// SEEK_HOLE find without reading them.
	sparse bool
}

func (a *app) openImportSource(path string) (*importSource, error) {
	if path == "-" {
		return &importSource{name: "standard input", r: a.in, size: -1}, nil
	}
	f, err := os.Open(a.abs(path))
	if err != nil {
		return nil, err
	}
	s := &importSource{name: path, f: f, c: f, size: -1}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	switch m := fi.Mode(); {
	case m.IsRegular():
		s.size, s.sparse = fi.Size(), true
	case m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0: // block device
		if s.size, err = f.Seek(0, io.SeekEnd); err != nil {
			f.Close()
			return nil, fmt.Errorf("size of %s: %w", path, err)
		}
	case m.IsDir():
		f.Close()
		return nil, errdefs.Newf(errdefs.ErrInvalidArgument, "%s is a directory", path)
	default: // pipe, character device: read it in order
		s.f, s.r = nil, f
	}
	return s, nil
}

func (s *importSource) close() {
	if s.c != nil {
		s.c.Close()
	}
}

// dataRegion returns the next region of data at or after off, [d, h), read
// with SEEK_DATA and SEEK_HOLE; d = h = size when only a hole is left. If the
// file system cannot tell, it reports everything as data from off.
func (s *importSource) dataRegion(off int64) (d, h int64) {
	d, err := s.f.Seek(off, unix.SEEK_DATA)
	if errors.Is(err, syscall.ENXIO) {
		return s.size, s.size
	}
	if err != nil {
		s.sparse = false
		return off, s.size
	}
	if h, err = s.f.Seek(d, unix.SEEK_HOLE); err != nil {
		h = s.size
	}
	return min(d, s.size), min(h, s.size)
}

// importer writes an image into a device. Runs of data are written with
// WriteAt; runs of zeros are merged and cleared with WriteZeroes, which
// unmaps whole blocks and costs nothing where nothing is mapped.
type importer struct {
	t *thinpool.Thin
	g int64 // granule in which zeros are found
	// [zlo, zhi) is the run of zeros not yet cleared; empty when equal.
	zlo, zhi int64
	read     int64 // bytes read from the source
	written  int64 // bytes of data written
	same     int64 // bytes skipped because the device held them already
	unsynced int64 // bytes written since the last commit
	// compare is set when the device existed: granules it already holds are
	// not written, so blocks it shares with snapshots stay shared.
	compare bool
	cur     []byte // the device's current contents, when compare
}

func (im *importer) zero(lo, hi int64) error {
	if lo == im.zhi && im.zlo < im.zhi {
		im.zhi = hi
		return nil
	}
	if err := im.flush(); err != nil {
		return err
	}
	im.zlo, im.zhi = lo, hi
	return nil
}

// flush clears the pending run of zeros.
func (im *importer) flush() error {
	if im.zhi <= im.zlo {
		return nil
	}
	lo, hi := im.zlo, im.zhi
	im.zlo, im.zhi = 0, 0
	return im.t.WriteZeroes(lo, hi-lo)
}

// chunk imports b, read from offset off of the image; off is a multiple of
// the granule.
func (im *importer) chunk(b []byte, off int64) error {
	im.read += int64(len(b))
	return zeroRuns(b, int(im.g), func(lo, hi int, zero bool) error {
		if zero {
			return im.zero(off+int64(lo), off+int64(hi))
		}
		if err := im.flush(); err != nil {
			return err
		}
		return im.data(b[lo:hi], off+int64(lo))
	})
}

// data writes a run of non-zero data at off (a multiple of the granule),
// skipping the granules the device holds already when comparing.
func (im *importer) data(b []byte, off int64) error {
	if !im.compare {
		return im.write(b, off)
	}
	if cap(im.cur) < len(b) {
		im.cur = make([]byte, len(b))
	}
	cur := im.cur[:len(b)]
	if _, err := im.t.ReadAt(cur, off); err != nil {
		return err
	}
	start := -1 // start of the run of differing granules
	for i := 0; i <= len(b); i += int(im.g) {
		j := min(i+int(im.g), len(b))
		differs := i < len(b) && !bytes.Equal(b[i:j], cur[i:j])
		switch {
		case differs && start < 0:
			start = i
		case !differs && start >= 0:
			if err := im.write(b[start:i], off+int64(start)); err != nil {
				return err
			}
			start = -1
		}
		if i < len(b) && !differs {
			im.same += int64(j - i)
		}
	}
	return nil
}

func (im *importer) write(b []byte, off int64) error {
	if _, err := im.t.WriteAt(b, off); err != nil {
		return err
	}
	im.written += int64(len(b))
	im.unsynced += int64(len(b))
	if im.unsynced >= importSyncBytes {
		im.unsynced = 0
		return im.t.Sync()
	}
	return nil
}

// importFile copies a file or block device of s.size bytes. It stops
// between two chunks when ctx ends.
func (im *importer) importFile(ctx context.Context, s *importSource, prog *progress) error {
	buf := make([]byte, xferChunk)
	var dataEnd int64 // end of the current data region, when s.sparse
	for off := int64(0); off < s.size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		if s.sparse && off >= dataEnd {
			var d int64
			d, dataEnd = s.dataRegion(off)
			hole := alignDown(d, im.g)
			if d >= s.size {
				hole = s.size
			}
			if hole > off {
				if err := im.zero(off, hole); err != nil {
					return err
				}
				off = hole
				prog.update(off)
				continue
			}
			if dataEnd <= off { // cannot happen; read on rather than spin
				dataEnd = s.size
			}
		}
		end := s.size
		if s.sparse {
			end = min(s.size, roundUp(dataEnd, im.g))
		}
		n := min(xferChunk, end-off)
		if _, err := s.f.ReadAt(buf[:n], off); err != nil {
			return fmt.Errorf("read %s at %d: %w", s.name, off, err)
		}
		if err := im.chunk(buf[:n], off); err != nil {
			return err
		}
		off += n
		prog.update(off)
	}
	return nil
}

// importStream copies a stream in order; it must fit in the device. It
// stops between two chunks when ctx ends (a read that waits for the stream
// still waits).
func (im *importer) importStream(ctx context.Context, s *importSource, prog *progress) error {
	buf := make([]byte, xferChunk)
	size := im.t.Size()
	for off := int64(0); ; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := io.ReadFull(s.r, buf)
		if n > 0 {
			if off+int64(n) > size {
				return errdefs.Newf(errdefs.ErrInvalidArgument, "%s is larger than the device (%s)", s.name, formatSize(size))
			}
			if err := im.chunk(buf[:n], off); err != nil {
				return err
			}
			off += int64(n)
			prog.update(off)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", s.name, err)
		}
	}
}

// importResult is the JSON of 'device import'. Sizes are in bytes.
type importResult struct {
	Device       string  `json:"device"`
	Created      bool    `json:"created"`
	Size         int64   `json:"size"`      // bytes of the image
	Read         int64   `json:"read"`      // bytes read (holes of a sparse file are not read)
	Written      int64   `json:"written"`   // bytes of data (not zeros) written
	Unchanged    int64   `json:"unchanged"` // bytes an existing device held already (not written)
	MappedBlocks uint64  `json:"mappedBlocks"`
	BlockSize    int64   `json:"blockSize"`
	Seconds      float64 `json:"seconds"`
}

// deviceImportOptions are the arguments and flags of 'device import'.
type deviceImportOptions struct {
	name string
	file string // or - for standard input
	size string // of a device it creates
}

func (a *app) newDeviceImportCmd() *cobra.Command {
	o := &deviceImportOptions{}
	cmd := &cobra.Command{
		Use:   "import NAME FILE|-",
		Short: "Write a raw disk image into a device, creating it if needed",
		Long: `Write a raw disk image (a file, a block device, or - for standard input)
into a thin device from offset 0.

If the device does not exist it is created with the image's size, rounded up
to 512 bytes, or with --size. If it exists the image must fit, and the whole
image range is overwritten. Blocks of the image that are all zeros, and the
holes of a sparse file, are not written but unmapped, so a sparse image stays
sparse in the pool. Into an existing device, data the device already holds
is compared and not written again, so blocks it shares with its snapshots
stay shared and only what changed costs new blocks. Standard input has no
known size: import it into an existing device, or give --size.

Ctrl-C (or SIGTERM) stops the import at the next chunk, also when it runs in
the pool daemon: a device it created is removed, and it exits 130.`,
		Example: `  thinctl device import web web.img
  xz -dc disk.img.xz | thinctl device import vm1 - --size 20G`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: a.completeNames("device", 1, cobra.ShellCompDirectiveDefault),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name, o.file = args[0], args[1]
			return a.runDeviceImport(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.size, "size", "", "size of the new device (default: the image's size); "+sizeHelp)
	return cmd
}

func (a *app) runDeviceImport(ctx context.Context, o *deviceImportOptions) error {
	var newSize int64
	if o.size != "" {
		n, err := parseSize(o.size)
		if err != nil {
			return err
		}
		if n <= 0 {
			return errdefs.Newf(errdefs.ErrInvalidArgument, "device size must be more than 0")
		}
		newSize = roundUp(n, thinpool.SectorSize)
	}
	src, err := a.openImportSource(o.file)
	if err != nil {
		return err
	}
	defer src.close()
	ctx, stop := a.interruptible(ctx)
	defer stop()
	return a.withPool(func(p *thinpool.Pool) error {
		return a.importImage(ctx, p, o.name, src, newSize)
	})
}

// importTarget returns the device to import src into, creating it (with
// newSize bytes if not 0) when it does not exist.
func (a *app) importTarget(p *thinpool.Pool, name string, src *importSource, newSize int64) (t *thinpool.Thin, created bool, err error) {
	t, err = p.Device(name)
	switch {
	case err == nil:
		i := t.Info()
		switch {
		case newSize != 0:
			return nil, false, errdefs.Newf(thinpool.ErrExists, "device %q already exists (%s): --size only applies to a new device", name, formatSize(i.Size))
		case src.size > i.Size:
			return nil, false, errdefs.Newf(errdefs.ErrInvalidArgument, "image %s is %s (%d bytes), larger than device %q (%s, %d bytes)",
				src.name, formatSize(src.size), src.size, name, formatSize(i.Size), i.Size)
		case i.ReadOnly:
			return nil, false, errdefs.Newf(thinpool.ErrReadOnly, "device %q is read-only", name)
		}
		return t, false, nil
	case !errors.Is(err, thinpool.ErrNotFound):
		return nil, false, err
	}
	size := newSize
	switch {
	case size == 0 && src.size < 0:
		return nil, false, errdefs.Newf(thinpool.ErrNotFound, "device %q not found: give --size to create it from %s", name, src.name)
	case size == 0 && src.size == 0:
		return nil, false, errdefs.Newf(errdefs.ErrInvalidArgument, "image %s is empty", src.name)
	case size == 0:
		size = roundUp(src.size, thinpool.SectorSize)
	case src.size > size:
		return nil, false, errdefs.Newf(errdefs.ErrInvalidArgument, "image %s is %s (%d bytes), larger than --size %s", src.name, formatSize(src.size), src.size, formatSize(size))
	}
	if t, err = p.CreateThin(name, size, nil); err != nil {
		return nil, false, err
	}
	return t, true, nil
}

// importImage copies src into the device called name and commits. A device
// it created is removed again if the import fails or ctx ends.
func (a *app) importImage(ctx context.Context, p *thinpool.Pool, name string, src *importSource, newSize int64) (err error) {
	t, created, err := a.importTarget(p, name, src, newSize)
	if err != nil {
		return err
	}
	defer func() {
		if err == nil {
			return
		}
		if !created {
			if ctx.Err() != nil {
				err = interrupted(ctx, fmt.Sprintf("device %q may be partly overwritten; import again to finish", name))
			}
			return
		}
		derr := p.Delete(name)
		if derr == nil {
			derr = p.Sync()
		}
		switch {
		case derr != nil:
			err = errors.Join(err, fmt.Errorf("remove the new device %q: %w", name, derr))
		case ctx.Err() != nil:
			err = interrupted(ctx, "nothing imported")
		default:
			err = fmt.Errorf("%w (removed the new device %q)", err, name)
		}
	}()
	start := time.Now()
	im := &importer{t: t, g: granule(p), compare: !created}
	prog := a.newProgress("importing "+name, max(src.size, 0))
	if src.f != nil {
		err = im.importFile(ctx, src, prog)
	} else {
		err = im.importStream(ctx, src, prog)
	}
	if err == nil {
		err = im.flush()
	}
	prog.finish()
	if err == nil {
		err = t.Sync()
	}
	if err != nil {
		if errors.Is(err, thinpool.ErrNoSpace) {
			err = fmt.Errorf("%w (grow the pool with 'thinctl pool grow --size N')", err)
		}
		return fmt.Errorf("import %s into device %q: %w", src.name, name, err)
	}
	u, err := t.Usage()
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	r := importResult{Device: name, Created: created, Size: im.read, Read: im.read, Written: im.written, Unchanged: im.same,
		MappedBlocks: u.Mapped, BlockSize: p.BlockSize(), Seconds: elapsed.Seconds()}
	if src.size >= 0 {
		r.Size = src.size
	}
	if a.json {
		return a.printJSON(r)
	}
	unchanged := ""
	if !created {
		unchanged = fmt.Sprintf(", %s unchanged", formatSize(r.Unchanged))
	}
	a.say("Imported %s into device %q in %s (%s): %s read, %s written%s, %d blocks mapped (%s)",
		formatSize(r.Size), name, elapsed.Round(time.Millisecond), rate(r.Size, elapsed),
		formatSize(r.Read), formatSize(r.Written), unchanged, r.MappedBlocks, formatSize(int64(r.MappedBlocks)*r.BlockSize))
	return nil
}
