// Command benchreport renders the results of thinctl bench as markdown
// (REPORT.md) with SVG plots beside it.
//
// Usage:
//
//	go run ./bench/cmd/benchreport -in bench/results/results.json -out bench/results
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/thinpool/thinpool/bench"
	"github.com/thinpool/thinpool/bench/report"
)

func main() {
	in := flag.String("in", "bench/results/results.json", "results JSON written by thinctl bench --out")
	out := flag.String("out", "", "directory for "+report.File+" and the plots (default: the directory of -in)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "benchreport: unexpected arguments %q\n", flag.Args())
		flag.Usage()
		os.Exit(2)
	}
	if *out == "" {
		*out = filepath.Dir(*in)
	}
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

// run reads the report in and writes its markdown and plots into dir.
func run(in, dir string) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	rep, err := bench.ReadReport(f)
	if err != nil {
		return fmt.Errorf("read %s: %w", in, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := report.Write(rep, dir); err != nil {
		return err
	}
	fmt.Println(filepath.Join(dir, report.File))
	return nil
}
