// Package vmcon drives a VMM process (chsnap or QEMU) whose guest is
// chsnap's test guest, over the serial console on the process's stdin and
// stdout: the benchmarks use it to send line commands and time the replies.
package vmcon

import (
	"bufio"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Line is one line of guest console output and the time it was read.
type Line struct {
	Text string    // the line, without its line ending
	At   time.Time // when it was read
}

// Proc is a VMM process (chsnap or QEMU) with the test guest's console on
// its stdin and stdout.
type Proc struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan Line
	start  time.Time
	stderr *strings.Builder
	mu     sync.Mutex
	tail   []string // the last console lines, for error messages
	exited chan struct{}
}

// Start starts name's command with the console on pipes; start is taken
// just before the process starts.
func Start(name string, cmd *exec.Cmd) (*Proc, error) {
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("%s stdin: %w", name, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("%s stdout: %w", name, err)
	}
	p := &Proc{name: name, cmd: cmd, stdin: stdin, lines: make(chan Line, 1<<16),
		stderr: &strings.Builder{}, exited: make(chan struct{})}
	cmd.Stderr = &lockedWriter{mu: &p.mu, w: p.stderr}
	p.start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		r := bufio.NewReader(stdout)
		for {
			s, err := r.ReadString('\n')
			if s != "" {
				at := time.Now()
				s = strings.TrimRight(s, "\r\n")
				p.mu.Lock()
				p.tail = append(p.tail, s)
				if len(p.tail) > 20 {
					p.tail = p.tail[1:]
				}
				p.mu.Unlock()
				select {
				case p.lines <- Line{s, at}:
				default: // nobody reads that many lines; drop
				}
			}
			if err != nil {
				close(p.lines)
				return
			}
		}
	}()
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// lockedWriter serialises writes to w under mu.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// Name is the name the process was started with ("chsnap", "qemu").
func (p *Proc) Name() string { return p.name }

// Context describes the process's recent output for an error message.
func (p *Proc) Context() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Sprintf("console tail %q, stderr %q", p.tail, strings.TrimSpace(p.stderr.String()))
}

// Expect waits for a console line matching re.
func (p *Proc) Expect(re string, timeout time.Duration) (Line, error) {
	rx := regexp.MustCompile(re)
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				return Line{}, fmt.Errorf("%s: console closed waiting for %q; %s", p.name, re, p.Context())
			}
			if rx.MatchString(l.Text) {
				return l, nil
			}
		case <-deadline:
			return Line{}, fmt.Errorf("%s: no %q within %v; %s", p.name, re, timeout, p.Context())
		}
	}
}

// Send writes one command line to the guest.
func (p *Proc) Send(cmd string) error {
	if _, err := io.WriteString(p.stdin, cmd+"\n"); err != nil {
		return fmt.Errorf("%s: send %q: %w", p.name, cmd, err)
	}
	return nil
}

// Command sends cmd and waits for a reply matching re.
func (p *Proc) Command(cmd, re string, timeout time.Duration) (Line, error) {
	if err := p.Send(cmd); err != nil {
		return Line{}, err
	}
	return p.Expect(re, timeout)
}

// Sync makes sure no reply to an earlier command is still on its way.
func (p *Proc) Sync(tag string) error {
	_, err := p.Command("echo sync "+tag, "^echo sync "+regexp.QuoteMeta(tag)+"$", 2*time.Minute)
	return err
}

// FirstAnswer sends `cpus` now and every 50 ms until the guest replies (a
// reply to a command that lost bytes on the way counts too: the guest ran
// and answered) and returns the time from process start to that reply.
// Commands sent before the guest runs wait in the pipe or the UART.
func (p *Proc) FirstAnswer(timeout time.Duration) (time.Duration, error) {
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if p.Send("cpus") != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	l, err := p.Expect(`^(cpus \d+|error .*)$`, timeout)
	if err != nil {
		return 0, err
	}
	return l.At.Sub(p.start), nil
}

// Kill ends the process and waits for it.
func (p *Proc) Kill() {
	p.cmd.Process.Kill()
	<-p.exited
}
