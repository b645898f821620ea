package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// errTimeout is a receive that saw no datagram within the socket's timeout.
var errTimeout = errors.New("receive timed out")

// udpSock is a connected, blocking UDP socket. The network namespace it
// lives in is the one of the thread that created it; afterwards any
// goroutine may use it. Blocking system calls (SO_RCVTIMEO instead of Go's
// poller) keep goroutine wake-ups out of the measured round trips.
type udpSock struct {
	fd      int
	timeout time.Duration
}

// dialUDP creates a UDP socket bound to local and connected to remote, in
// the calling thread's network namespace.
func dialUDP(local, remote netip.AddrPort) (*udpSock, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("udp socket: %w", err)
	}
	s := &udpSock{fd: fd}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: local.Addr().As4(), Port: int(local.Port())}); err != nil {
		s.close()
		return nil, fmt.Errorf("bind udp socket to %v: %w", local, err)
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: remote.Addr().As4(), Port: int(remote.Port())}); err != nil {
		s.close()
		return nil, fmt.Errorf("connect udp socket to %v: %w", remote, err)
	}
	// Room for a full window of replies even when the reader is late.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	return s, nil
}

func (s *udpSock) close() error { return unix.Close(s.fd) }

// setTimeout sets how long recv waits for a datagram.
func (s *udpSock) setTimeout(d time.Duration) error {
	if d == s.timeout {
		return nil
	}
	tv := unix.NsecToTimeval(d.Nanoseconds())
	if err := unix.SetsockoptTimeval(s.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("udp socket receive timeout %v: %w", d, err)
	}
	s.timeout = d
	return nil
}

func (s *udpSock) send(b []byte) error {
	for {
		_, err := unix.Write(s.fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("udp send: %w", err)
		}
		return nil
	}
}

// recv reads one datagram into b; errTimeout when none came in time.
func (s *udpSock) recv(b []byte) (int, error) {
	for {
		n, err := unix.Read(s.fd, b)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return 0, errTimeout
		case err != nil:
			return 0, fmt.Errorf("udp receive: %w", err)
		}
		return n, nil
	}
}

// magic starts every request, so that nothing but an echo of ours counts.
var magic = []byte("netbench")

// minPayload holds the magic and the sequence number.
const minPayload = 16

// fillPayload writes request seq into b: the magic, seq big-endian, then a
// pattern that depends on seq, so that a reply with any byte wrong shows.
func fillPayload(b []byte, seq uint64) {
	copy(b, magic)
	binary.BigEndian.PutUint64(b[8:], seq)
	for i := minPayload; i < len(b); i++ {
		b[i] = byte(seq) + byte(i)*7
	}
}

// parseReply returns the sequence number of a reply of size bytes, and
// whether it is an intact echo of one of our requests.
func parseReply(b []byte, size int) (uint64, bool) {
	if len(b) != size || size < minPayload || !bytes.Equal(b[:8], magic) {
		return 0, false
	}
	seq := binary.BigEndian.Uint64(b[8:])
	for i := minPayload; i < len(b); i++ {
		if b[i] != byte(seq)+byte(i)*7 {
			return seq, false
		}
	}
	return seq, true
}

// echoer sends numbered echo requests on one socket and matches replies.
type echoer struct {
	s    *udpSock
	size int
	seq  uint64 // the last sequence number sent
	out  []byte
	in   []byte
	bad  int // replies that were not intact echoes of a request
}

func newEchoer(s *udpSock, size int) *echoer {
	return &echoer{s: s, size: size, out: make([]byte, size), in: make([]byte, 65536)}
}

// next sends a new request and returns its sequence number.
func (e *echoer) next() (uint64, error) {
	e.seq++
	fillPayload(e.out, e.seq)
	return e.seq, e.s.send(e.out)
}

// reply waits up to the socket's timeout for one datagram and returns the
// sequence number it echoes; ok is false for a datagram that is not an
// intact echo (counted in bad).
func (e *echoer) reply() (seq uint64, ok bool, err error) {
	n, err := e.s.recv(e.in)
	if err != nil {
		return 0, false, err
	}
	seq, ok = parseReply(e.in[:n], e.size)
	if !ok {
		e.bad++
	}
	return seq, ok, nil
}

// roundTrip sends one request and waits up to timeout for its echo,
// dropping late replies to earlier requests. ok is false when none came.
func (e *echoer) roundTrip(timeout time.Duration) (time.Duration, bool, error) {
	if err := e.s.setTimeout(timeout); err != nil {
		return 0, false, err
	}
	seq, err := e.next()
	if err != nil {
		return 0, false, err
	}
	sent := time.Now()
	for {
		got, ok, err := e.reply()
		if errors.Is(err, errTimeout) {
			return 0, false, nil
		}
		if err != nil {
			return 0, false, err
		}
		if ok && got == seq {
			return time.Since(sent), true, nil
		}
		if time.Since(sent) > timeout {
			return 0, false, nil
		}
	}
}

// latencyResult is a run of sequential round trips.
type latencyResult struct {
	RTTs []time.Duration // one per answered request
	Lost int             // requests with no echo within the timeout
}

// measureLatency sends count requests one after the other, each after the
// previous one's echo (or its timeout), and times them.
func (e *echoer) measureLatency(count int, timeout time.Duration) (latencyResult, error) {
	r := latencyResult{RTTs: make([]time.Duration, 0, count)}
	for range count {
		d, ok, err := e.roundTrip(timeout)
		if err != nil {
			return r, err
		}
		if !ok {
			r.Lost++
			continue
		}
		r.RTTs = append(r.RTTs, d)
	}
	return r, nil
}

// rateResult is a run with a window of requests in flight.
type rateResult struct {
	Sent    int // requests sent during the measured time
	Replies int // their echoes received during the measured time
	Drained int // their echoes received after it
	Lost    int // requests never answered within lossAfter
	Late    int // echoes that came after their request was counted lost
	Elapsed time.Duration
}

// PPS is the number of echoes received per second.
func (r rateResult) PPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Replies) / r.Elapsed.Seconds()
}

// measureRate keeps window requests in flight for d: every echo is
// answered with a new request; a request without an echo after lossAfter
// is counted lost and replaced. Echoes that come after d (while the last
// requests drain) are not counted in Replies; requests still unanswered
// lossAfter after the end are lost.
func (e *echoer) measureRate(window int, d, lossAfter time.Duration) (rateResult, error) {
	var r rateResult
	type inflight struct {
		seq uint64
		at  time.Time
	}
	var queue []inflight // in sending order; entries already answered are skipped
	pending := map[uint64]bool{}
	poll := min(lossAfter/4, 10*time.Millisecond)
	if err := e.s.setTimeout(max(poll, time.Millisecond)); err != nil {
		return r, err
	}
	send := func() error {
		seq, err := e.next()
		if err != nil {
			return err
		}
		r.Sent++
		pending[seq] = true
		queue = append(queue, inflight{seq, time.Now()})
		return nil
	}
	receive := func() (bool, error) {
		seq, ok, err := e.reply()
		if errors.Is(err, errTimeout) {
			return false, nil
		}
		if err != nil || !ok {
			return false, err
		}
		if !pending[seq] {
			r.Late++
			return false, nil
		}
		delete(pending, seq)
		return true, nil
	}
	start := time.Now()
	end := start.Add(d)
	for {
		now := time.Now()
		// Expire the oldest requests first.
		for len(queue) > 0 {
			q := queue[0]
			if !pending[q.seq] {
				queue = queue[1:]
				continue
			}
			if now.Sub(q.at) < lossAfter {
				break
			}
			delete(pending, q.seq)
			r.Lost++
			queue = queue[1:]
		}
		if !now.Before(end) {
			break
		}
		for len(pending) < window {
			if err := send(); err != nil {
				return r, err
			}
		}
		got, err := receive()
		if err != nil {
			return r, err
		}
		if got {
			r.Replies++
		}
	}
	r.Elapsed = time.Since(start)
	// Drain: echoes of the last requests are not counted, but they are not
	// lost either.
	deadline := time.Now().Add(lossAfter)
	for len(pending) > 0 && time.Now().Before(deadline) {
		got, err := receive()
		if err != nil {
			return r, err
		}
		if got {
			r.Drained++
		}
	}
	r.Lost += len(pending)
	return r, nil
}
