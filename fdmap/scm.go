package fdmap

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// MaxSCMFDs is the most descriptors one message can carry (SCM_MAX_FD in
// include/net/scm.h); ReceiveFDs refuses a larger max.
const MaxSCMFDs = 253

// ReceiveFDs reads one message from conn into buf, with room for maxFDs
// descriptors of control data, and returns the number of data bytes and the
// descriptors that came with SCM_RIGHTS, in the order they were sent, each
// close-on-exec. The caller owns the returned files.
//
// Every descriptor the kernel installed is either returned or closed: when
// the control data was cut short (MSG_CTRUNC: the sender sent more
// descriptors than there was room for, and the kernel discarded the rest),
// when more than maxFDs arrived, or when the read failed, ReceiveFDs closes all
// of them and returns an error wrapping ErrBadFD. Control messages other
// than SCM_RIGHTS are ignored.
//
// A read of 0 bytes without descriptors is reported as io.EOF, unwrapped (Go
// reports an empty SOCK_SEQPACKET message the same way). A stream message
// that carries descriptors always has at least one data byte (Linux drops
// descriptors sent with none). On a message socket, a message longer than
// buf (MSG_TRUNC) is an error too, and its descriptors are closed.
func ReceiveFDs(conn *net.UnixConn, buf []byte, maxFDs int) (n int, files []*os.File, err error) {
	if maxFDs < 0 || maxFDs > MaxSCMFDs {
		return 0, nil, fmt.Errorf("fdmap: receive fds: maxFDs %d is not between 0 and %d", maxFDs, MaxSCMFDs)
	}
	// Room for at least one descriptor even when maxFDs is 0, so that a
	// message carrying unwanted descriptors reports them (and they get
	// closed) rather than only setting MSG_CTRUNC.
	room := maxFDs
	if room == 0 {
		room = 1
	}
	oob := make([]byte, unix.CmsgSpace(room*4))
	n, oobn, flags, _, rerr := conn.ReadMsgUnix(buf, oob)
	// A failed recvmsg can report -1 bytes; io.Reader callers (bufio)
	// panic on a negative count.
	n, oobn = max(n, 0), max(oobn, 0)
	fds, perr := parseRights(oob[:oobn])
	// Own the descriptors first, so that every return below either hands
	// them out or closes them.
	files = make([]*os.File, 0, len(fds))
	for _, fd := range fds {
		// net sets MSG_CMSG_CLOEXEC on Linux; set it again so the
		// promise does not rest on a library detail.
		unix.CloseOnExec(fd)
		files = append(files, os.NewFile(uintptr(fd), "scm-rights fd "+strconv.Itoa(fd)))
	}
	fail := func(e error) (int, []*os.File, error) {
		closeAll(files)
		return n, nil, e
	}
	switch {
	case errors.Is(rerr, io.EOF) && len(files) == 0:
		return 0, nil, io.EOF
	case rerr != nil:
		return fail(&readError{rerr})
	case perr != nil:
		return fail(fmt.Errorf("%w: receive fds: bad control message: %w", ErrBadFD, perr))
	case flags&unix.MSG_CTRUNC != 0:
		return fail(fmt.Errorf("%w: receive fds: control data truncated (MSG_CTRUNC): more than %d fds were sent; all %d received were closed", ErrBadFD, maxFDs, len(files)))
	case len(files) > maxFDs:
		return fail(fmt.Errorf("%w: receive fds: %d fds arrived, at most %d allowed; all were closed", ErrBadFD, len(files), maxFDs))
	case flags&unix.MSG_TRUNC != 0:
		return fail(fmt.Errorf("fdmap: receive fds: message longer than the %d-byte buffer (MSG_TRUNC); its %d fds were closed", len(buf), len(files)))
	}
	return n, files, nil
}

// parseRights returns every descriptor in the SCM_RIGHTS messages of oob.
// It keeps what it parsed before an error, so the caller can close those.
func parseRights(oob []byte) ([]int, error) {
	var fds []int
	for len(oob) > 0 {
		hdr, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return fds, err
		}
		if hdr.Level == unix.SOL_SOCKET && hdr.Type == unix.SCM_RIGHTS {
			for len(data) >= 4 {
				fds = append(fds, int(int32(uint32(data[0])|uint32(data[1])<<8|uint32(data[2])<<16|uint32(data[3])<<24)))
				data = data[4:]
			}
		}
		oob = rest
	}
	return fds, nil
}

// SendFDs writes data and, with SCM_RIGHTS in the same message, files. It
// borrows files: the receiver gets duplicates, and the caller still closes
// its own. On a stream socket data must not be empty when files are sent,
// because Linux drops descriptors that come with no data (Go would then pad
// the message with a zero byte the receiver did not expect).
func SendFDs(conn *net.UnixConn, data []byte, files []*os.File) error {
	if len(files) > MaxSCMFDs {
		return fmt.Errorf("fdmap: send fds: %d fds, at most %d fit in one message", len(files), MaxSCMFDs)
	}
	if len(files) > 0 && len(data) == 0 && isStream(conn) {
		return errors.New("fdmap: send fds: a stream socket needs at least one data byte to carry fds")
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = fdNum(f)
			if fds[i] < 0 {
				return fmt.Errorf("%w: send fds: %s is closed", ErrBadFD, f.Name())
			}
		}
		oob = unix.UnixRights(fds...)
	}
	n, oobn, err := conn.WriteMsgUnix(data, oob, nil)
	// The descriptors must stay open until the kernel has taken its
	// references; a finalizer closing an unreachable *os.File must not run
	// before sendmsg returns.
	runtime.KeepAlive(files)
	if err != nil {
		return fmt.Errorf("fdmap: send %d fds: %w", len(files), err)
	}
	if n != len(data) || oobn != len(oob) {
		return fmt.Errorf("fdmap: send fds: short write: %d of %d data bytes, %d of %d control bytes", n, len(data), oobn, len(oob))
	}
	return nil
}

// isStream reports whether conn is a SOCK_STREAM socket.
func isStream(conn *net.UnixConn) bool {
	rc, err := conn.SyscallConn()
	if err != nil {
		return false
	}
	typ := -1
	_ = rc.Control(func(fd uintptr) { typ, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE) })
	return typ == unix.SOCK_STREAM
}

// readError is a failed read in ReceiveFDs; it keeps the cause for callers
// that must see it unwrapped (see receiveFDs).
type readError struct{ err error }

func (e *readError) Error() string { return "fdmap: receive fds: " + e.err.Error() }
func (e *readError) Unwrap() error { return e.err }
