package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/thinpool/thinpool/errdefs"
	"github.com/thinpool/thinpool/thinpool"
	"github.com/thinpool/thinpool/volumes"
)

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
