package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
)

// progressInterval is the least time between two redraws of a progress bar.
const progressInterval = 100 * time.Millisecond

// progressBarWidth is the number of cells between the brackets of the bar.
const progressBarWidth = 24

// progress draws a one-line progress bar, redrawn in place:
//
//	importing web  [=====>      ]  45%  1.2 GiB / 2.7 GiB  380 MiB/s  ETA 4s
//
// Methods on a nil *progress do nothing, so callers need not check whether a
// bar is shown. Not safe for concurrent use.
type progress struct {
	w     io.Writer
	now   func() time.Time
	label string
	// total is the number of bytes expected, or 0 if unknown: then there is
	// no bar, percentage or ETA.
	total int64
	// count makes done and total counts of steps rather than bytes.
	count bool
	// width is the terminal's width in columns (lines are cut to fit), or 0
	// if unknown.
	width int
	start time.Time
	last  time.Time // time of the last redraw
	drawn bool      // a line is on screen and finish must clear it
}

// newProgress returns a bar for label on stderr, or nil when stderr is not a
// terminal or --quiet is set.
func (a *app) newProgress(label string, total int64) *progress {
	if a.quiet {
		return nil
	}
	f, ok := a.err.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	p := startProgress(f, time.Now, label, total)
	if w, _, err := term.GetSize(int(f.Fd())); err == nil {
		p.width = w
	}
	return p
}

// startProgress returns a bar drawn on w with the clock now, starting now.
func startProgress(w io.Writer, now func() time.Time, label string, total int64) *progress {
	return &progress{w: w, now: now, label: label, total: total, start: now()}
}

// update reports that done bytes are finished. It redraws the line at most
// once every progressInterval.
func (p *progress) update(done int64) {
	if p == nil {
		return
	}
	t := p.now()
	if p.drawn && t.Sub(p.last) < progressInterval {
		return
	}
	p.last, p.drawn = t, true
	line := p.render(done, t.Sub(p.start))
	if p.width > 1 && len(line) >= p.width {
		line = line[:p.width-1]
	}
	fmt.Fprint(p.w, "\r\x1b[K"+line)
}

// finish clears the line, if one was drawn.
func (p *progress) finish() {
	if p == nil || !p.drawn {
		return
	}
	fmt.Fprint(p.w, "\r\x1b[K")
	p.drawn = false
}

// render formats the line for done bytes after elapsed.
func (p *progress) render(done int64, elapsed time.Duration) string {
	var b strings.Builder
	b.WriteString(p.label)
	if p.total > 0 {
		frac := min(1, max(0, float64(done)/float64(p.total)))
		fill := int(frac * progressBarWidth)
		bar := strings.Repeat("=", fill)
		if fill < progressBarWidth {
			bar += ">" + strings.Repeat(" ", progressBarWidth-fill-1)
		}
		if p.count {
			fmt.Fprintf(&b, "  [%s] %3.0f%%  %d/%d", bar, frac*100, done, p.total)
		} else {
			fmt.Fprintf(&b, "  [%s] %3.0f%%  %s / %s", bar, frac*100, formatSize(done), formatSize(p.total))
		}
	} else {
		fmt.Fprintf(&b, "  %s", formatSize(done))
	}
	if elapsed <= 0 || done <= 0 {
		return b.String()
	}
	rate := float64(done) / elapsed.Seconds()
	if !p.count {
		fmt.Fprintf(&b, "  %s/s", formatSize(int64(rate)))
	}
	if p.total > 0 && done < p.total {
		eta := time.Duration(float64(p.total-done) / rate * float64(time.Second))
		fmt.Fprintf(&b, "  ETA %s", eta.Round(time.Second))
	}
	return b.String()
}
