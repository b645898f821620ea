package main

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

// line is one line of guest console output and the time it was read.
type line struct {
	text string
	at   time.Time
}

// vmProc is a VMM process (chsnap or QEMU) with the test guest's console on
// its stdin and stdout.
type vmProc struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan line
	start  time.Time
	stderr *strings.Builder
	mu     sync.Mutex
	tail   []string // the last console lines, for error messages
	exited chan struct{}
}

// startVM starts name's command with the console on pipes; start is taken
// just before the process starts.
func startVM(name string, cmd *exec.Cmd) (*vmProc, error) {
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("%s stdin: %w", name, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("%s stdout: %w", name, err)
	}
	p := &vmProc{name: name, cmd: cmd, stdin: stdin, lines: make(chan line, 1<<16),
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
				case p.lines <- line{s, at}:
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

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// context describes the process's recent output for an error message.
func (p *vmProc) context() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Sprintf("console tail %q, stderr %q", p.tail, strings.TrimSpace(p.stderr.String()))
}

// expect waits for a console line matching re.
func (p *vmProc) expect(re string, timeout time.Duration) (line, error) {
	rx := regexp.MustCompile(re)
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				return line{}, fmt.Errorf("%s: console closed waiting for %q; %s", p.name, re, p.context())
			}
			if rx.MatchString(l.text) {
				return l, nil
			}
		case <-deadline:
			return line{}, fmt.Errorf("%s: no %q within %v; %s", p.name, re, timeout, p.context())
		}
	}
}

// send writes one command line to the guest.
func (p *vmProc) send(cmd string) error {
	if _, err := io.WriteString(p.stdin, cmd+"\n"); err != nil {
		return fmt.Errorf("%s: send %q: %w", p.name, cmd, err)
	}
	return nil
}

// command sends cmd and waits for a reply matching re.
func (p *vmProc) command(cmd, re string, timeout time.Duration) (line, error) {
	if err := p.send(cmd); err != nil {
		return line{}, err
	}
	return p.expect(re, timeout)
}

// sync makes sure no reply to an earlier command is still on its way.
func (p *vmProc) sync(tag string) error {
	_, err := p.command("echo sync "+tag, "^echo sync "+regexp.QuoteMeta(tag)+"$", 2*time.Minute)
	return err
}

// firstAnswer sends `cpus` now and every 50 ms until the guest replies (a
// reply to a command that lost bytes on the way counts too: the guest ran
// and answered) and returns the time from process start to that reply.
// Commands sent before the guest runs wait in the pipe or the UART.
func (p *vmProc) firstAnswer(timeout time.Duration) (time.Duration, error) {
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if p.send("cpus") != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	l, err := p.expect(`^(cpus \d+|error .*)$`, timeout)
	if err != nil {
		return 0, err
	}
	return l.at.Sub(p.start), nil
}

// kill ends the process and waits for it.
func (p *vmProc) kill() {
	p.cmd.Process.Kill()
	<-p.exited
}
