package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/thinpool/thinpool/errdefs"
	"github.com/thinpool/thinpool/thinpool"
	"github.com/thinpool/thinpool/volumes"
)

func (a *app) newPoolCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pool",
		Short: "Create, inspect, check, grow, dump and restore the pool",
	}
	cmd.AddCommand(a.newPoolCreateCmd(), a.newPoolInfoCmd(), a.newPoolCheckCmd(), a.newPoolGrowCmd(), a.newPoolSetCmd(),
		a.newPoolDumpCmd(), a.newPoolRestoreCmd())
	return cmd
}

// poolCreateOptions are the flags of 'pool create'.
type poolCreateOptions struct {
	size, blockSize, metadataSize string
	autoextend                    volumes.Autoextend
}

func (a *app) newPoolCreateCmd() *cobra.Command {
	o := &poolCreateOptions{}
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create the sparse pool file (and its directory)",
		Example: `  thinctl pool create --size 100G
  thinctl --pool /tmp/pool.img pool create --size 10G --block-size 1M
  thinctl pool create --size 10G --autoextend-threshold 80 --autoextend-percent 20`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runPoolCreate(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.size, "size", "100G", "data capacity (the file stays sparse); "+sizeHelp)
	f.StringVar(&o.blockSize, "block-size", "64K", "data block size: a power of two from 64K to 1G; a bare number is KiB, as lvcreate --chunksize")
	f.StringVar(&o.metadataSize, "metadata-size", "", "metadata area (default: 64 bytes per data block, at least 4M); "+sizeHelp)
	autoextendFlags(cmd, &o.autoextend)
	return cmd
}

func (a *app) runPoolCreate(_ context.Context, o *poolCreateOptions) error {
	var opts thinpool.Options
	var err error
	ae := o.autoextend
	if err := ae.Validate(); err != nil {
		return err
	}
	if opts.DataSize, err = parseSize(o.size); err != nil {
		return err
	}
	if opts.BlockSize, err = parseSizeIn(o.blockSize, bareKiB); err != nil {
		return err
	}
	if o.metadataSize != "" {
		if opts.MetadataSize, err = parseSize(o.metadataSize); err != nil {
			return err
		}
	}
	if opts.DataSize < opts.BlockSize {
		return errdefs.Newf(errdefs.ErrInvalidArgument, "pool size %s is smaller than one block (%s)", formatSize(opts.DataSize), formatSize(opts.BlockSize))
	}
	p, err := thinpool.Create(a.poolPath, opts)
	if err != nil {
		return err
	}
	if ae.Enabled() {
		if err := volumes.SetAutoextend(p, ae); err != nil {
			// A failed create leaves nothing behind.
			return errors.Join(fmt.Errorf("pool %s: %w", a.poolPath, err), p.Close(), os.Remove(a.poolPath))
		}
	}
	u := p.Usage()
	info := a.poolInfo(u)
	info.Autoextend = autoextendView(ae)
	if err := p.Close(); err != nil {
		return err
	}
	if a.json {
		return a.printJSON(info)
	}
	a.say("Created pool %s: %s of data in %s blocks, %s of metadata", a.poolPath,
		formatSize(int64(u.DataBlocks)*u.BlockSize), formatSize(u.BlockSize), formatSize(u.MetadataSize))
	return nil
}

// autoextendFlags adds the flags of the autoextend policy, named after
// LVM's thin_pool_autoextend_threshold and thin_pool_autoextend_percent.
func autoextendFlags(cmd *cobra.Command, ae *volumes.Autoextend) {
	f := cmd.Flags()
	f.IntVar(&ae.Threshold, "autoextend-threshold", 0,
		"grow the pool when data or metadata use reaches this percent (50-99; 0 or 100: never), as LVM's thin_pool_autoextend_threshold; the pool daemon does it")
	f.IntVar(&ae.Percent, "autoextend-percent", volumes.DefaultAutoextendPercent,
		"grow by this percent of the pool's size each time, as LVM's thin_pool_autoextend_percent")
}

// poolSetOptions are the flags of 'pool set'; thresholdSet and percentSet
// say which were given.
type poolSetOptions struct {
	autoextend               volumes.Autoextend
	thresholdSet, percentSet bool
}

func (a *app) newPoolSetCmd() *cobra.Command {
	o := &poolSetOptions{}
	cmd := &cobra.Command{
		Use:   "set --autoextend-threshold N [--autoextend-percent N]",
		Short: "Change the pool's settings: its autoextend policy",
		Long: `Change the pool's autoextend policy, as lvchange and lvm.conf's
thin_pool_autoextend_threshold and thin_pool_autoextend_percent do. While
the pool daemon runs, it grows the pool's data area by --autoextend-percent
of its size when data use reaches --autoextend-threshold percent (and the
metadata area, up to the reserve fixed at creation, when metadata use does),
as long as the host file system has room; a write that finds the pool full
waits for that growth instead of failing. The policy is stored in the pool's
own metadata (the thinpool.config device's labels). --autoextend-threshold
0 (or 100) turns it off. Crossing 80%, 90% and 95% is logged in the daemon's
log either way, as dmeventd does.`,
		Example: `  thinctl pool set --autoextend-threshold 80 --autoextend-percent 20
  thinctl pool set --autoextend-threshold 0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.thresholdSet = cmd.Flags().Changed("autoextend-threshold")
			o.percentSet = cmd.Flags().Changed("autoextend-percent")
			return a.runPoolSet(cmd.Context(), o)
		},
	}
	autoextendFlags(cmd, &o.autoextend)
	return cmd
}

func (a *app) runPoolSet(_ context.Context, o *poolSetOptions) error {
	if !o.thresholdSet && !o.percentSet {
		return errdefs.Newf(errdefs.ErrInvalidArgument, "pool set needs --autoextend-threshold or --autoextend-percent")
	}
	return a.withPool(func(p *thinpool.Pool) error {
		cur, err := volumes.ReadAutoextend(p)
		if err != nil {
			return err
		}
		if o.thresholdSet {
			cur.Threshold = o.autoextend.Threshold
		}
		if o.percentSet || cur.Percent == 0 {
			cur.Percent = o.autoextend.Percent
		}
		if err := volumes.SetAutoextend(p, cur); err != nil {
			return err
		}
		a.say("Pool %s: autoextend %s", a.poolPath, describeAutoextend(cur))
		return nil
	})
}

// autoextendJSON is the JSON of an autoextend policy in 'pool info'.
type autoextendJSON struct {
	Threshold int `json:"threshold"` // percent full that grows the pool; 0: never
	Percent   int `json:"percent"`   // of the pool's size, each time
}

func autoextendView(ae volumes.Autoextend) autoextendJSON {
	return autoextendJSON{Threshold: ae.Threshold, Percent: ae.Percent}
}

// policy is the policy v shows.
func (v autoextendJSON) policy() volumes.Autoextend {
	return volumes.Autoextend{Threshold: v.Threshold, Percent: v.Percent}
}

// describeAutoextend words a policy for 'pool info' and 'pool set'.
func describeAutoextend(ae volumes.Autoextend) string {
	if !ae.Enabled() {
		return "off"
	}
	return fmt.Sprintf("by %d%% when %d%% full", ae.Percent, ae.Threshold)
}

// poolInfo is the JSON of 'pool info'. Sizes are in bytes.
type poolInfo struct {
	Pool              string  `json:"pool"`
	UUID              string  `json:"uuid"`
	BlockSize         int64   `json:"blockSize"`
	DataTotal         int64   `json:"dataTotal"`
	DataUsed          int64   `json:"dataUsed"`
	DataAvailable     int64   `json:"dataAvailable"`
	DataPercent       float64 `json:"dataPercent"`
	MetadataTotal     int64   `json:"metadataTotal"`
	MetadataUsed      int64   `json:"metadataUsed"`
	MetadataAvailable int64   `json:"metadataAvailable"`
	MetadataPercent   float64 `json:"metadataPercent"`
	MetadataArea      int64   `json:"metadataArea"`
	MetadataReserve   int64   `json:"metadataReserve"`
	MetadataOnDisk    int64   `json:"metadataOnDisk"`
	FileSize          int64   `json:"fileSize"`
	HostBytes         int64   `json:"hostBytes"`
	DataOffset        int64   `json:"dataOffset"`
	Devices           int     `json:"devices"`
	TransactionID     uint64  `json:"transactionId"`
	// Autoextend is the pool's autoextend policy (threshold 0: off).
	Autoextend autoextendJSON `json:"autoextend"`
	// Warnings are set when data or metadata use is above 80%.
	Warnings []string `json:"warnings"`
}

func (a *app) poolInfo(u thinpool.Usage) poolInfo {
	bs := u.BlockSize
	i := poolInfo{
		Pool:              a.poolPath,
		UUID:              thinpool.FormatUUID(u.UUID),
		BlockSize:         bs,
		DataTotal:         int64(u.DataBlocks) * bs,
		DataUsed:          int64(u.UsedBlocks) * bs,
		DataAvailable:     int64(u.FreeBlocks) * bs,
		DataPercent:       percent(u.UsedBlocks, u.DataBlocks),
		MetadataTotal:     u.MetadataLimit,
		MetadataUsed:      u.MetadataState,
		MetadataAvailable: max(0, u.MetadataLimit-u.MetadataState),
		MetadataPercent:   percent(uint64(u.MetadataState), uint64(u.MetadataLimit)),
		MetadataArea:      u.MetadataSize,
		MetadataReserve:   u.MetadataReserve,
		MetadataOnDisk:    u.MetadataUsed,
		DataOffset:        u.DataOffset,
		Devices:           u.Devices,
		TransactionID:     u.TransactionID,
		Warnings:          []string{},
	}
	var st unix.Stat_t
	if err := unix.Stat(a.poolPath, &st); err == nil {
		i.FileSize, i.HostBytes = st.Size, st.Blocks*512
	}
	if i.DataPercent > 80 {
		i.Warnings = append(i.Warnings, fmt.Sprintf("data space is %.0f%% used: grow the pool with 'thinctl pool grow --size N'", i.DataPercent))
	}
	if i.MetadataPercent > 80 {
		i.Warnings = append(i.Warnings, fmt.Sprintf("metadata space is %.0f%% used: grow it with 'thinctl pool grow --metadata-size N'", i.MetadataPercent))
	}
	return i
}

// poolInfoOf is poolInfo with the pool's autoextend policy.
func (a *app) poolInfoOf(p *thinpool.Pool) (poolInfo, error) {
	i := a.poolInfo(p.Usage())
	ae, err := volumes.ReadAutoextend(p)
	if err != nil {
		return i, err
	}
	i.Autoextend = autoextendView(ae)
	return i, nil
}

// poolInfoOptions are the flags of 'pool info' (none but the global ones).
type poolInfoOptions struct{}

func (a *app) newPoolInfoCmd() *cobra.Command {
	o := &poolInfoOptions{}
	return &cobra.Command{
		Use:   "info",
		Short: "Show pool size, data and metadata use, as docker info and lvs do",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runPoolInfo(cmd.Context(), o)
		},
	}
}

func (a *app) runPoolInfo(_ context.Context, o *poolInfoOptions) error {
	return a.withPool(func(p *thinpool.Pool) error {
		i, err := a.poolInfoOf(p)
		if err != nil {
			return err
		}
		if a.json {
			return a.printJSON(i)
		}
		err = a.kv([][2]string{
			{"Pool file", i.Pool},
			{"Pool UUID", i.UUID},
			{"Block size", formatSize(i.BlockSize)},
			{"Data space used", fmt.Sprintf("%s (%.1f%%)", formatSize(i.DataUsed), i.DataPercent)},
			{"Data space total", formatSize(i.DataTotal)},
			{"Data space available", formatSize(i.DataAvailable)},
			{"Metadata space used", fmt.Sprintf("%s (%.1f%%)", formatSize(i.MetadataUsed), i.MetadataPercent)},
			{"Metadata space total", formatSize(i.MetadataTotal)},
			{"Metadata space available", formatSize(i.MetadataAvailable)},
			{"Metadata area", fmt.Sprintf("%s (can grow to %s)", formatSize(i.MetadataArea), formatSize(i.MetadataReserve))},
			{"Host space used", fmt.Sprintf("%s of a %s sparse file", formatSize(i.HostBytes), formatSize(i.FileSize))},
			{"Data offset", fmt.Sprintf("%d", i.DataOffset)},
			{"Thin devices", fmt.Sprintf("%d", i.Devices)},
			{"Transaction id", fmt.Sprintf("%d", i.TransactionID)},
			{"Autoextend", describeAutoextend(i.Autoextend.policy())},
		})
		for _, w := range i.Warnings {
			fmt.Fprintf(a.out, "WARNING: %s\n", w)
		}
		return err
	})
}

// checkResult is the JSON of 'pool check'.
type checkResult struct {
	Pool         string   `json:"pool"`
	Clean        bool     `json:"clean"`
	Devices      int      `json:"devices"`
	Mappings     int      `json:"mappings"`
	Errors       []string `json:"errors"`
	Leaks        []string `json:"leaks"`
	LeakedBlocks uint64   `json:"leakedBlocks"`
	Repaired     bool     `json:"repaired"`
}

// poolCheckOptions are the flags of 'pool check'.
type poolCheckOptions struct {
	repair bool
}

func (a *app) newPoolCheckCmd() *cobra.Command {
	o := &poolCheckOptions{}
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Verify every mapping, reference count and checksum (thin_check)",
		Long: `Verify every invariant of the pool: each mapped block's reference count
equals the number of mappings that point at it, no mapping lies past the data
area, no mappings overlap, free space adds up, and the metadata checksums on
disk. Exit status 0 means clean, 1 means errors or leaks were found.
--repair fixes leaks (blocks counted as used that nothing maps), as
thin_repair does; errors need a person.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runPoolCheck(cmd.Context(), o)
		},
	}
	cmd.Flags().BoolVar(&o.repair, "repair", false, "fix leaks")
	return cmd
}

func (a *app) runPoolCheck(_ context.Context, o *poolCheckOptions) error {
	return a.withPool(func(p *thinpool.Pool) error {
		r, err := p.Check()
		if err != nil {
			return err
		}
		res := checkResult{Pool: a.poolPath, Devices: r.Devices, Mappings: r.Mappings,
			Errors: append([]string{}, r.Errors...), Leaks: append([]string{}, r.Leaks...), LeakedBlocks: r.LeakedBlocks}
		if o.repair && len(r.Errors) == 0 && len(r.Leaks) > 0 {
			if _, err := p.Repair(); err != nil {
				return err
			}
			res.Repaired = true
		}
		res.Clean = len(res.Errors) == 0 && (len(res.Leaks) == 0 || res.Repaired)
		if a.json {
			if err := a.printJSON(res); err != nil {
				return err
			}
		} else {
			for _, e := range res.Errors {
				fmt.Fprintf(a.out, "error: %s\n", e)
			}
			for _, l := range res.Leaks {
				fmt.Fprintf(a.out, "leak: %s\n", l)
			}
			switch {
			case res.Repaired:
				a.say("repaired %d leaked blocks; %d devices, %d mappings now clean", res.LeakedBlocks, res.Devices, res.Mappings)
			case res.Clean:
				a.say("pool %s is clean: %d devices, %d mappings", a.poolPath, res.Devices, res.Mappings)
			}
		}
		if !res.Clean {
			msg := fmt.Sprintf("pool %s has %d errors and %d leaks", a.poolPath, len(res.Errors), len(res.Leaks))
			if len(res.Errors) == 0 {
				msg += " (run 'thinctl pool check --repair')"
				return &exitError{code: exitFailure, msg: msg}
			}
			return &exitError{code: exitCorrupt, msg: msg}
		}
		return nil
	})
}

// poolGrowOptions are the flags of 'pool grow'.
type poolGrowOptions struct {
	size, metadataSize string
}

func (a *app) newPoolGrowCmd() *cobra.Command {
	o := &poolGrowOptions{}
	cmd := &cobra.Command{
		Use:   "grow",
		Short: "Grow the data area (--size) or the metadata area (--metadata-size)",
		Example: `  thinctl pool grow --size 200G
  thinctl pool grow --size +50G
  thinctl pool grow --metadata-size 64M`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runPoolGrow(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.size, "size", "", "new data capacity, or +SIZE to grow by SIZE (as lvextend -L +1G); "+sizeHelp)
	cmd.Flags().StringVar(&o.metadataSize, "metadata-size", "", "new metadata area size, or +SIZE; "+sizeHelp)
	return cmd
}

func (a *app) runPoolGrow(_ context.Context, o *poolGrowOptions) error {
	if o.size == "" && o.metadataSize == "" {
		return errdefs.Newf(errdefs.ErrInvalidArgument, "pool grow needs --size or --metadata-size")
	}
	var data, meta sizeChange
	var err error
	if o.size != "" {
		if data, err = parseSizeChange(o.size); err != nil {
			return err
		}
	}
	if o.metadataSize != "" {
		if meta, err = parseSizeChange(o.metadataSize); err != nil {
			return err
		}
	}
	return a.withPool(func(p *thinpool.Pool) error {
		u := p.Usage()
		newData, err := data.from(int64(u.DataBlocks) * u.BlockSize)
		if err != nil {
			return fmt.Errorf("--size %s: %w", o.size, err)
		}
		newMeta, err := meta.from(u.MetadataSize)
		if err != nil {
			return fmt.Errorf("--metadata-size %s: %w", o.metadataSize, err)
		}
		if o.size != "" {
			if err := p.Grow(newData); err != nil {
				return err
			}
		}
		if o.metadataSize != "" {
			if err := p.GrowMetadata(newMeta); err != nil {
				return err
			}
		}
		u = p.Usage()
		if a.json {
			i, err := a.poolInfoOf(p)
			if err != nil {
				return err
			}
			return a.printJSON(i)
		}
		a.say("Pool %s: %s of data, %s metadata area", a.poolPath, formatSize(int64(u.DataBlocks)*u.BlockSize), formatSize(u.MetadataSize))
		return nil
	})
}
