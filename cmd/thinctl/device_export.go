package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/thinpool/thinpool/errdefs"
	"github.com/thinpool/thinpool/thinpool"
)

// exportDest is where an export goes: a regular file, written sparse, or a
// stream that gets every byte.
type exportDest struct {
	name string   // for messages: the path, or "standard output"
	f    *os.File // a regular file, written with WriteAt; nil for a stream
	w    io.Writer
	c    io.Closer
	// created is set when the file did not exist: a failed export removes it.
	created bool
	stdout  bool
}

// openExportDest opens path ("-" is stdout). It refuses to overwrite a
// non-empty regular file or a block device unless force is set.
func (a *app) openExportDest(path string, force bool) (*exportDest, error) {
	if path == "-" {
		return &exportDest{name: "standard output", w: a.out, stdout: true}, nil
	}
	path = a.abs(path)
	fi, err := os.Stat(path)
	created := errors.Is(err, os.ErrNotExist)
	switch {
	case created:
	case err != nil:
		return nil, err
	case fi.IsDir():
		return nil, errdefs.Newf(errdefs.ErrInvalidArgument, "%s is a directory", path)
	case !force && (fi.Mode().IsRegular() && fi.Size() > 0 || fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0):
		return nil, errdefs.Newf(errdefs.ErrAlreadyExists, "%s exists and is not empty: use --force to overwrite it", path)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o666)
	if err != nil {
		return nil, err
	}
	d := &exportDest{name: path, w: f, c: f, created: created}
	if fi, err = f.Stat(); err != nil {
		f.Close()
		return nil, err
	}
	if fi.Mode().IsRegular() {
		if err := f.Truncate(0); err != nil {
			f.Close()
			return nil, err
		}
		d.f = f
	}
	return d, nil
}

// exportResult is the JSON of 'device export'. Sizes are in bytes.
type exportResult struct {
	Device  string  `json:"device"`
	File    string  `json:"file"`
	Size    int64   `json:"size"`
	Read    int64   `json:"read"`    // bytes read from the device
	Written int64   `json:"written"` // bytes written to the file
	Sparse  bool    `json:"sparse"`
	Seconds float64 `json:"seconds"`
}

// deviceExportOptions are the arguments and flags of 'device export'.
type deviceExportOptions struct {
	name  string
	file  string // or - for standard output
	force bool
}

func (a *app) newDeviceExportCmd() *cobra.Command {
	o := &deviceExportOptions{}
	cmd := &cobra.Command{
		Use:   "export NAME FILE|-",
		Short: "Write a device out as a raw disk image",
		Long: `Write a thin device out as a raw disk image of its full size.

A regular FILE is written sparse: unmapped blocks and blocks of zeros become
holes. Standard output (-), pipes and block devices get every byte, zeros
included. An existing non-empty FILE is overwritten only with --force.`,
		Example: `  thinctl device export web web.img
  thinctl device export web - | xz > web.img.xz`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: a.completeNames("device", 1, cobra.ShellCompDirectiveDefault),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name, o.file = args[0], args[1]
			return a.runDeviceExport(cmd.Context(), o)
		},
	}
	cmd.Flags().BoolVarP(&o.force, "force", "f", false, "overwrite a non-empty FILE")
	return cmd
}

func (a *app) runDeviceExport(ctx context.Context, o *deviceExportOptions) error {
	ctx, stop := a.interruptible(ctx)
	defer stop()
	return a.withPool(func(p *thinpool.Pool) error {
		return a.exportImage(ctx, p, o.name, o.file, o.force)
	})
}

func (a *app) exportImage(ctx context.Context, p *thinpool.Pool, name, path string, force bool) (err error) {
	t, err := a.device(p, name)
	if err != nil {
		return err
	}
	maps, err := p.Mappings(name)
	if err != nil {
		return err
	}
	dst, err := a.openExportDest(path, force)
	if err != nil {
		return err
	}
	start := time.Now()
	size := t.Size()
	r := exportResult{Device: name, File: dst.name, Size: size, Sparse: dst.f != nil}
	prog := a.newProgress("exporting "+name, size)
	buf := make([]byte, xferChunk)
	// copyRange copies [lo, hi) of the device; write gets each chunk.
	copyRange := func(lo, hi int64, write func(b []byte, off int64) error) error {
		for off := lo; off < hi; {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := min(xferChunk, hi-off)
			if _, err := t.ReadAt(buf[:n], off); err != nil {
				return fmt.Errorf("read device %q at %d: %w", name, off, err)
			}
			r.Read += n
			if err := write(buf[:n], off); err != nil {
				return fmt.Errorf("write %s: %w", dst.name, err)
			}
			off += n
			prog.update(off)
		}
		return nil
	}
	if dst.f != nil {
		bs, g := p.BlockSize(), int(granule(p))
		for _, m := range maps {
			lo, hi := int64(m.V)*bs, min(int64(m.End())*bs, size)
			err = copyRange(lo, hi, func(b []byte, off int64) error {
				return zeroRuns(b, g, func(l, h int, zero bool) error {
					if zero {
						return nil
					}
					r.Written += int64(h - l)
					_, err := dst.f.WriteAt(b[l:h], off+int64(l))
					return err
				})
			})
			if err != nil {
				break
			}
		}
		if err == nil {
			if err = dst.f.Truncate(size); err != nil {
				err = fmt.Errorf("write %s: %w", dst.name, err)
			}
		}
	} else {
		err = copyRange(0, size, func(b []byte, _ int64) error {
			r.Written += int64(len(b))
			_, err := dst.w.Write(b)
			return err
		})
	}
	prog.finish()
	if dst.c != nil {
		if cerr := dst.c.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("write %s: %w", dst.name, cerr)
		}
	}
	if err != nil {
		removed := dst.created && os.Remove(dst.name) == nil
		switch {
		case ctx.Err() != nil && removed:
			return interrupted(ctx, "nothing exported")
		case ctx.Err() != nil:
			return interrupted(ctx, fmt.Sprintf("%s is incomplete", dst.name))
		}
		return fmt.Errorf("export device %q: %w", name, err)
	}
	elapsed := time.Since(start)
	r.Seconds = elapsed.Seconds()
	if a.json && !dst.stdout {
		return a.printJSON(r)
	}
	if a.quiet {
		return nil
	}
	w := a.out
	if dst.stdout {
		w = a.err
	}
	fmt.Fprintf(w, "Exported device %q (%s) to %s in %s (%s): %s of data written\n",
		name, formatSize(size), dst.name, elapsed.Round(time.Millisecond), rate(size, elapsed), formatSize(r.Written))
	return nil
}
