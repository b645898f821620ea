package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/chsnap/chsnap/fdmap"
)

// Client calls a chsnap (or Cloud Hypervisor) API socket. Its methods are
// safe for concurrent use.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client for the socket at socketPath. It does not
// connect until the first call.
func NewClient(socketPath string) *Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", socketPath)
		},
		DisableCompression:    true,
		MaxIdleConns:          1,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: 0, // a snapshot to a file answers only when done
	}
	return &Client{socket: socketPath, hc: &http.Client{Transport: tr}}
}

// Error is a failed call: the server's status and message. It matches
// ErrState (409) and ErrNotImplemented (501) with errors.Is.
type Error struct {
	// Op is the operation, e.g. "vm.pause".
	Op string
	// StatusCode is the HTTP status.
	StatusCode int
	// Message is the server's message.
	Message string
}

// Error reads "op: message", e.g. "vm.pause: the VM is already paused".
func (e *Error) Error() string { return e.Op + ": " + e.Message }

// Is reports whether the error's status code stands for target.
func (e *Error) Is(target error) bool {
	return target == ErrState && e.StatusCode == http.StatusConflict ||
		target == ErrNotImplemented && e.StatusCode == http.StatusNotImplemented
}

// Ping calls vmm.ping.
func (c *Client) Ping(ctx context.Context) (PingResponse, error) {
	var p PingResponse
	err := c.call(ctx, http.MethodGet, OpPing, nil, &p)
	return p, err
}

// Info calls vm.info.
func (c *Client) Info(ctx context.Context) (VMInfo, error) {
	var info VMInfo
	err := c.call(ctx, http.MethodGet, OpInfo, nil, &info)
	return info, err
}

// Pause calls vm.pause.
func (c *Client) Pause(ctx context.Context) error {
	return c.call(ctx, http.MethodPut, OpPause, nil, nil)
}

// Resume calls vm.resume.
func (c *Client) Resume(ctx context.Context) error {
	return c.call(ctx, http.MethodPut, OpResume, nil, nil)
}

// Shutdown calls vmm.shutdown.
func (c *Client) Shutdown(ctx context.Context) error {
	return c.call(ctx, http.MethodPut, OpShutdown, nil, nil)
}

// Snapshot calls vm.snapshot: the VMM writes the archive to destPath, an
// absolute path on the VMM's host.
func (c *Client) Snapshot(ctx context.Context, destPath string) error {
	if !strings.HasPrefix(destPath, "/") {
		return fmt.Errorf("%s: destination %q is not an absolute path", OpSnapshot, destPath)
	}
	u := (&url.URL{Scheme: "file", Path: destPath}).String()
	return c.call(ctx, http.MethodPut, OpSnapshot, SnapshotConfig{DestinationURL: u}, nil)
}

// StreamOptions tunes SnapshotStreamTo.
type StreamOptions struct {
	// LeavePaused keeps the VM paused after the snapshot.
	LeavePaused bool
	// OnStart, if not nil, is called once the archive begins, with guest
	// RAM in bytes (0 when the server did not say).
	OnStart func(memoryBytes uint64)
}

// SnapshotStream calls vm.snapshot.stream and copies the archive to w. It
// returns the bytes copied and an error if the call failed, the server
// reported a failure in its trailer, the body was cut off, or w failed; in
// every error case what reached w is not a valid archive.
func (c *Client) SnapshotStream(ctx context.Context, w io.Writer, leavePaused bool) (int64, error) {
	return c.SnapshotStreamTo(ctx, w, StreamOptions{LeavePaused: leavePaused})
}

// SnapshotStreamTo is SnapshotStream with options.
func (c *Client) SnapshotStreamTo(ctx context.Context, w io.Writer, opt StreamOptions) (int64, error) {
	resp, err := c.do(ctx, http.MethodPut, OpSnapshotStream, StreamConfig{LeavePaused: opt.LeavePaused})
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, responseError(OpSnapshotStream, resp)
	}
	if opt.OnStart != nil {
		mem, _ := strconv.ParseUint(resp.Header.Get(HeaderMemoryBytes), 10, 64)
		opt.OnStart(mem)
	}
	n, err := io.Copy(tagWriter{w}, resp.Body)
	var we *copyWriteError
	switch {
	case errors.As(err, &we):
		return n, fmt.Errorf("%s: write archive after %d bytes: %w", OpSnapshotStream, n, we.err)
	case err != nil && ctx.Err() != nil:
		return n, fmt.Errorf("%s: interrupted after %d bytes: %w", OpSnapshotStream, n, ctx.Err())
	case err != nil:
		return n, fmt.Errorf("%s: archive cut off after %d bytes: %w", OpSnapshotStream, n, err)
	}
	if msg := resp.Trailer.Get(TrailerError); msg != "" {
		return n, fmt.Errorf("%s: failed after %d bytes: %s", OpSnapshotStream, n, msg)
	}
	if n == 0 {
		return 0, fmt.Errorf("%s: the server sent an empty archive", OpSnapshotStream)
	}
	return n, nil
}

// tagWriter marks the errors of the caller's writer, so that they are told
// apart from the body's.
type tagWriter struct{ w io.Writer }

func (t tagWriter) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	if err != nil {
		err = &copyWriteError{err}
	}
	return n, err
}

// copyWriteError marks an error from the caller's writer.
type copyWriteError struct{ err error }

func (e *copyWriteError) Error() string { return e.err.Error() }
func (e *copyWriteError) Unwrap() error { return e.err }

// call sends a request and decodes a JSON answer into out (if not nil).
func (c *Client) call(ctx context.Context, method, op string, in, out any) error {
	resp, err := c.do(ctx, method, op, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return responseError(op, resp)
	}
	if out == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, MaxBodySize))
		return nil
	}
	dec := json.NewDecoder(io.LimitReader(resp.Body, 16<<20))
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("%s: decode answer: %w", op, err)
	}
	return nil
}

func (c *Client) do(ctx context.Context, method, op string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("%s: encode request: %w", op, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://localhost"+Prefix+op, body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.connError(op, err)
	}
	return resp, nil
}

// connError words a failure to reach the socket, without the request URL
// (which is always http://localhost/...).
func (c *Client) connError(op string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%s: no VMM is listening on %s (is chsnap running with this --api-socket or --name?): %w", op, c.socket, oe.Err)
		}
		return fmt.Errorf("%s: connect to %s: %w", op, c.socket, oe.Err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// responseError reads an error response. It understands chsnap's
// {"error": "..."}, Cloud Hypervisor's JSON array of messages, and plain text.
func responseError(op string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, MaxBodySize))
	b = bytes.TrimSpace(b)
	msg := ""
	var er ErrorResponse
	var chain []string
	switch {
	case json.Unmarshal(b, &er) == nil && er.Error != "":
		msg = er.Error
	case json.Unmarshal(b, &chain) == nil && len(chain) > 0:
		msg = strings.Join(chain, ": ")
	case len(b) > 0:
		msg = oneLine(string(b))
	default:
		msg = resp.Status
	}
	return &Error{Op: op, StatusCode: resp.StatusCode, Message: msg}
}

// Restore asks an empty VMM (one started with only its API socket) to
// restore the archive cfg.SourceURL names (PUT vm.restore). files are the
// tap descriptors for cfg.NetFDs, in order; they travel with the request's
// first bytes as SCM_RIGHTS, as Cloud Hypervisor's API takes them. Restore
// borrows files: the VMM gets duplicates and the caller closes its own.
func (c *Client) Restore(ctx context.Context, cfg RestoreConfig, files []*os.File) error {
	if len(files) == 0 {
		return c.call(ctx, http.MethodPut, OpRestore, cfg, nil)
	}
	body, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("%s: encode request: %w", OpRestore, err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		return c.connError(OpRestore, &net.OpError{Op: "dial", Net: "unix", Err: err})
	}
	defer conn.Close()
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return fmt.Errorf("%s: %s is not a Unix socket", OpRestore, c.socket)
	}
	if dl, ok := ctx.Deadline(); ok {
		uc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { uc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://localhost"+Prefix+OpRestore, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s: %w", OpRestore, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Close = true
	var wire bytes.Buffer
	if err := req.Write(&wire); err != nil {
		return fmt.Errorf("%s: encode request: %w", OpRestore, err)
	}
	if err := fdmap.SendFDs(uc, wire.Bytes(), files); err != nil {
		return fmt.Errorf("%s: send to %s: %w", OpRestore, c.socket, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(uc), req)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("%s: read answer from %s: %w", OpRestore, c.socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return responseError(OpRestore, resp)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, MaxBodySize))
	return nil
}
