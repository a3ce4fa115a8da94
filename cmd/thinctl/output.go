package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"golang.org/x/term"
)

// printJSON writes v as indented JSON.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes aligned columns; the first row is the header.
func (a *app) table(rows [][]string) error {
	w := tabwriter.NewWriter(a.out, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(w, strings.Join(r, "\t"))
	}
	return w.Flush()
}

// kv writes "Key: value" lines with aligned values.
func (a *app) kv(pairs [][2]string) error {
	w := tabwriter.NewWriter(a.out, 0, 0, 1, ' ', 0)
	for _, p := range pairs {
		fmt.Fprintf(w, "%s:\t%s\n", p[0], p[1])
	}
	return w.Flush()
}

// say prints a line unless --quiet.
func (a *app) say(format string, args ...any) {
	if !a.quiet {
		fmt.Fprintf(a.out, format+"\n", args...)
	}
}

func percent(part, total uint64) float64 {
	if total == 0 {
		return 0
	}
	return float64(part) * 100 / float64(total)
}

// errNoTerminal is returned by confirm when stdin is not a terminal.
var errNoTerminal = errors.New("stdin is not a terminal to ask for confirmation on")

// confirm prints prompt and reports whether the answer read from the
// terminal is y or yes. With no terminal on stdin it asks nothing and
// returns errNoTerminal.
func (a *app) confirm(prompt string) (bool, error) {
	f, ok := a.terminal()
	if !ok {
		return false, errNoTerminal
	}
	fmt.Fprint(a.out, prompt)
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && line == "" {
		return false, nil
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true, nil
	}
	return false, nil
}

// terminal returns stdin if it is a terminal.
func (a *app) terminal() (*os.File, bool) {
	f, ok := a.in.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, false
	}
	return f, true
}
