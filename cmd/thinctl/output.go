package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"
)

// JSON and time conventions of every command's output:
//
//   - JSON names are camelCase, and every field is always there: a list with
//     nothing in it is [], a map {}, a string "" and a number 0; a time that
//     is not known (an image config without one) is null. The shapes are this
//     package's own view structs (deviceJSON, imageJSON, containerJSON,
//     volumeJSON...), not the structs of the layers below.
//   - Times are RFC 3339 in JSON (as time.Time marshals), and
//     tableTimeFormat in local time in tables (tableTime).

// tableTimeFormat is the format of every time in a table, in local time.
const tableTimeFormat = "2006-01-02 15:04:05"

// tableTime formats t for a table column; "-" for the zero time.
func tableTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(tableTimeFormat)
}

// timeOrNull is t for a JSON field that is null when the time is not known.
func timeOrNull(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// parseOCITime parses a time from an OCI image config (RFC 3339, as its
// spec says); ok is false for "" or anything else.
func parseOCITime(s string) (t time.Time, ok bool) {
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil && s != ""
}

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

// nonNil is s, or an empty slice for nil: [] in JSON, not null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// nonNilMap is m, or an empty map for nil: {} in JSON, not null.
func nonNilMap[K comparable, V any](m map[K]V) map[K]V {
	if m == nil {
		return map[K]V{}
	}
	return m
}
