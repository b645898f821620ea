//go:build e2e

package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"
)

// console drives the test guest's line protocol over a serial stream: it
// reads lines in the background and lets a test wait for a line matching a
// pattern or send a command and take its one-line reply. Every line read and
// every command sent is kept in a transcript for failure messages.
type console struct {
	w     io.Writer
	lines chan string // lines read, "\r" stripped; closed at EOF

	mu sync.Mutex
	// transcript and readErr are guarded by mu.
	transcript strings.Builder
	readErr    error
}

// errConsoleClosed is returned once the guest's output has ended.
var errConsoleClosed = errors.New("console closed")

// newConsole starts reading lines from r (the guest's serial output) and
// sends commands to w (its serial input). The reader goroutine ends at EOF
// or on a read error on r.
func newConsole(r io.Reader, w io.Writer) *console {
	c := &console{w: w, lines: make(chan string, 4096)}
	go c.read(r)
	return c
}

func (c *console) read(r io.Reader) {
	defer close(c.lines)
	br := bufio.NewReader(r)
	for {
		s, err := br.ReadString('\n')
		if s != "" {
			s = strings.TrimRight(s, "\r\n")
			c.record("< " + s)
			c.lines <- s
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				c.mu.Lock()
				c.readErr = err
				c.mu.Unlock()
			}
			return
		}
	}
}

func (c *console) record(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.transcript.WriteString(s)
	c.transcript.WriteByte('\n')
}

// Transcript returns everything read ("< ") and sent ("> ") so far.
func (c *console) Transcript() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.transcript.String()
}

// next returns the next line, or an error at timeout or end of output.
func (c *console) next(deadline <-chan time.Time, what string) (string, error) {
	select {
	case s, ok := <-c.lines:
		if !ok {
			c.mu.Lock()
			err := c.readErr
			c.mu.Unlock()
			if err != nil {
				return "", fmt.Errorf("waiting for %s: %w: %w", what, errConsoleClosed, err)
			}
			return "", fmt.Errorf("waiting for %s: %w", what, errConsoleClosed)
		}
		return s, nil
	case <-deadline:
		return "", fmt.Errorf("waiting for %s: timed out", what)
	}
}

// Expect skips lines until one matches the regular expression re and
// returns its submatches (match[0] is the whole match). It fails after
// timeout or when the output ends.
func (c *console) Expect(re string, timeout time.Duration) ([]string, error) {
	rx, err := regexp.Compile(re)
	if err != nil {
		return nil, fmt.Errorf("expect %q: %w", re, err)
	}
	deadline := time.After(timeout)
	for {
		s, err := c.next(deadline, fmt.Sprintf("a line matching %q after %v", re, timeout))
		if err != nil {
			return nil, err
		}
		if m := rx.FindStringSubmatch(s); m != nil {
			return m, nil
		}
	}
}

// Command sends cmd as one line and returns the guest's reply: the next line
// whose first word is cmd's first word or "error" (other lines, such as
// asynchronous messages, are skipped). A guest "error ..." reply is returned
// as the reply with a nil error; err reports only a timeout or the end of
// the output.
func (c *console) Command(cmd string, timeout time.Duration) (string, error) {
	fields := strings.Fields(cmd)
	if len(fields) == 0 {
		return "", errors.New("command: empty command line gets no reply")
	}
	c.record("> " + cmd)
	if _, err := io.WriteString(c.w, cmd+"\n"); err != nil {
		return "", fmt.Errorf("command %q: write: %w", cmd, err)
	}
	deadline := time.After(timeout)
	for {
		s, err := c.next(deadline, fmt.Sprintf("the reply to %q after %v", cmd, timeout))
		if err != nil {
			return "", err
		}
		if replyTo(s, fields[0]) || replyTo(s, "error") {
			return s, nil
		}
	}
}

// Send sends line to the guest without waiting for a reply (for poweroff
// and reboot, which end the VM instead of answering).
func (c *console) Send(line string) error {
	c.record("> " + line)
	if _, err := io.WriteString(c.w, line+"\n"); err != nil {
		return fmt.Errorf("send %q: %w", line, err)
	}
	return nil
}

// replyTo reports whether line starts with the word w.
func replyTo(line, w string) bool {
	if !strings.HasPrefix(line, w) {
		return false
	}
	rest := line[len(w):]
	return rest == "" || rest[0] == ' ' || rest[0] == ':'
}
