package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for progress.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestProgressLine(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	var out bytes.Buffer
	p := newProgressOn(&out, "restoring vm.snap", clk.now)
	p.SetTotal(2 << 30)
	clk.advance(2 * time.Second)
	p.Add(512 << 20)
	want := "\rrestoring vm.snap   25%  512 MiB of 2 GiB  256 MiB/s  0:06 left\x1b[K"
	if out.String() != want {
		t.Errorf("first draw %q, want %q", out.String(), want)
	}
	// Within progressInterval nothing is drawn; after it, the line is.
	out.Reset()
	p.Add(1)
	if out.Len() != 0 {
		t.Errorf("drew %q within %v of the last draw", out.String(), progressInterval)
	}
	clk.advance(progressInterval)
	p.Report(2<<30, 2<<30)
	if !strings.Contains(out.String(), "100%  2 GiB of 2 GiB") || strings.Contains(out.String(), "left") {
		t.Errorf("final draw %q", out.String())
	}
	out.Reset()
	p.Finish("restored vm.snap")
	if out.String() != "\rrestored vm.snap\x1b[K\n" {
		t.Errorf("Finish wrote %q", out.String())
	}
}

func TestProgressUnknownTotal(t *testing.T) {
	clk := &fakeClock{t: time.Unix(0, 0)}
	var out bytes.Buffer
	p := newProgressOn(&out, "saving -", clk.now)
	p.SetNote("guest RAM 1.0 GiB")
	clk.advance(time.Second)
	w := p.Writer(&bytes.Buffer{})
	w.Write(make([]byte, 3<<20))
	want := "\rsaving -  3 MiB  3 MiB/s  (guest RAM 1.0 GiB)\x1b[K"
	if out.String() != want {
		t.Errorf("draw %q, want %q", out.String(), want)
	}
	if p.Done() != 3<<20 {
		t.Errorf("Done = %d", p.Done())
	}
	out.Reset()
	p.Finish("")
	if out.String() != "\n" {
		t.Errorf("Finish(\"\") after a draw wrote %q, want a newline", out.String())
	}
}

// TestProgressSilent: not on a terminal, progress is nil and every method
// is a no-op.
func TestProgressSilent(t *testing.T) {
	var buf bytes.Buffer
	p := newProgress(&buf, "saving")
	if p != nil {
		t.Fatal("newProgress on a buffer is not nil")
	}
	w := p.Writer(&buf)
	w.Write([]byte("data"))
	p.Add(10)
	p.Report(1, 2)
	p.SetTotal(5)
	p.SetNote("x")
	p.Finish("done")
	if buf.String() != "data" || p.Done() != 0 || p.Elapsed() != 0 {
		t.Errorf("silent progress wrote %q", buf.String())
	}
}

func TestProgressConcurrent(t *testing.T) {
	var out bytes.Buffer
	p := newProgressOn(&out, "x", time.Now)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 1000; j++ {
				p.Add(1)
			}
		}()
	}
	wg.Wait()
	if p.Done() != 8000 {
		t.Errorf("Done = %d, want 8000", p.Done())
	}
}

func TestClock(t *testing.T) {
	if got := clock(3*time.Hour + 4*time.Minute + 5*time.Second); got != "3:04:05" {
		t.Errorf("clock = %q", got)
	}
}
