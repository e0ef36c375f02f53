package cli

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
)

// PhaseResult is one finished phase of up/redeploy/validate/nuke.
type PhaseResult struct {
	Name       string `json:"name"`
	Status     string `json:"status"` // ok, failed, skipped
	DurationMs int64  `json:"duration_ms"`
	Detail     string `json:"detail,omitempty"`
}

// Progress streams phases and milestone counts to the operator: a spinner
// redrawn in place on a terminal, plain timestamped-free lines otherwise
// (logs, CI, pipes). It records every phase for the report.
type Progress struct {
	mu      sync.Mutex
	w       io.Writer
	tty     bool
	phase   string
	start   time.Time
	status  string
	frame   int
	stop    chan struct{}
	done    chan struct{}
	results []PhaseResult
}

var spinnerFrames = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

// NewProgress writes to w; tty turns on the spinner.
func NewProgress(w io.Writer, tty bool) *Progress {
	return &Progress{w: w, tty: tty}
}

// isTerminal reports whether w is a terminal (and TERM is not dumb).
// Progress callers also honour AGENTOS_NO_SPINNER (config.Config.NoSpinner).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	if os.Getenv("TERM") == "dumb" {
		return false
	}
	return isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
}

// Phase ends the current phase as ok (if any) and starts a new one.
func (p *Progress) Phase(name string) {
	p.mu.Lock()
	cur := p.phase
	p.mu.Unlock()
	if cur != "" {
		p.End(nil, "")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.phase, p.start, p.status = name, time.Now(), ""
	if p.tty {
		p.stop, p.done = make(chan struct{}), make(chan struct{})
		go p.spin(p.stop, p.done)
	} else {
		fmt.Fprintf(p.w, "==> %s\n", name)
	}
}

func (p *Progress) spin(stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		p.mu.Lock()
		p.redrawLocked()
		p.mu.Unlock()
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

func (p *Progress) redrawLocked() {
	p.frame++
	fmt.Fprintf(p.w, "\r\033[K%s %s  %s", spinnerFrames[p.frame%len(spinnerFrames)], p.phase, p.status)
}

// Milestone reports a count inside the phase, e.g. ("services healthy", 2, 3).
func (p *Progress) Milestone(label string, done, total int) {
	p.Status(fmt.Sprintf("%s %d/%d", label, done, total))
}

// Status sets the phase's current status text.
func (p *Progress) Status(text string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status = text
	if p.tty {
		p.redrawLocked()
		return
	}
	fmt.Fprintf(p.w, "    %s\n", text)
}

// Info prints a permanent line.
func (p *Progress) Info(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.phase != "" {
		fmt.Fprint(p.w, "\r\033[K")
	}
	fmt.Fprintf(p.w, "    "+format+"\n", args...)
	if p.tty && p.phase != "" {
		p.redrawLocked()
	}
}

// End finishes the current phase: ok when err is nil, failed otherwise.
// detail (or the last status) is kept in the report.
func (p *Progress) End(err error, detail string) {
	p.mu.Lock()
	stop, done := p.stop, p.done
	p.stop, p.done = nil, nil
	p.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.phase == "" {
		return
	}
	if detail == "" {
		detail = p.status
	}
	r := PhaseResult{Name: p.phase, Status: "ok", DurationMs: time.Since(p.start).Milliseconds(), Detail: detail}
	mark := "ok  "
	if p.tty {
		mark = "✓"
		fmt.Fprint(p.w, "\r\033[K")
	}
	if err != nil {
		r.Status = "failed"
		if r.Detail == "" {
			r.Detail = err.Error()
		}
		mark = "FAIL"
		if p.tty {
			mark = "✗"
		}
	}
	line := fmt.Sprintf("%s %s (%s)", mark, p.phase, fmtDuration(time.Duration(r.DurationMs)*time.Millisecond))
	if r.Detail != "" {
		line += "  " + r.Detail
	}
	fmt.Fprintln(p.w, line)
	p.results = append(p.results, r)
	p.phase, p.status = "", ""
}

// Skip records a phase that did not run.
func (p *Progress) Skip(name, why string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.results = append(p.results, PhaseResult{Name: name, Status: "skipped", Detail: why})
	fmt.Fprintf(p.w, "--  %s skipped: %s\n", name, why)
}

// Results returns the finished phases.
func (p *Progress) Results() []PhaseResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]PhaseResult(nil), p.results...)
}

func fmtDuration(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}
