package bench

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The fio job files every target runs. Their parameters come from the
// environment (fio expands ${VAR} in job files).
//
//go:embed fio/*.fio
var fioJobs embed.FS

// fioParams are the values of a job file's ${VAR}s.
type fioParams map[string]string

// fioResult is what the harness takes from fio's JSON output.
type fioResult struct {
	IOPS    float64       // I/Os per second
	BW      float64       // bytes per second
	IOs     int64         // I/Os done
	Runtime time.Duration // the job's run time, as fio measured it
}

// fio runs job file name (in bench/fio) with params and returns the summed
// read and write figures. The job may take at most its runtime plus
// slack: a stuck I/O (a hung FUSE server) ends it with an error.
func (h *harness) fio(name string, p fioParams, limit time.Duration) (fioResult, error) {
	job, err := h.fioJobFile(name)
	if err != nil {
		return fioResult{}, err
	}
	var env []string
	for k, v := range p {
		env = append(env, k+"="+v)
	}
	ctx, cancel := context.WithTimeout(h.ctx, limit)
	defer cancel()
	out, err := runCmd(ctx, env, "fio", "--output-format=json", job)
	if err != nil {
		return fioResult{}, err
	}
	// Ctrl-C reaches fio too, which then ends its job early and reports
	// it as if it were whole.
	if err := h.ctx.Err(); err != nil {
		return fioResult{}, err
	}
	return parseFio([]byte(out))
}

// fioJobFile writes the embedded job file into the work directory (fio
// reads files) and returns its path.
func (h *harness) fioJobFile(name string) (string, error) {
	b, err := fioJobs.ReadFile("fio/" + name)
	if err != nil {
		return "", err
	}
	d, err := h.dir("fio-jobs")
	if err != nil {
		return "", err
	}
	f := filepath.Join(d, name)
	return f, os.WriteFile(f, b, 0o644)
}

// fioCommand is the job file and the command line as the report shows
// them.
func fioCommand(name string, p fioParams, keys ...string) string {
	b, _ := fioJobs.ReadFile("fio/" + name)
	var vars []string
	for _, k := range keys {
		vars = append(vars, k+"="+p[k])
	}
	return fmt.Sprintf("# bench/fio/%s\n%s\n%s fio --output-format=json bench/fio/%s", name, strings.TrimSpace(string(b)), strings.Join(vars, " "), name)
}

func parseFio(out []byte) (fioResult, error) {
	// fio may print warnings before the JSON.
	if i := strings.IndexByte(string(out), '{'); i > 0 {
		out = out[i:]
	}
	var v struct {
		Jobs []struct {
			Error       int     `json:"error"`
			JobRuntime  float64 `json:"job_runtime"` // ms
			Read, Write struct {
				BWBytes  float64 `json:"bw_bytes"`
				IOPS     float64 `json:"iops"`
				TotalIOs int64   `json:"total_ios"`
			}
		} `json:"jobs"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		return fioResult{}, fmt.Errorf("fio output: %w", err)
	}
	if len(v.Jobs) == 0 {
		return fioResult{}, fmt.Errorf("fio output has no jobs")
	}
	var r fioResult
	for _, j := range v.Jobs {
		if j.Error != 0 {
			return fioResult{}, fmt.Errorf("fio job failed with error %d", j.Error)
		}
		r.IOPS += j.Read.IOPS + j.Write.IOPS
		r.BW += j.Read.BWBytes + j.Write.BWBytes
		r.IOs += j.Read.TotalIOs + j.Write.TotalIOs
		r.Runtime = max(r.Runtime, time.Duration(j.JobRuntime*float64(time.Millisecond)))
	}
	return r, nil
}

// secs formats d for a fio time option: fio reads "0.25" as 0 seconds, so
// milliseconds.
func secs(d time.Duration) string {
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}
