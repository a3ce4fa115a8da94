package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/thinpool/thinpool/errdefs"
	"github.com/thinpool/thinpool/thinpool"
	"github.com/thinpool/thinpool/thinpool/thinxml"
)

const dumpLong = `Write the pool's metadata as the XML that thin_dump writes
(thin-provisioning-tools 0.9.0): the block size (data_block_size, in 512-byte
sectors), the size of the data area (nr_data_blocks), the transaction id, and
every thin device with its mappings, by device id. Without -o it goes to
standard output.

Serving the pool's devices with kernel dm-thin:

The pool file's data area is a dm-thin data device as it stands: data block N
is at the "Data offset" of 'thinctl pool info' plus N × block size. thin_restore
turns the dump into a dm-thin metadata device. Stop every thinctl user of the
pool first, then:

  thinctl --json pool info                  # dataOffset D and dataTotal N, in bytes
  thinctl pool dump -o pool.xml
  truncate -s 64M meta.bin                  # must exist and be large enough:
                                            #   thin_metadata_size -b 64k -s 100g -m 100 -u m
  thin_restore -i pool.xml -o meta.bin
  thin_check meta.bin
  DATA=$(losetup --offset D --sizelimit N -f --show pool.img)
  META=$(losetup -f --show meta.bin)
  dmsetup create pool --table "0 $((N/512)) thin-pool $META $DATA 128 0"
  dmsetup create web --table "0 $((SIZE/512)) thin /dev/mapper/pool DEV_ID"

(128 is data_block_size from the dump; DEV_ID and SIZE are the device's
dev_id and size attributes.) From then on only meta.bin knows which blocks
are in use: do not open pool.img with thinctl again except as --data. To come
back, remove the dm devices and run
'thin_dump meta.bin | thinctl --pool new.img pool restore - --data pool.img --data-offset D'
(the devices come back as dev-<dev_id>; see 'thinctl pool restore --help').

dm-thin decides copy-on-write from times, not reference counts: a mapping is
treated as shared when its time is before its device's snap_time. The dump
gives the pool time 1, every device snap_time 1, and each mapping time 0 if
its blocks are shared with another mapping, else time 1, so the kernel copies
exactly the shared blocks on their first write.

What dm-thin metadata cannot hold:

Device names, sizes, origins, read-only flags, creation times and labels are
not dm-thin metadata. The dump writes them as extra attributes on <device>:
name, size (bytes), origin (a dev_id), read_only, created and labels.
thin_restore 0.9.0 (Debian) accepts and ignores them; 'thinctl pool restore'
reads them back, so a dump then restore loses nothing. thin_restore 1.x
rejects unknown attributes: give it a --plain dump.`

// poolDumpOptions are the flags of 'pool dump'.
type poolDumpOptions struct {
	output string
	plain  bool
}

func (a *app) newPoolDumpCmd() *cobra.Command {
	o := &poolDumpOptions{}
	cmd := &cobra.Command{
		Use:   "dump [-o FILE]",
		Short: "Write the metadata as thin_dump XML (for thin_restore and kernel dm-thin)",
		Long:  dumpLong,
		Example: `  thinctl pool dump -o pool.xml
  thinctl pool dump --plain | gzip > pool.xml.gz`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runPoolDump(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "write to FILE instead of standard output")
	cmd.Flags().BoolVar(&o.plain, "plain", false, "write only what thin_dump writes: no name, size, origin, read_only, created or labels")
	return cmd
}

func (a *app) runPoolDump(_ context.Context, o *poolDumpOptions) error {
	return a.withPool(func(p *thinpool.Pool) error {
		v, err := p.View()
		if err != nil {
			return err
		}
		sb := thinxml.FromView(v, !o.plain)
		if o.output == "" || o.output == "-" {
			return thinxml.Encode(a.out, sb)
		}
		if err := dumpWriteFile(a.abs(o.output), func(w io.Writer) error { return thinxml.Encode(w, sb) }); err != nil {
			return err
		}
		var blocks uint64
		for i := range sb.Devices {
			blocks += sb.Devices[i].MappedBlocks()
		}
		if a.json {
			return a.printJSON(struct {
				File         string `json:"file"`
				Devices      int    `json:"devices"`
				MappedBlocks uint64 `json:"mappedBlocks"`
			}{o.output, len(sb.Devices), blocks})
		}
		a.say("Wrote %d devices (%d mapped blocks) to %s", len(sb.Devices), blocks, o.output)
		return nil
	})
}

// dumpWriteFile writes a temporary file next to path with fn, syncs it
// and renames it to path; on error nothing is left.
func dumpWriteFile(path string, fn func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	err = fn(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

const restoreLong = `Create a new pool at --pool (which must not exist) holding the thin devices
of FILE, the XML that 'thinctl pool dump' or thin_dump writes ("-" reads
standard input). The block size is the dump's data_block_size and the data
area nr_data_blocks blocks, or --size if that is larger.

--data names the dm-thin data device (a file or block device) whose block N
is at --data-offset + N × block size; every mapped block is copied from it
into the new pool, all-zero blocks as holes. Without --data the devices read
back zeros. To copy one of thinctl's own pools, pass its pool file with
--data-offset set to the "Data offset" of 'thinctl pool info'.

Names, sizes, origins, read-only flags, creation times and labels come from
the extra <device> attributes that 'thinctl pool dump' writes. A dump from
thin_dump has none: such a device is called dev-<dev_id> and its size is its
highest mapped block + 1 blocks, or --device-size. dev_id 0, which thinpool
does not use, is given the next free id (the name stays dev-0).`

// poolRestoreOptions are the argument and flags of 'pool restore'.
type poolRestoreOptions struct {
	file                                             string // the dump, or - for standard input
	data, dataOffset, size, deviceSize, metadataSize string
}

func (a *app) newPoolRestoreCmd() *cobra.Command {
	o := &poolRestoreOptions{}
	cmd := &cobra.Command{
		Use:   "restore FILE [--data FILE] [--data-offset BYTES]",
		Short: "Create a new pool from thin_dump XML and a dm-thin data device",
		Long:  restoreLong,
		Example: `  thinctl --pool copy.img pool restore pool.xml --data pool.img --data-offset 1073807360
  thin_dump /dev/vg/pool_tmeta | thinctl --pool new.img pool restore - --data /dev/vg/pool_tdata`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.file = args[0]
			return a.runPoolRestore(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.data, "data", "", "dm-thin data device or image to copy the mapped blocks from")
	f.StringVar(&o.dataOffset, "data-offset", "", "offset of data block 0 in --data (default 0); a bare number is bytes, as losetup --offset")
	f.StringVar(&o.size, "size", "", "data capacity of the new pool (default: the dump's nr_data_blocks); "+sizeHelp)
	f.StringVar(&o.deviceSize, "device-size", "", "size of devices the dump gives no size (default: up to the highest mapped block); "+sizeHelp)
	f.StringVar(&o.metadataSize, "metadata-size", "", "metadata area (default as 'pool create'); "+sizeHelp)
	return cmd
}

func (a *app) runPoolRestore(_ context.Context, o *poolRestoreOptions) error {
	var r restoreOptions
	var err error
	if r.dataOffset, err = dumpOptSize(o.dataOffset, bareBytes); err != nil {
		return err
	}
	if o.dataOffset != "" && o.data == "" {
		return errdefs.Newf(errdefs.ErrInvalidArgument, "--data-offset needs --data")
	}
	if r.size, err = dumpOptSize(o.size, bareMiB); err != nil {
		return err
	}
	if r.devSize, err = dumpOptSize(o.deviceSize, bareMiB); err != nil {
		return err
	}
	if r.metaSize, err = dumpOptSize(o.metadataSize, bareMiB); err != nil {
		return err
	}
	if dumpPathExists(a.poolPath) {
		return errdefs.Newf(thinpool.ErrExists, "pool %s already exists", a.poolPath)
	}
	sb, err := a.readDump(o.file)
	if err != nil {
		return err
	}
	return a.restore(sb, o.data, r)
}

func dumpPathExists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// restoreOptions are poolRestoreOptions' sizes, parsed.
type restoreOptions struct {
	dataOffset, size, devSize, metaSize int64
}

// dumpOptSize parses an optional size flag whose bare number is in unit;
// "" is 0.
func dumpOptSize(s, bare string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	return parseSizeIn(s, bare)
}

// readDump decodes and validates the dump at path, wording its errors as
// "FILE:LINE: what".
func (a *app) readDump(path string) (*thinxml.Superblock, error) {
	r := a.in
	if path != "-" {
		f, err := os.Open(a.abs(path))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	sb, err := thinxml.Decode(r)
	var xe *thinxml.Error
	switch {
	case errors.As(err, &xe) && xe.Line > 0:
		return nil, errdefs.Newf(errdefs.ErrInvalidArgument, "%s:%d: %s", path, xe.Line, xe.Msg)
	case errors.As(err, &xe):
		return nil, errdefs.Newf(errdefs.ErrInvalidArgument, "%s: %s", path, xe.Msg)
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return sb, nil
}

func (a *app) restore(sb *thinxml.Superblock, dataPath string, o restoreOptions) error {
	bs := int64(sb.DataBlockSize) * thinpool.SectorSize
	if sb.NrDataBlocks > uint64(math.MaxInt64/bs) {
		return errdefs.Newf(errdefs.ErrInvalidArgument, "the dump's data device (%d blocks of %s) is too large", sb.NrDataBlocks, formatSize(bs))
	}
	opts := thinpool.Options{BlockSize: bs, DataSize: int64(sb.NrDataBlocks) * bs, MetadataSize: o.metaSize}
	if o.size != 0 {
		if o.size < opts.DataSize {
			return errdefs.Newf(errdefs.ErrInvalidArgument, "--size %s is smaller than the dump's data device (%s)", formatSize(o.size), formatSize(opts.DataSize))
		}
		opts.DataSize = o.size
	}
	devs, notes, err := sb.RestoreDevices(bs, o.devSize)
	if err != nil {
		return err
	}
	var data io.ReaderAt
	if dataPath != "" {
		f, err := os.Open(a.abs(dataPath))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := checkDataSize(f, dataPath, o.dataOffset, devs, bs); err != nil {
			return err
		}
		data = io.NewSectionReader(f, o.dataOffset, math.MaxInt64-o.dataOffset)
	}
	p, err := thinpool.Restore(a.poolPath, opts, devs, data)
	switch {
	case errors.Is(err, thinpool.ErrExists) && dumpPathExists(a.poolPath):
		return errdefs.Newf(thinpool.ErrExists, "pool %s already exists", a.poolPath) // created meanwhile
	case errors.Is(err, thinpool.ErrMetadataFull):
		return fmt.Errorf("%w (use a larger --metadata-size)", err)
	case err != nil:
		return err
	}
	u := p.Usage()
	if err := p.Close(); err != nil {
		return err
	}
	if a.json {
		return a.printJSON(a.poolInfo(u))
	}
	for _, n := range notes {
		a.say("%s", n)
	}
	src := "no data (devices read zeros)"
	if dataPath != "" {
		src = fmt.Sprintf("data from %s at offset %d", dataPath, o.dataOffset)
	}
	a.say("Restored pool %s: %d devices, %s used of %s, %s", a.poolPath, u.Devices,
		formatSize(int64(u.UsedBlocks)*bs), formatSize(int64(u.DataBlocks)*bs), src)
	return nil
}

// checkDataSize fails when the data device ends before the last mapped
// block: a wrong file or offset.
func checkDataSize(f *os.File, path string, off int64, devs []thinpool.RestoreDevice, bs int64) error {
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	end := thinxml.DataEnd(devs)
	if need := int64(end) * bs; end > 0 && size-off < need {
		return errdefs.Newf(errdefs.ErrInvalidArgument, "data %s holds %d bytes after offset %d, but the dump maps data blocks up to %d (%d bytes): wrong file or --data-offset?",
			path, max(0, size-off), off, end-1, need)
	}
	return nil
}
