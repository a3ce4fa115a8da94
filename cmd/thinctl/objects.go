package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/thinpool/thinpool/errdefs"
	"github.com/thinpool/thinpool/thinpool"
	"github.com/thinpool/thinpool/volumes"
)

// checkInput runs args, then check: the flags are parsed by then, and the
// error comes before the command is sent to (or starts) the pool daemon, so
// bad input changes nothing.
func checkInput(args cobra.PositionalArgs, check func(args []string) error) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := args(cmd, a); err != nil {
			return err
		}
		return check(a)
	}
}

// checkImageRef refuses an image reference that is not NAME[:TAG].
func checkImageRef(ref string) error {
	_, err := volumes.ParseImageRef(ref)
	return err
}

// checkSize refuses a size flag that does not parse; "" is no flag.
func checkSize(s string) error {
	if s == "" {
		return nil
	}
	_, err := parseSize(s)
	return err
}

func (a *app) imageCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "image", Aliases: []string{"images"}, Short: "Import, list, inspect and remove images (layers are read-only snapshots)"}
	var name, baseSize string
	imp := &cobra.Command{
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
			if name != "" {
				if err := checkImageRef(name); err != nil {
					return err
				}
			}
			return checkSize(baseSize)
		}),
		RunE: func(cmd *cobra.Command, args []string) error {
			var bsz int64
			if baseSize != "" {
				n, err := parseSize(baseSize)
				if err != nil {
					return err
				}
				bsz = roundUp(n, thinpool.SectorSize)
			}
			m, err := a.manager()
			if err != nil {
				return err
			}
			ctx, stop := a.interruptible(cmd.Context())
			defer stop()
			prog := a.newProgress("importing", 0)
			imgs, err := m.ImportImage(ctx, a.abs(args[0]), a.in, volumes.ImportOptions{Name: name, BaseSize: bsz,
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
				return a.printJSON(imgs)
			}
			for _, im := range imgs {
				a.say("Imported %s: %d layers, %s (%s shared with other images, %s unique)", im.Name, len(im.Layers),
					formatSize(im.Size), formatSize(im.SharedSize), formatSize(im.UniqueSize))
			}
			return nil
		},
	}
	imp.Flags().StringVar(&name, "name", "", "NAME[:TAG] of the image (default: the archive's)")
	imp.Flags().StringVar(&baseSize, "base-size", "", "size of the pool's base device when it is first made (default 10G); "+sizeHelp)
	ls := &cobra.Command{
		Use: "ls", Aliases: []string{"list"}, Short: "List images with their layers and shared and unique size", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := a.manager()
			if err != nil {
				return err
			}
			imgs := m.ListImages()
			if a.json {
				return a.printJSON(nonNil(imgs))
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
					formatSize(im.SharedSize), formatSize(im.UniqueSize), fmt.Sprint(len(im.Containers)), im.Created.Local().Format("2006-01-02 15:04")})
			}
			return a.table(rows)
		},
	}
	inspect := &cobra.Command{
		Use: "inspect IMAGE", Short: "Show an image's layers, chain IDs, sizes and config (JSON)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := a.manager()
			if err != nil {
				return err
			}
			im, err := m.InspectImage(args[0])
			if err != nil {
				return err
			}
			return a.printJSON(im)
		},
	}
	history := &cobra.Command{
		Use: "history IMAGE", Short: "Show how an image's layers were made", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := a.manager()
			if err != nil {
				return err
			}
			h, err := m.ImageHistory(args[0])
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(h)
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
				rows = append(rows, []string{layer, e.Created, by, formatSize(e.Size)})
			}
			return a.table(rows)
		},
	}
	rm := &cobra.Command{
		Use: "rm IMAGE...", Annotations: map[string]string{annObjects: "image"}, Aliases: []string{"remove"}, Short: "Remove images (refused while a container uses one)", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := a.manager()
			if err != nil {
				return err
			}
			for _, ref := range args {
				if err := m.RemoveImage(ref); err != nil {
					return err
				}
				a.say("Removed image %s", ref)
			}
			return nil
		},
	}
	cmd.AddCommand(imp, ls, inspect, history, rm)
	return cmd
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (a *app) containerCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "container", Short: "Create, mount, list, commit and remove containers (writable snapshots of images)"}
	var name, size string
	var vols, mounts []string
	create := &cobra.Command{
		Use: "create --name NAME IMAGE", Annotations: map[string]string{annObjects: "image"},
		Short: "Create a container: a writable snapshot of the image's top layer",
		Example: `  thinctl container create --name web -v data:/var/lib/data -v /srv/www:/www:ro app:v2
  thinctl container create --name db --mount type=volume,source=pg,target=/var/lib/postgresql postgres`,
		Args: checkInput(cobra.ExactArgs(1), func(args []string) error {
			if err := checkImageRef(args[0]); err != nil {
				return err
			}
			return checkSize(size)
		}),
		RunE: func(cmd *cobra.Command, args []string) error {
			if name == "" {
				return errdefs.Newf(errdefs.ErrInvalidArgument, "container create needs --name")
			}
			o := volumes.ContainerOptions{Image: args[0]}
			if size != "" {
				n, err := parseSize(size)
				if err != nil {
					return err
				}
				o.Size = roundUp(n, thinpool.SectorSize)
			}
			for _, v := range vols {
				s, err := volumes.ParseVolumeFlag(v)
				if err != nil {
					return err
				}
				if s.Type == "bind" {
					s.Source = a.abs(s.Source)
				}
				o.Mounts = append(o.Mounts, s)
			}
			for _, v := range mounts {
				s, err := volumes.ParseMountFlag(v)
				if err != nil {
					return err
				}
				if s.Type == "bind" {
					s.Source = a.abs(s.Source)
				}
				o.Mounts = append(o.Mounts, s)
			}
			m, err := a.manager()
			if err != nil {
				return err
			}
			c, err := m.CreateContainer(name, o)
			if err != nil {
				return err
			}
			a.warnOvercommit(m.Pool())
			if a.json {
				return a.printJSON(c)
			}
			a.say("Created container %s from %s", c.Name, c.Image)
			return nil
		},
	}
	create.Flags().StringVar(&name, "name", "", "container name")
	create.Flags().StringVar(&size, "size", "", "root filesystem size, if larger than the image's; "+sizeHelp)
	create.Flags().StringArrayVarP(&vols, "volume", "v", nil, "VOLUME:/path[:ro] or /host/dir:/path[:ro]")
	create.Flags().StringArrayVar(&mounts, "mount", nil, "type=volume|bind,source=SRC,target=/path[,readonly]")
	mount := &cobra.Command{
		Use: "mount NAME DIR", Annotations: map[string]string{annObjects: "container:1"}, Short: "Mount a container's root filesystem at DIR, with its volumes and bind mounts", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := a.manager()
			if err != nil {
				return err
			}
			c, err := m.MountContainer(args[0], a.abs(args[1]))
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(c)
			}
			a.say("Mounted container %s at %s", c.Name, c.MountedAt)
			return nil
		},
	}
	umount := &cobra.Command{
		Use: "umount NAME", Annotations: map[string]string{annObjects: "container"}, Aliases: []string{"unmount"}, Short: "Unmount a container", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := a.manager()
			if err != nil {
				return err
			}
			if err := m.UnmountContainer(args[0]); err != nil {
				return err
			}
			a.say("Unmounted container %s", args[0])
			return nil
		},
	}
	ls := &cobra.Command{
		Use: "ls", Aliases: []string{"list", "ps"}, Short: "List containers", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := a.manager()
			if err != nil {
				return err
			}
			cs := m.ListContainers()
			if a.json {
				return a.printJSON(nonNil(cs))
			}
			if a.quiet {
				for _, c := range cs {
					fmt.Fprintln(a.out, c.Name)
				}
				return nil
			}
			rows := [][]string{{"NAME", "IMAGE", "SIZE USED", "VOLUMES", "MOUNTED AT"}}
			for _, c := range cs {
				var vs []string
				for _, s := range c.Mounts {
					vs = append(vs, s.Source+":"+s.Target)
				}
				at := c.MountedAt
				if at == "" {
					at = "-"
				}
				vol := strings.Join(vs, ",")
				if vol == "" {
					vol = "-"
				}
				rows = append(rows, []string{c.Name, c.Image, formatSize(c.UsedBytes), vol, at})
			}
			return a.table(rows)
		},
	}
	inspect := &cobra.Command{
		Use: "inspect NAME", Short: "Show a container (JSON)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := a.manager()
			if err != nil {
				return err
			}
			c, err := m.InspectContainer(args[0])
			if err != nil {
				return err
			}
			return a.printJSON(c)
		},
	}
	var force, rmVolumes bool
	rm := &cobra.Command{
		Use: "rm NAME...", Aliases: []string{"remove"}, Short: "Remove containers (their changes go; volumes stay)", Args: cobra.MinimumNArgs(1),
		Annotations: map[string]string{annObjects: "container"},
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := a.manager()
			if err != nil {
				return err
			}
			for _, n := range args {
				var specs []volumes.MountSpec
				if c, err := m.InspectContainer(n); err == nil {
					specs = c.Mounts
				}
				if err := m.RemoveContainer(n, force); err != nil {
					return err
				}
				a.say("Removed container %s", n)
				if rmVolumes {
					removed, err := m.RemoveAnonymousVolumes(specs)
					for _, v := range removed {
						a.say("Removed anonymous volume %s", v)
					}
					if err != nil {
						return err
					}
				}
			}
			return nil
		},
	}
	rm.Flags().BoolVarP(&force, "force", "f", false, "unmount a mounted container first")
	rm.Flags().BoolVarP(&rmVolumes, "volumes", "v", false, "also remove the anonymous volumes it used (named volumes stay)")
	commit := &cobra.Command{
		Use: "commit NAME IMAGE[:TAG]", Annotations: map[string]string{annObjects: "container:1"}, Short: "Make a new image whose top layer is the container's current state",
		Args: checkInput(cobra.ExactArgs(2), func(args []string) error { return checkImageRef(args[1]) }),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := a.manager()
			if err != nil {
				return err
			}
			im, err := m.CommitContainer(args[0], args[1])
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(im)
			}
			a.say("Committed container %s as %s (%d layers)", args[0], im.Name, len(im.Layers))
			return nil
		},
	}
	cmd.AddCommand(create, mount, umount, ls, inspect, rm, commit)
	return cmd
}

func (a *app) volumeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "volume", Short: "Create, list, inspect and remove volumes (thin devices that outlive containers)"}
	var size, fs string
	var labels []string
	create := &cobra.Command{
		Use: "create [NAME]", Short: "Create a volume: its own thin device and filesystem",
		Args: checkInput(cobra.MaximumNArgs(1), func([]string) error { return checkSize(size) }),
		RunE: func(cmd *cobra.Command, args []string) error {
			o := volumes.VolumeOptions{FS: fs}
			if size != "" {
				n, err := parseSize(size)
				if err != nil {
					return err
				}
				o.Size = n
			}
			lm, err := parseLabels(labels)
			if err != nil {
				return err
			}
			o.Labels = lm
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			m, err := a.manager()
			if err != nil {
				return err
			}
			v, err := m.CreateVolume(name, o)
			if err != nil {
				return err
			}
			a.warnOvercommit(m.Pool())
			if a.json {
				return a.printJSON(v)
			}
			fmt.Fprintln(a.out, v.Name)
			return nil
		},
	}
	create.Flags().StringVar(&size, "size", "10G", "volume size; "+sizeHelp)
	create.Flags().StringVar(&fs, "fs", "ext4", "filesystem: ext4 or xfs")
	create.Flags().StringArrayVar(&labels, "label", nil, "KEY=VALUE (repeatable)")
	var filters []string
	ls := &cobra.Command{
		Use: "ls", Aliases: []string{"list"}, Short: "List volumes", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var f volumes.VolumeFilter
			for _, flt := range filters {
				k, v, _ := strings.Cut(flt, "=")
				switch k {
				case "dangling":
					d := v == "true" || v == "1"
					f.Dangling = &d
				case "label":
					if f.Labels == nil {
						f.Labels = map[string]string{}
					}
					lk, lv, _ := strings.Cut(v, "=")
					f.Labels[lk] = lv
				default:
					return errdefs.Newf(errdefs.ErrInvalidArgument, "bad filter %q: dangling=true|false or label=KEY[=VALUE]", flt)
				}
			}
			m, err := a.manager()
			if err != nil {
				return err
			}
			vs := m.ListVolumes(f)
			if a.json {
				return a.printJSON(nonNil(vs))
			}
			if a.quiet {
				for _, v := range vs {
					fmt.Fprintln(a.out, v.Name)
				}
				return nil
			}
			rows := [][]string{{"DRIVER", "VOLUME NAME", "SIZE", "USED", "FS", "CONTAINERS"}}
			for _, v := range vs {
				users := strings.Join(v.InUseBy, ",")
				if users == "" {
					users = "-"
				}
				rows = append(rows, []string{v.Driver, v.Name, formatSize(v.Size), formatSize(v.UsedBytes), v.Options["fs"], users})
			}
			return a.table(rows)
		},
	}
	ls.Flags().StringArrayVarP(&filters, "filter", "f", nil, "dangling=true|false, label=KEY[=VALUE]")
	inspect := &cobra.Command{
		Use: "inspect NAME...", Short: "Show volumes as docker volume inspect does (JSON)", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := a.manager()
			if err != nil {
				return err
			}
			var out []*volumes.Volume
			for _, n := range args {
				v, err := m.InspectVolume(n)
				if err != nil {
					return err
				}
				out = append(out, v)
			}
			return a.printJSON(out)
		},
	}
	var force bool
	rm := &cobra.Command{
		Use: "rm NAME...", Aliases: []string{"remove"}, Short: "Remove volumes and their data (refused while a container uses one)", Args: cobra.MinimumNArgs(1),
		Long: `Remove volumes and their data. A volume that any container references,
mounted or not, is refused (the error names the containers), with or without
-f, as docker volume rm does: remove the containers first. -f only makes a
volume that does not exist no error.`,
		Annotations: map[string]string{annObjects: "volume"},
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := a.manager()
			if err != nil {
				return err
			}
			for _, n := range args {
				err := m.RemoveVolume(n)
				if force && errors.Is(err, volumes.ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				fmt.Fprintln(a.out, n)
			}
			return nil
		},
	}
	rm.Flags().BoolVarP(&force, "force", "f", false, "no error for a volume that does not exist (a volume in use is still refused)")
	var pruneAll, pruneForce bool
	prune := &cobra.Command{
		Use: "prune", Short: "Remove the anonymous volumes no container uses (--all: every unused volume)",
		// Without a terminal to ask on it fails before it starts a daemon.
		Args: checkInput(cobra.NoArgs, func([]string) error {
			if _, ok := a.terminal(); !ok && !pruneForce {
				return fmt.Errorf("volume prune: %w; use -f to prune without asking", errNoTerminal)
			}
			return nil
		}),
		Long: `Remove the anonymous volumes (those a container's -v /path or --mount with no
source made) that no container references, as docker volume prune does;
--all removes every volume no container references, named ones too. It asks
for confirmation on the terminal, and refuses without one, unless -f.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := a.manager()
			if err != nil {
				return err
			}
			if !pruneForce {
				what := "anonymous local volumes not used by at least one container"
				if pruneAll {
					what = "all local volumes not used by at least one container"
				}
				ok, err := a.confirm("WARNING! This will remove " + what + ".\nAre you sure you want to continue? [y/N] ")
				if err != nil {
					return fmt.Errorf("volume prune: %w; use -f to prune without asking", err)
				}
				if !ok {
					a.say("Nothing removed")
					return nil
				}
			}
			removed, err := m.PruneVolumes(pruneAll)
			for _, n := range removed {
				fmt.Fprintln(a.out, n)
			}
			if err != nil {
				return err
			}
			a.say("Removed %d volumes", len(removed))
			return nil
		},
	}
	prune.Flags().BoolVarP(&pruneAll, "all", "a", false, "also remove unused named volumes")
	prune.Flags().BoolVarP(&pruneForce, "force", "f", false, "do not ask for confirmation")
	cmd.AddCommand(create, ls, inspect, rm, prune)
	return cmd
}

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

func (a *app) infoCmd() *cobra.Command {
	return &cobra.Command{
		Use: "info", Short: "Show the storage section, as docker info does", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
					{" Autoextend", describeAutoextend(pi.Autoextend)},
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
		},
	}
}
