package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/chsnap/chsnap/vm"
)

// progressInterval is the least time between two redraws.
const progressInterval = 100 * time.Millisecond

// progress draws one status line for a long transfer: bytes done, rate,
// and, when the total is known, a percentage and the time left. It draws
// only when its writer is a terminal (see newProgress) and is silent
// otherwise, so logs and pipes stay clean. Its methods are safe for
// concurrent use (restore workers report from several goroutines) and do
// nothing on a nil *progress.
type progress struct {
	w     io.Writer
	label string
	now   func() time.Time

	mu    sync.Mutex
	done  uint64    // guarded by mu
	total uint64    // guarded by mu; 0 = unknown
	note  string    // guarded by mu; shown after the numbers
	start time.Time // guarded by mu
	last  time.Time // guarded by mu; the last draw
	drawn bool      // guarded by mu; a line is on the screen
}

// newProgress returns a progress line on w labelled label (e.g. "saving
// vm.snap"), or nil, which draws nothing, when w is not a terminal.
func newProgress(w io.Writer, label string) *progress {
	if !isTerminal(w) {
		return nil
	}
	return newProgressOn(w, label, time.Now)
}

// newProgressOn draws on w whatever it is, with the clock now (for tests).
func newProgressOn(w io.Writer, label string, now func() time.Time) *progress {
	return &progress{w: w, label: label, now: now, start: now()}
}

// SetTotal sets the number of bytes the transfer will reach; 0 = unknown.
func (p *progress) SetTotal(total uint64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.total = total
	p.mu.Unlock()
}

// SetNote sets a short text shown after the numbers, e.g. "guest RAM 2 GiB".
func (p *progress) SetNote(note string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.note = note
	p.mu.Unlock()
}

// Add counts n more bytes done.
func (p *progress) Add(n uint64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.done += n
	p.maybeDraw()
	p.mu.Unlock()
}

// Report sets done and total at once; its signature fits
// SnapshotOptions.Progress and memdump's Progress callbacks.
func (p *progress) Report(done, total uint64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.done, p.total = done, total
	p.maybeDraw()
	p.mu.Unlock()
}

// Done returns the bytes counted so far.
func (p *progress) Done() uint64 {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// Writer returns w counting every byte written through it.
func (p *progress) Writer(w io.Writer) io.Writer {
	if p == nil {
		return w
	}
	return &progressWriter{w: w, p: p}
}

// Finish replaces the line with summary (if not empty) and ends it, or
// just ends the line when summary is empty.
func (p *progress) Finish(summary string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case summary != "":
		fmt.Fprintf(p.w, "\r%s\x1b[K\n", summary)
	case p.drawn:
		fmt.Fprint(p.w, "\n")
	}
	p.drawn = false
}

// Elapsed is the time since the progress began.
func (p *progress) Elapsed() time.Duration {
	if p == nil {
		return 0
	}
	return p.now().Sub(p.start)
}

func (p *progress) maybeDraw() {
	t := p.now()
	if p.drawn && t.Sub(p.last) < progressInterval {
		return
	}
	p.last, p.drawn = t, true
	fmt.Fprintf(p.w, "\r%s\x1b[K", p.line(t))
}

// line renders the status line, e.g.
// "restoring vm.snap  45%  920 MiB of 2.0 GiB  310 MiB/s  0:04 left".
func (p *progress) line(t time.Time) string {
	el := t.Sub(p.start).Seconds()
	var rate float64
	if el > 0 {
		rate = float64(p.done) / el
	}
	parts := []string{p.label}
	if p.total > 0 {
		pct := float64(p.done) * 100 / float64(p.total)
		parts = append(parts, fmt.Sprintf("%3.0f%%", min(pct, 100)), vm.FormatSize(p.done)+" of "+vm.FormatSize(p.total))
	} else {
		parts = append(parts, vm.FormatSize(p.done))
	}
	if rate > 0 {
		parts = append(parts, vm.FormatSize(uint64(rate))+"/s")
		if p.total > p.done {
			left := time.Duration(float64(p.total-p.done) / rate * float64(time.Second))
			parts = append(parts, clock(left)+" left")
		}
	}
	if p.note != "" {
		parts = append(parts, "("+p.note+")")
	}
	return strings.Join(parts, "  ")
}

type progressWriter struct {
	w io.Writer
	p *progress
}

func (pw *progressWriter) Write(b []byte) (int, error) {
	n, err := pw.w.Write(b)
	pw.p.Add(uint64(n))
	return n, err
}

// clock formats d as m:ss or h:mm:ss.
func clock(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

// isTerminal reports whether w is an *os.File on a terminal.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok || f == nil {
		return false
	}
	return term.IsTerminal(int(f.Fd()))
}
