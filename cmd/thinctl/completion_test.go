package main

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// complete runs cobra's hidden __complete command, as a shell does on Tab,
// and returns the completions and the directive.
func complete(t *testing.T, pool string, args ...string) ([]string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"__complete", "--pool", pool}, args...), strings.NewReader(""), &stdout, &stderr)
	out, errOut := stdout.String(), stderr.String()
	if code != 0 {
		t.Fatalf("__complete %v: exit %d: %s", args, code, errOut)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, ":") {
		t.Fatalf("__complete %v: no directive in %q", args, out)
	}
	if strings.Contains(errOut, "thinctl:") {
		t.Errorf("__complete %v printed an error: %q", args, errOut)
	}
	return lines[:len(lines)-1], last
}

var (
	noFiles = fmt.Sprintf(":%d", cobra.ShellCompDirectiveNoFileComp)
	dirs    = fmt.Sprintf(":%d", cobra.ShellCompDirectiveFilterDirs)
	files   = fmt.Sprintf(":%d", cobra.ShellCompDirectiveDefault)
)

// TestCompletion: object names complete, by position, from the pool, with
// no file completion; names already given are not offered again.
func TestCompletion(t *testing.T) {
	pool := newPool(t, "1G")
	for _, d := range []string{"web", "db", "dbx"} {
		mustRun(t, pool, "device", "create", d, "--size", "16M")
	}
	mustRun(t, pool, "snapshot", "create", "web", "web-snap")
	all := []string{"db", "dbx", "web", "web-snap"}
	tests := []struct {
		args      []string
		want      []string
		directive string
	}{
		{[]string{"device", "rm", ""}, all, noFiles},
		{[]string{"device", "rm", "db", ""}, []string{"dbx", "web", "web-snap"}, noFiles},
		{[]string{"device", "inspect", "d"}, []string{"db", "dbx"}, noFiles},
		{[]string{"device", "inspect", "web", ""}, nil, noFiles},
		{[]string{"dev", "rename", "w"}, []string{"web", "web-snap"}, noFiles},
		{[]string{"device", "rename", "web", ""}, nil, noFiles},
		{[]string{"device", "diff", "web", ""}, []string{"db", "dbx", "web-snap"}, noFiles},
		{[]string{"device", "export", "web", ""}, nil, files},
		{[]string{"device", "import", ""}, all, noFiles},
		{[]string{"device", "mount", "web", ""}, nil, dirs},
		{[]string{"device", "attach", "db"}, []string{"db", "dbx"}, noFiles},
		{[]string{"snapshot", "create", ""}, all, noFiles},
		{[]string{"snapshot", "create", "web", ""}, nil, noFiles},
		{[]string{"device", "resize", "x"}, nil, noFiles},
		{[]string{"image", "rm", ""}, nil, noFiles},
		{[]string{"container", "create", "--name", "c", ""}, nil, noFiles},
		{[]string{"container", "mount", "c", ""}, nil, dirs},
		{[]string{"volume", "rm", ""}, nil, noFiles},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			got, directive := complete(t, pool, tc.args...)
			if !slices.Equal(got, tc.want) || directive != tc.directive {
				t.Fatalf("got %q %s, want %q %s", got, directive, tc.want, tc.directive)
			}
		})
	}
	// With no pool there are no names, and no error in the completions.
	if got, directive := complete(t, pool+".missing", "device", "rm", ""); len(got) != 0 || directive != noFiles {
		t.Fatalf("no pool: %q %s", got, directive)
	}
}

// TestEveryObjectArgCompletes: every command that takes the name of an
// existing device, snapshot, image, container or volume completes it.
func TestEveryObjectArgCompletes(t *testing.T) {
	a := &app{}
	root := a.rootCmd()
	newName := map[string]bool{"thinctl device create": true, "thinctl volume create": true}
	var walk func(c *cobra.Command)
	n := 0
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		use := strings.Fields(c.Use)
		if len(use) < 2 || newName[c.CommandPath()] {
			return
		}
		for _, arg := range use[1:] {
			arg = strings.Trim(arg, "[].")
			if strings.HasPrefix(arg, "-") {
				break
			}
			switch strings.Split(arg, "|")[0] {
			case "NAME", "ORIGIN", "OLD", "IMAGE", "A":
				n++
				if c.ValidArgsFunction == nil {
					t.Errorf("%s (%s) does not complete its arguments", c.CommandPath(), c.Use)
				}
				return
			}
		}
	}
	walk(root)
	if n < 20 {
		t.Fatalf("only %d commands take object names", n)
	}
}
