package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/thinpool/thinpool/thinpool"
	"github.com/thinpool/thinpool/volumes"
)

func (a *app) newImageCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "image", Aliases: []string{"images"}, Short: "Import, list, inspect and remove images (layers are read-only snapshots)"}
	cmd.AddCommand(a.newImageImportCmd(), a.newImageLsCmd(), a.newImageInspectCmd(), a.newImageHistoryCmd(), a.newImageRmCmd())
	return cmd
}

// imageImportOptions are the argument and flags of 'image import'.
type imageImportOptions struct {
	file     string // an archive or layout, or - for standard input
	name     string // NAME[:TAG], or "" for the archive's
	baseSize string
}

func (a *app) newImageImportCmd() *cobra.Command {
	o := &imageImportOptions{}
	cmd := &cobra.Command{
		Use:   "import FILE|-",
		Short: "Import a docker save tarball, an OCI image layout (dir or tar), or a rootfs tar",
		Long: `Import images. Each layer becomes a read-only snapshot of the layer below,
starting from a base device with an empty ext4 filesystem (--base-size, 10G
by default, fixed when the pool's base is first made), as Docker's
devicemapper driver did. A layer is known by its chain ID: one already in
the pool is reused, never stored twice.

Each layer's filesystem is synced and checked before the layer is kept: if
the pool fills up, the import fails, says so, and removes the layers it made.
Ctrl-C (or SIGTERM) cancels the import in the daemon, which rolls it back;
thinctl then prints "interrupted: nothing imported" and exits 130.`,
		Example: `  docker save alpine:3.20 | thinctl image import -
  thinctl image import app.tar --name app:v2`,
		Args: checkInput(cobra.ExactArgs(1), func([]string) error {
			if o.name != "" {
				if err := checkImageRef(o.name); err != nil {
					return err
				}
			}
			return checkSize(o.baseSize)
		}),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.file = args[0]
			return a.runImageImport(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.name, "name", "", "NAME[:TAG] of the image (default: the archive's)")
	cmd.Flags().StringVar(&o.baseSize, "base-size", "", "size of the pool's base device when it is first made (default 10G); "+sizeHelp)
	return cmd
}

func (a *app) runImageImport(ctx context.Context, o *imageImportOptions) error {
	var bsz int64
	if o.baseSize != "" {
		n, err := parseSize(o.baseSize)
		if err != nil {
			return err
		}
		bsz = roundUp(n, thinpool.SectorSize)
	}
	m, err := a.manager()
	if err != nil {
		return err
	}
	ctx, stop := a.interruptible(ctx)
	defer stop()
	prog := a.newProgress("importing", 0)
	imgs, err := m.ImportImage(ctx, a.abs(o.file), a.in, volumes.ImportOptions{Name: o.name, BaseSize: bsz,
		Progress: func(i, n int, chain string, reused bool, bytes int64) {
			if prog != nil {
				prog.label = fmt.Sprintf("layer %d/%d %s", i, n, shortID(chain))
				prog.update(bytes)
			}
		}})
	prog.finish()
	if err != nil && ctx.Err() != nil {
		// The import rolled back the image it was making.
		if len(imgs) == 0 {
			return interrupted(ctx, "nothing imported")
		}
		var done []string
		for _, im := range imgs {
			done = append(done, im.Name)
		}
		return interrupted(ctx, "imported only "+strings.Join(done, ", "))
	}
	if err != nil {
		return err
	}
	if a.json {
		return a.printJSON(imageViews(imgs))
	}
	for _, im := range imgs {
		a.say("Imported %s: %d layers, %s (%s shared with other images, %s unique)", im.Name, len(im.Layers),
			formatSize(im.Size), formatSize(im.SharedSize), formatSize(im.UniqueSize))
	}
	return nil
}

// imageLsOptions are the flags of 'image ls' (none but the global ones).
type imageLsOptions struct{}

func (a *app) newImageLsCmd() *cobra.Command {
	o := &imageLsOptions{}
	cmd := &cobra.Command{
		Use: "ls", Aliases: []string{"list"}, Short: "List images with their layers and shared and unique size", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runImageLs(cmd.Context(), o)
		},
	}
	return cmd
}

func (a *app) runImageLs(_ context.Context, o *imageLsOptions) error {
	m, err := a.manager()
	if err != nil {
		return err
	}
	imgs := m.ListImages()
	if a.json {
		return a.printJSON(imageViews(imgs))
	}
	if a.quiet { // names, for scripts: thinctl image rm $(thinctl -q image ls)
		for _, im := range imgs {
			fmt.Fprintln(a.out, im.Name)
		}
		return nil
	}
	rows := [][]string{{"IMAGE", "ID", "LAYERS", "SIZE", "SHARED", "UNIQUE", "CONTAINERS", "CREATED"}}
	for _, im := range imgs {
		rows = append(rows, []string{im.Name, shortID(im.ID), fmt.Sprint(len(im.Layers)), formatSize(im.Size),
			formatSize(im.SharedSize), formatSize(im.UniqueSize), fmt.Sprint(len(im.Containers)), tableTime(im.Created)})
	}
	return a.table(rows)
}

// imageInspectOptions are the argument of 'image inspect'.
type imageInspectOptions struct {
	image string
}

func (a *app) newImageInspectCmd() *cobra.Command {
	o := &imageInspectOptions{}
	cmd := &cobra.Command{
		Use: "inspect IMAGE", Short: "Show an image's layers, chain IDs, sizes and config (JSON)", Args: cobra.ExactArgs(1),
		ValidArgsFunction: a.completeNames("image", 1, cobra.ShellCompDirectiveNoFileComp),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.image = args[0]
			return a.runImageInspect(cmd.Context(), o)
		},
	}
	return cmd
}

func (a *app) runImageInspect(_ context.Context, o *imageInspectOptions) error {
	m, err := a.manager()
	if err != nil {
		return err
	}
	im, err := m.InspectImage(o.image)
	if err != nil {
		return err
	}
	return a.printJSON(imageView(im))
}

// imageHistoryOptions are the argument of 'image history'.
type imageHistoryOptions struct {
	image string
}

func (a *app) newImageHistoryCmd() *cobra.Command {
	o := &imageHistoryOptions{}
	cmd := &cobra.Command{
		Use: "history IMAGE", Short: "Show how an image's layers were made", Args: cobra.ExactArgs(1),
		Long: `Show how an image's layers were made, newest first, from its config's
history, with the layer each step made. CREATED is the step's time in the
config, in local time (as the config has it if that is not RFC 3339); with
--json it is RFC 3339, or null when the config gives none or not RFC 3339.`,
		ValidArgsFunction: a.completeNames("image", 1, cobra.ShellCompDirectiveNoFileComp),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.image = args[0]
			return a.runImageHistory(cmd.Context(), o)
		},
	}
	return cmd
}

func (a *app) runImageHistory(_ context.Context, o *imageHistoryOptions) error {
	m, err := a.manager()
	if err != nil {
		return err
	}
	h, err := m.ImageHistory(o.image)
	if err != nil {
		return err
	}
	if a.json {
		return a.printJSON(historyViews(h))
	}
	rows := [][]string{{"LAYER", "CREATED", "CREATED BY", "SIZE"}}
	for _, e := range h {
		by := e.CreatedBy
		if len(by) > 60 {
			by = by[:57] + "..."
		}
		layer := "<empty>"
		if e.ChainID != "" {
			layer = shortID(e.ChainID)
		}
		created := "-"
		if t, ok := parseOCITime(e.Created); ok {
			created = tableTime(t)
		} else if e.Created != "" {
			created = e.Created // not RFC 3339: as the config has it
		}
		rows = append(rows, []string{layer, created, by, formatSize(e.Size)})
	}
	return a.table(rows)
}

// imageRmOptions are the arguments of 'image rm'.
type imageRmOptions struct {
	images []string
}

func (a *app) newImageRmCmd() *cobra.Command {
	o := &imageRmOptions{}
	cmd := &cobra.Command{
		Use: "rm IMAGE...", Annotations: map[string]string{annObjects: "image"}, Aliases: []string{"remove"}, Short: "Remove images (refused while a container uses one)", Args: cobra.MinimumNArgs(1),
		ValidArgsFunction: a.completeNames("image", -1, cobra.ShellCompDirectiveNoFileComp),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.images = args
			return a.runImageRm(cmd.Context(), o)
		},
	}
	return cmd
}

func (a *app) runImageRm(_ context.Context, o *imageRmOptions) error {
	m, err := a.manager()
	if err != nil {
		return err
	}
	for _, ref := range o.images {
		if err := m.RemoveImage(ref); err != nil {
			return err
		}
		a.say("Removed image %s", ref)
	}
	return nil
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// imageJSON is the JSON of an image in 'image ls', 'image inspect', 'image
// import' and 'container commit'. Sizes are in bytes.
type imageJSON struct {
	Name       string      `json:"name"`
	ID         string      `json:"id"` // the config digest
	Device     string      `json:"device"`
	Created    *time.Time  `json:"created"` // from the config; null if it has none
	Layers     []layerJSON `json:"layers"`
	Size       int64       `json:"size"`       // all layers
	SharedSize int64       `json:"sharedSize"` // layers another image uses too
	UniqueSize int64       `json:"uniqueSize"` // layers only this image uses
	Containers []string    `json:"containers"`
	// Config is the image's OCI config as it is; 'image ls' leaves it null.
	Config      json.RawMessage `json:"config"`
	VirtualSize int64           `json:"virtualSize"` // the device size
}

// layerJSON is one layer of an imageJSON.
type layerJSON struct {
	ChainID string `json:"chainId"`
	DiffID  string `json:"diffId"`
	Device  string `json:"device"`
	Size    int64  `json:"size"` // pool bytes the layer added over its parent
	Shared  bool   `json:"shared"`
}

func imageView(im *volumes.Image) imageJSON {
	v := imageJSON{Name: im.Name, ID: im.ID, Device: im.Device, Created: timeOrNull(im.Created),
		Layers: []layerJSON{}, Size: im.Size, SharedSize: im.SharedSize, UniqueSize: im.UniqueSize,
		Containers: nonNil(im.Containers), Config: im.Config, VirtualSize: im.VirtualSize}
	for _, l := range im.Layers {
		v.Layers = append(v.Layers, layerJSON{ChainID: l.ChainID, DiffID: l.DiffID, Device: l.Device, Size: l.Size, Shared: l.Shared})
	}
	return v
}

func imageViews(ims []*volumes.Image) []imageJSON {
	out := make([]imageJSON, 0, len(ims))
	for _, im := range ims {
		out = append(out, imageView(im))
	}
	return out
}

// historyJSON is one step of 'image history'.
type historyJSON struct {
	// Created is the step's time in the image config; null if the config
	// gives none, or one that is not RFC 3339.
	Created   *time.Time `json:"created"`
	CreatedBy string     `json:"createdBy"`
	Comment   string     `json:"comment"`
	ChainID   string     `json:"chainId"` // "" for a step that made no layer
	Size      int64      `json:"size"`
}

func historyViews(h []volumes.HistoryEntry) []historyJSON {
	out := make([]historyJSON, 0, len(h))
	for _, e := range h {
		v := historyJSON{CreatedBy: e.CreatedBy, Comment: e.Comment, ChainID: e.ChainID, Size: e.Size}
		if t, ok := parseOCITime(e.Created); ok {
			v.Created = timeOrNull(t)
		}
		out = append(out, v)
	}
	return out
}
