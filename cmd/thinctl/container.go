package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/thinpool/thinpool/errdefs"
	"github.com/thinpool/thinpool/thinpool"
	"github.com/thinpool/thinpool/volumes"
)

func (a *app) newContainerCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "container", Short: "Create, mount, list, commit and remove containers (writable snapshots of images)"}
	cmd.AddCommand(a.newContainerCreateCmd(), a.newContainerMountCmd(), a.newContainerUmountCmd(), a.newContainerLsCmd(),
		a.newContainerInspectCmd(), a.newContainerRmCmd(), a.newContainerCommitCmd())
	return cmd
}

// containerCreateOptions are the argument and flags of 'container create'.
type containerCreateOptions struct {
	image   string
	name    string
	size    string
	volumes []string // -v VOLUME:/path[:ro] or /host/dir:/path[:ro]
	mounts  []string // --mount type=...,source=...,target=...
}

func (a *app) newContainerCreateCmd() *cobra.Command {
	o := &containerCreateOptions{}
	cmd := &cobra.Command{
		Use: "create --name NAME IMAGE", Annotations: map[string]string{annObjects: "image"},
		Short: "Create a container: a writable snapshot of the image's top layer",
		Example: `  thinctl container create --name web -v data:/var/lib/data -v /srv/www:/www:ro app:v2
  thinctl container create --name db --mount type=volume,source=pg,target=/var/lib/postgresql postgres`,
		Args: checkInput(cobra.ExactArgs(1), func(args []string) error {
			if err := checkImageRef(args[0]); err != nil {
				return err
			}
			return checkSize(o.size)
		}),
		ValidArgsFunction: a.completeNames("image", 1, cobra.ShellCompDirectiveNoFileComp),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.image = args[0]
			return a.runContainerCreate(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.name, "name", "", "container name")
	cmd.Flags().StringVar(&o.size, "size", "", "root filesystem size, if larger than the image's; "+sizeHelp)
	cmd.Flags().StringArrayVarP(&o.volumes, "volume", "v", nil, "VOLUME:/path[:ro] or /host/dir:/path[:ro]")
	cmd.Flags().StringArrayVar(&o.mounts, "mount", nil, "type=volume|bind,source=SRC,target=/path[,readonly]")
	return cmd
}

func (a *app) runContainerCreate(_ context.Context, o *containerCreateOptions) error {
	if o.name == "" {
		return errdefs.Newf(errdefs.ErrInvalidArgument, "container create needs --name")
	}
	co := volumes.ContainerOptions{Image: o.image}
	if o.size != "" {
		n, err := parseSize(o.size)
		if err != nil {
			return err
		}
		co.Size = roundUp(n, thinpool.SectorSize)
	}
	for _, v := range o.volumes {
		s, err := volumes.ParseVolumeFlag(v)
		if err != nil {
			return err
		}
		if s.Type == "bind" {
			s.Source = a.abs(s.Source)
		}
		co.Mounts = append(co.Mounts, s)
	}
	for _, v := range o.mounts {
		s, err := volumes.ParseMountFlag(v)
		if err != nil {
			return err
		}
		if s.Type == "bind" {
			s.Source = a.abs(s.Source)
		}
		co.Mounts = append(co.Mounts, s)
	}
	m, err := a.manager()
	if err != nil {
		return err
	}
	c, err := m.CreateContainer(o.name, co)
	if err != nil {
		return err
	}
	a.warnOvercommit(m.Pool())
	if a.json {
		return a.printJSON(containerView(c))
	}
	a.say("Created container %s from %s", c.Name, c.Image)
	return nil
}

// containerMountOptions are the arguments of 'container mount'.
type containerMountOptions struct {
	name, dir string
}

func (a *app) newContainerMountCmd() *cobra.Command {
	o := &containerMountOptions{}
	cmd := &cobra.Command{
		Use: "mount NAME DIR", Annotations: map[string]string{annObjects: "container:1"}, Short: "Mount a container's root filesystem at DIR, with its volumes and bind mounts", Args: cobra.ExactArgs(2),
		ValidArgsFunction: a.completeNames("container", 1, cobra.ShellCompDirectiveFilterDirs),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name, o.dir = args[0], args[1]
			return a.runContainerMount(cmd.Context(), o)
		},
	}
	return cmd
}

func (a *app) runContainerMount(_ context.Context, o *containerMountOptions) error {
	m, err := a.manager()
	if err != nil {
		return err
	}
	c, err := m.MountContainer(o.name, a.abs(o.dir))
	if err != nil {
		return err
	}
	if a.json {
		return a.printJSON(containerView(c))
	}
	a.say("Mounted container %s at %s", c.Name, c.MountedAt)
	return nil
}

// containerUmountOptions are the argument of 'container umount'.
type containerUmountOptions struct {
	name string
}

func (a *app) newContainerUmountCmd() *cobra.Command {
	o := &containerUmountOptions{}
	cmd := &cobra.Command{
		Use: "umount NAME", Annotations: map[string]string{annObjects: "container"}, Aliases: []string{"unmount"}, Short: "Unmount a container", Args: cobra.ExactArgs(1),
		ValidArgsFunction: a.completeNames("container", 1, cobra.ShellCompDirectiveNoFileComp),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name = args[0]
			return a.runContainerUmount(cmd.Context(), o)
		},
	}
	return cmd
}

func (a *app) runContainerUmount(_ context.Context, o *containerUmountOptions) error {
	m, err := a.manager()
	if err != nil {
		return err
	}
	if err := m.UnmountContainer(o.name); err != nil {
		return err
	}
	a.say("Unmounted container %s", o.name)
	return nil
}

// containerLsOptions are the flags of 'container ls' (none but the global ones).
type containerLsOptions struct{}

func (a *app) newContainerLsCmd() *cobra.Command {
	o := &containerLsOptions{}
	cmd := &cobra.Command{
		Use: "ls", Aliases: []string{"list", "ps"}, Short: "List containers", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runContainerLs(cmd.Context(), o)
		},
	}
	return cmd
}

func (a *app) runContainerLs(_ context.Context, o *containerLsOptions) error {
	m, err := a.manager()
	if err != nil {
		return err
	}
	cs := m.ListContainers()
	if a.json {
		return a.printJSON(containerViews(cs))
	}
	if a.quiet {
		for _, c := range cs {
			fmt.Fprintln(a.out, c.Name)
		}
		return nil
	}
	rows := [][]string{{"NAME", "IMAGE", "SIZE USED", "VOLUMES", "MOUNTED AT", "CREATED"}}
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
		rows = append(rows, []string{c.Name, c.Image, formatSize(c.UsedBytes), vol, at, tableTime(c.Created)})
	}
	return a.table(rows)
}

// containerInspectOptions are the argument of 'container inspect'.
type containerInspectOptions struct {
	name string
}

func (a *app) newContainerInspectCmd() *cobra.Command {
	o := &containerInspectOptions{}
	cmd := &cobra.Command{
		Use: "inspect NAME", Short: "Show a container (JSON)", Args: cobra.ExactArgs(1),
		ValidArgsFunction: a.completeNames("container", 1, cobra.ShellCompDirectiveNoFileComp),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name = args[0]
			return a.runContainerInspect(cmd.Context(), o)
		},
	}
	return cmd
}

func (a *app) runContainerInspect(_ context.Context, o *containerInspectOptions) error {
	m, err := a.manager()
	if err != nil {
		return err
	}
	c, err := m.InspectContainer(o.name)
	if err != nil {
		return err
	}
	return a.printJSON(containerView(c))
}

// containerRmOptions are the arguments and flags of 'container rm'.
type containerRmOptions struct {
	names   []string
	force   bool // unmount a mounted container first
	volumes bool // also remove its anonymous volumes
}

func (a *app) newContainerRmCmd() *cobra.Command {
	o := &containerRmOptions{}
	cmd := &cobra.Command{
		Use: "rm NAME...", Aliases: []string{"remove"}, Short: "Remove containers (their changes go; volumes stay)", Args: cobra.MinimumNArgs(1),
		Annotations:       map[string]string{annObjects: "container"},
		ValidArgsFunction: a.completeNames("container", -1, cobra.ShellCompDirectiveNoFileComp),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.names = args
			return a.runContainerRm(cmd.Context(), o)
		},
	}
	cmd.Flags().BoolVarP(&o.force, "force", "f", false, "unmount a mounted container first")
	cmd.Flags().BoolVarP(&o.volumes, "volumes", "v", false, "also remove the anonymous volumes it used (named volumes stay)")
	return cmd
}

func (a *app) runContainerRm(_ context.Context, o *containerRmOptions) error {
	m, err := a.manager()
	if err != nil {
		return err
	}
	for _, n := range o.names {
		var specs []volumes.MountSpec
		if c, err := m.InspectContainer(n); err == nil {
			specs = c.Mounts
		}
		if err := m.RemoveContainer(n, o.force); err != nil {
			return err
		}
		a.say("Removed container %s", n)
		if o.volumes {
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
}

// containerCommitOptions are the arguments of 'container commit'.
type containerCommitOptions struct {
	name  string
	image string // NAME[:TAG] of the new image
}

func (a *app) newContainerCommitCmd() *cobra.Command {
	o := &containerCommitOptions{}
	cmd := &cobra.Command{
		Use: "commit NAME IMAGE[:TAG]", Annotations: map[string]string{annObjects: "container:1"}, Short: "Make a new image whose top layer is the container's current state",
		Args:              checkInput(cobra.ExactArgs(2), func(args []string) error { return checkImageRef(args[1]) }),
		ValidArgsFunction: a.completeNames("container", 1, cobra.ShellCompDirectiveNoFileComp),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name, o.image = args[0], args[1]
			return a.runContainerCommit(cmd.Context(), o)
		},
	}
	return cmd
}

func (a *app) runContainerCommit(_ context.Context, o *containerCommitOptions) error {
	m, err := a.manager()
	if err != nil {
		return err
	}
	im, err := m.CommitContainer(o.name, o.image)
	if err != nil {
		return err
	}
	if a.json {
		return a.printJSON(imageView(im))
	}
	a.say("Committed container %s as %s (%d layers)", o.name, im.Name, len(im.Layers))
	return nil
}

// containerJSON is the JSON of a container in 'container ls', 'container
// inspect', 'container create' and 'container mount'.
type containerJSON struct {
	Name      string      `json:"name"`
	Image     string      `json:"image"`
	Device    string      `json:"device"`
	Size      int64       `json:"size"`
	UsedBytes int64       `json:"usedBytes"` // blocks the container changed (its copy-on-write layer)
	Mounts    []mountJSON `json:"mounts"`
	Created   time.Time   `json:"created"`
	MountedAt string      `json:"mountedAt"` // "" when not mounted
}

// mountJSON is a volume or bind mount of a container.
type mountJSON struct {
	Type       string `json:"type"`   // "volume" or "bind"
	Source     string `json:"source"` // volume name or absolute host directory
	Target     string `json:"target"` // absolute path inside the container
	ReadOnly   bool   `json:"readOnly"`
	AutoCreate bool   `json:"autoCreate"` // -v NAME:/path: the volume is made if missing
}

func containerView(c *volumes.Container) containerJSON {
	v := containerJSON{Name: c.Name, Image: c.Image, Device: c.Device, Size: c.Size, UsedBytes: c.UsedBytes,
		Mounts: []mountJSON{}, Created: c.Created, MountedAt: c.MountedAt}
	for _, m := range c.Mounts {
		v.Mounts = append(v.Mounts, mountJSON{Type: m.Type, Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly, AutoCreate: m.AutoCreate})
	}
	return v
}

func containerViews(cs []*volumes.Container) []containerJSON {
	out := make([]containerJSON, 0, len(cs))
	for _, c := range cs {
		out = append(out, containerView(c))
	}
	return out
}
