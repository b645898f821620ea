package fdmap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
)

// NewListener wraps l so that descriptors sent with SCM_RIGHTS on its Unix
// stream connections are received instead of dropped: every Read of an
// accepted connection is a recvmsg with room for MaxSCMFDs descriptors, and
// what arrives is held on the connection (at most maxPending at a time; more
// is an error that ends the connection, and all its held fds are closed)
// until a handler takes it with TakeFDs or the connection closes.
// Connections that are not *net.UnixConn pass through unchanged.
//
// Use it with net/http as:
//
//	srv := &http.Server{Handler: fdmap.CloseUntaken(h), ConnContext: fdmap.ConnContext}
//	srv.Serve(fdmap.NewListener(l, 64))
//
// The listener takes ownership of l: closing it closes l.
func NewListener(l net.Listener, maxPending int) net.Listener {
	return &listener{Listener: l, max: maxPending}
}

type listener struct {
	net.Listener
	max int
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if uc, ok := c.(*net.UnixConn); ok {
		return &Conn{UnixConn: uc, max: l.max}, nil
	}
	return c, nil
}

// Conn is an accepted connection of a NewListener listener. It owns the
// descriptors received on it until TakeFDs hands them out or Close closes
// them. Its methods are safe for concurrent use, as net.Conn's are.
type Conn struct {
	*net.UnixConn
	max int

	mu sync.Mutex
	// pending holds received, untaken descriptors in arrival order;
	// guarded by mu.
	pending []*os.File
	// closed is set by Close; guarded by mu.
	closed bool
	// broken is the error every Read returns once the connection sent
	// too many fds; guarded by mu.
	broken error
}

// Read reads data as net.Conn's Read does, and keeps any descriptors that
// came with it. A stream read never returns 0 bytes with descriptors (Linux
// sends none without data), so fds are held no later than the read that
// returns the first byte of the message that carried them.
func (c *Conn) Read(b []byte) (int, error) {
	c.mu.Lock()
	broken := c.broken
	c.mu.Unlock()
	if broken != nil {
		return 0, broken
	}
	n, files, err := receiveFDs(c.UnixConn, b, MaxSCMFDs)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case errors.Is(err, ErrBadFD):
		// ReceiveFDs closed the fds and the data that came with them
		// cannot be trusted: break the connection.
		c.broken = err
		return 0, err
	case len(files) == 0:
		return n, err
	case c.closed:
		closeAll(files)
		return 0, net.ErrClosed
	case len(c.pending)+len(files) > c.max:
		// The connection is unusable from here on: the data that came
		// with these fds is dropped, so no later read may succeed.
		closeAll(files)
		closeAll(c.pending)
		c.pending = nil
		c.broken = fmt.Errorf("%w: connection sent more than %d fds not yet taken", ErrBadFD, c.max)
		return 0, c.broken
	}
	c.pending = append(c.pending, files...)
	return n, err
}

// TakeFDs hands the caller every descriptor received so far and not yet
// taken, in arrival order; the caller owns them.
func (c *Conn) TakeFDs() []*os.File {
	c.mu.Lock()
	defer c.mu.Unlock()
	files := c.pending
	c.pending = nil
	return files
}

// Close closes the connection and every descriptor still held on it.
func (c *Conn) Close() error {
	c.mu.Lock()
	c.closed = true
	files := c.pending
	c.pending = nil
	c.mu.Unlock()
	closeAll(files)
	return c.UnixConn.Close()
}

type connKey struct{}

// ConnContext is an http.Server ConnContext hook: it records the accepted
// connection in the context of every request served on it, for TakeFDs.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if fc, ok := c.(*Conn); ok {
		return context.WithValue(ctx, connKey{}, fc)
	}
	return ctx
}

// TakeFDs hands the caller the descriptors received so far on the
// connection that carried the request whose context is ctx (see
// ConnContext), or nil when there are none or the connection is not from a
// NewListener listener. Call it after reading the request body: a client
// may send the fds with the body rather than with the headers.
func TakeFDs(ctx context.Context) []*os.File {
	if c, ok := ctx.Value(connKey{}).(*Conn); ok {
		return c.TakeFDs()
	}
	return nil
}

// CloseUntaken wraps h so that descriptors that arrived on a request's
// connection and were not taken by the time h returns are closed: a client
// that sends fds with a request that does not use them gets them closed,
// not leaked or carried over to its next request.
func CloseUntaken(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { closeAll(TakeFDs(r.Context())) }()
		h.ServeHTTP(w, r)
	})
}

// receiveFDs is ReceiveFDs for Conn.Read: read errors come back unwrapped,
// because net/http tests them with type assertions (net.Error timeouts,
// io.EOF), and they are not errors about descriptors.
func receiveFDs(conn *net.UnixConn, buf []byte, max int) (int, []*os.File, error) {
	n, files, err := ReceiveFDs(conn, buf, max)
	var re *readError
	if errors.As(err, &re) {
		return n, nil, re.err
	}
	return n, files, err
}
