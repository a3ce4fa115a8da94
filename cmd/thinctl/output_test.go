package main

import (
	"encoding/json"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// camelCase is the form of every JSON name thinctl prints.
var camelCase = regexp.MustCompile(`^[a-z][a-zA-Z0-9]*$`)

// jsonFreeform are the fields whose keys are data, not names: labels and
// options are the user's, config is an image's OCI config as it is.
var jsonFreeform = map[string]bool{"labels": true, "options": true, "config": true}

// jsonTimes are the fields that hold a time.
var jsonTimes = map[string]bool{"created": true, "createdAt": true}

// tableTimeRe matches a time in a table (tableTimeFormat).
var tableTimeRe = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$`)

// checkJSON decodes out, the --json output of what, and fails the test
// unless every name in it is camelCase, every element of an array of
// objects has the same names, and every time is RFC 3339 (null where
// nullTimes is set). It returns the decoded document.
func checkJSON(t *testing.T, what, out string, nullTimes bool) any {
	t.Helper()
	var doc any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, out)
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if !camelCase.MatchString(k) {
					t.Errorf("%s: %s.%s is not camelCase", what, path, k)
				}
				if jsonTimes[k] {
					s, ok := e.(string)
					if _, err := time.Parse(time.RFC3339, s); (!ok || err != nil) && (e != nil || !nullTimes) {
						t.Errorf("%s: %s.%s = %v is not an RFC 3339 time", what, path, k, e)
					}
				}
				if !jsonFreeform[k] {
					walk(path+"."+k, e)
				}
			}
		case []any:
			var first []string
			for i, e := range v {
				if m, ok := e.(map[string]any); ok {
					keys := sortedKeys(m)
					if first == nil {
						first = keys
					} else if !slices.Equal(keys, first) {
						t.Errorf("%s: %s[%d] has fields %v, %s[0] has %v", what, path, i, keys, path, first)
					}
				}
				walk(path+"[]", e)
			}
		}
	}
	walk("", doc)
	return doc
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// jsonNames are the JSON names of the fields of the struct view.
func jsonNames(view any) []string {
	var names []string
	rt := reflect.TypeOf(view)
	for i := range rt.NumField() {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// requireFields fails unless every object in objs has exactly the fields
// of view: none is left out when it is empty.
func requireFields(t *testing.T, what string, objs []any, view any) {
	t.Helper()
	if len(objs) == 0 {
		t.Fatalf("%s: nothing to check", what)
	}
	for i, o := range objs {
		m, ok := o.(map[string]any)
		if !ok {
			t.Fatalf("%s[%d] is %T, not an object", what, i, o)
		}
		if got, want := sortedKeys(m), jsonNames(view); !slices.Equal(got, want) {
			t.Errorf("%s[%d] has fields %v, want %v", what, i, got, want)
		}
	}
}

// TestJSONStyle: every listing's and inspect's JSON has camelCase names,
// the same fields for every element, empty lists and maps as [] and {}
// rather than missing, and RFC 3339 times.
func TestJSONStyle(t *testing.T) {
	pool := newPool(t, "1G")
	mustRun(t, pool, "device", "create", "base", "--size", "64M", "--label", "role=test")
	mustRun(t, pool, "snapshot", "create", "base", "snap", "--readonly")
	mustRun(t, pool, "snapshot", "create", "snap", "snap2")

	docs := map[string]any{}
	for _, args := range [][]string{
		{"device", "ls"}, {"device", "inspect", "base"}, {"device", "inspect", "snap2"}, {"snapshot", "ls"},
		{"device", "create", "more", "--size", "1M"}, {"snapshot", "create", "base", "more-snap"},
		{"pool", "info"}, {"pool", "check"}, {"info"}, {"version"}, {"daemon", "status"},
		{"device", "diff", "base", "snap"},
		{"image", "ls"}, {"container", "ls"}, {"volume", "ls"},
	} {
		what := strings.Join(args, " ")
		docs[what] = checkJSON(t, what, mustRun(t, pool, append([]string{"--json"}, args...)...), false)
	}
	asList := func(v any) []any {
		if l, ok := v.([]any); ok {
			return l
		}
		return []any{v}
	}
	for what, view := range map[string]any{
		"device ls": deviceJSON{}, "device inspect base": deviceJSON{}, "device inspect snap2": deviceJSON{},
		"snapshot ls": deviceJSON{}, "device create more --size 1M": deviceJSON{}, "snapshot create base more-snap": deviceJSON{},
		"pool info": poolInfo{}, "pool check": checkResult{}, "info": infoJSON{}, "daemon status": daemonStatus{},
		"device diff base snap": diffJSON{},
	} {
		requireFields(t, what, asList(docs[what]), view)
	}
	// The chain is [] for a device with no origin, and lists the origins
	// of a snapshot, in every command that shows a device.
	for what, want := range map[string][]any{
		"device inspect base":            {},
		"device inspect snap2":           {"snap", "base"},
		"snapshot create base more-snap": {"base"},
	} {
		if got := docs[what].(map[string]any)["chain"]; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: chain %#v, want %#v", what, got, want)
		}
	}
	for _, what := range []string{"image ls", "container ls", "volume ls"} {
		if l, ok := docs[what].([]any); !ok || len(l) != 0 {
			t.Errorf("%s: %#v, want []", what, docs[what])
		}
	}
}

// TestTableTimes: every table that shows a time shows it as
// tableTimeFormat in local time, the same instant as the JSON's.
func TestTableTimes(t *testing.T) {
	pool := newPool(t, "1G")
	mustRun(t, pool, "device", "create", "base", "--size", "64M")
	mustRun(t, pool, "snapshot", "create", "base", "snap")
	var devs []deviceJSON
	if err := json.Unmarshal([]byte(mustRun(t, pool, "--json", "device", "ls")), &devs); err != nil {
		t.Fatal(err)
	}
	created := map[string]string{}
	for _, d := range devs {
		created[d.Name] = d.Created.Local().Format(tableTimeFormat)
	}
	for _, args := range [][]string{{"device", "ls"}, {"snapshot", "ls"}} {
		rows := tableRows(t, mustRun(t, pool, args...), "CREATED")
		if len(rows) == 0 {
			t.Fatalf("%v: no rows", args)
		}
		for _, r := range rows {
			if !tableTimeRe.MatchString(r.time) || r.time != created[r.name] {
				t.Errorf("%v: %s CREATED %q, want %q", args, r.name, r.time, created[r.name])
			}
		}
	}
}

// tableRow is a table's first column and its time column.
type tableRow struct{ name, time string }

// tableRows returns the rows of table whose last column, col, is a time
// (two words, as tableTimeFormat has).
func tableRows(t *testing.T, table, col string) []tableRow {
	t.Helper()
	lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
	if h := strings.Fields(lines[0]); h[len(h)-1] != col {
		t.Fatalf("table's last column is not %s:\n%s", col, table)
	}
	var rows []tableRow
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) < 3 {
			t.Fatalf("short row %q", l)
		}
		rows = append(rows, tableRow{f[0], f[len(f)-2] + " " + f[len(f)-1]})
	}
	return rows
}

func TestTableTime(t *testing.T) {
	if got := tableTime(time.Time{}); got != "-" {
		t.Errorf("zero time: %q", got)
	}
	at := time.Date(2024, 5, 6, 7, 8, 9, 500, time.UTC)
	if got := tableTime(at); got != at.Local().Format("2006-01-02 15:04:05") || !tableTimeRe.MatchString(got) {
		t.Errorf("tableTime: %q", got)
	}
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"2024-05-06T07:08:09Z", true},
		{"2024-05-06T07:08:09.123456789+02:00", true},
		{"", false},
		{"yesterday", false},
		{"2024-05-06 07:08:09", false},
	} {
		if _, ok := parseOCITime(tc.in); ok != tc.ok {
			t.Errorf("parseOCITime(%q) ok = %v, want %v", tc.in, ok, tc.ok)
		}
	}
}
