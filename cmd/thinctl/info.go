package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/thinpool/thinpool/thinpool"
	"github.com/thinpool/thinpool/volumes"
)

// infoJSON is the JSON of 'thinctl info'.
type infoJSON struct {
	StorageDriver string   `json:"storageDriver"`
	Pool          poolInfo `json:"pool"`
	BaseSize      int64    `json:"baseSize"`
	BackingFS     string   `json:"backingFilesystem"`
	Images        int      `json:"images"`
	Layers        int      `json:"layers"`
	Containers    int      `json:"containers"`
	Volumes       int      `json:"volumes"`
	Daemon        string   `json:"daemon"`
}

// infoOptions are the flags of 'info' (none but the global ones).
type infoOptions struct{}

func (a *app) newInfoCmd() *cobra.Command {
	o := &infoOptions{}
	return &cobra.Command{
		Use: "info", Short: "Show the storage section, as docker info does", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runInfo(cmd.Context(), o)
		},
	}
}

func (a *app) runInfo(_ context.Context, o *infoOptions) error {
	return a.withPool(func(p *thinpool.Pool) error {
		oi := volumes.PoolInfo(p)
		pi, err := a.poolInfoOf(p)
		if err != nil {
			return err
		}
		i := infoJSON{StorageDriver: "thinpool", Pool: pi, BaseSize: oi.BaseSize, BackingFS: oi.BackingFS,
			Images: oi.Images, Layers: oi.Layers, Containers: oi.Containers, Volumes: oi.Volumes, Daemon: "not running"}
		if a.daemon != nil {
			i.Daemon = "running"
		}
		if a.json {
			return a.printJSON(i)
		}
		err = a.kv([][2]string{
			{"Storage Driver", "thinpool"},
			{" Pool File", pi.Pool},
			{" Pool Blocksize", formatSize(pi.BlockSize)},
			{" Base Device Size", formatSize(i.BaseSize)},
			{" Backing Filesystem", i.BackingFS},
			{" Data Space Used", formatSize(pi.DataUsed)},
			{" Data Space Total", formatSize(pi.DataTotal)},
			{" Data Space Available", formatSize(pi.DataAvailable)},
			{" Metadata Space Used", formatSize(pi.MetadataUsed)},
			{" Metadata Space Total", formatSize(pi.MetadataTotal)},
			{" Metadata Space Available", formatSize(pi.MetadataAvailable)},
			{" Thin Devices", fmt.Sprint(pi.Devices)},
			{" Autoextend", describeAutoextend(pi.Autoextend.policy())},
			{"Images", fmt.Sprintf("%d (%d layers)", i.Images, i.Layers)},
			{"Containers", fmt.Sprint(i.Containers)},
			{"Volumes", fmt.Sprint(i.Volumes)},
			{"Daemon", i.Daemon},
		})
		for _, w := range pi.Warnings {
			fmt.Fprintf(a.out, "WARNING: %s\n", w)
		}
		return err
	})
}
