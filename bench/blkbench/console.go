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

// vmProc is a VMM process with the test guest's console on its stdin and
// stdout.
type vmProc struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan line
	mu     sync.Mutex
	tail   []string // the last console lines, for error messages
	stderr strings.Builder
	exited chan struct{}
}

func startVM(name string, cmd *exec.Cmd) (*vmProc, error) {
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("%s stdin: %w", name, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("%s stdout: %w", name, err)
	}
	p := &vmProc{name: name, cmd: cmd, stdin: stdin, lines: make(chan line, 1024), exited: make(chan struct{})}
	cmd.Stderr = writerFunc(func(b []byte) (int, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.stderr.Len() < 1<<16 {
			p.stderr.Write(b)
		}
		return len(b), nil
	})
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
				if len(p.tail) > 10 {
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

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

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

// command sends one command line and waits for a reply matching re.
func (p *vmProc) command(cmd, re string, timeout time.Duration) (line, error) {
	if _, err := io.WriteString(p.stdin, cmd+"\n"); err != nil {
		return line{}, fmt.Errorf("%s: send %q: %w", p.name, cmd, err)
	}
	return p.expect(re, timeout)
}

// kill ends the process and waits for it.
func (p *vmProc) kill() {
	p.cmd.Process.Kill()
	<-p.exited
}
