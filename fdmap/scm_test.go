package fdmap

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// socketPair returns the two ends of an AF_UNIX socket pair of type typ.
func socketPair(t *testing.T, typ int) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close() // FileConn dups
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	a, b := conn(fds[0]), conn(fds[1])
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// pipes returns n pipe write ends, and their read ends to check them by.
func pipes(t *testing.T, n int) (w, r []*os.File) {
	t.Helper()
	for i := 0; i < n; i++ {
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		r, w = append(r, pr), append(w, pw)
	}
	return w, r
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

func TestSendReceiveFDs(t *testing.T) {
	warmUp(t)
	for _, n := range []int{0, 1, 3} {
		t.Run(strings.Repeat("fd", n)+"-"+string(rune('0'+n)), func(t *testing.T) {
			a, b := socketPair(t, unix.SOCK_STREAM)
			before := countFDs(t)
			w, r := pipes(t, n)
			msg := []byte("PUT /api/v1/vm.restore HTTP/1.1\r\n")
			if err := SendFDs(a, msg, w); err != nil {
				t.Fatalf("SendFDs(%d fds): %v", n, err)
			}
			// The sender still owns its files; close them so only the
			// received duplicates keep the pipes open.
			closeFiles(w)
			buf := make([]byte, 128)
			got, files, err := ReceiveFDs(b, buf, 4)
			if err != nil {
				t.Fatalf("ReceiveFDs: %v", err)
			}
			if !bytes.Equal(buf[:got], msg) {
				t.Errorf("received data %q, want %q", buf[:got], msg)
			}
			if len(files) != n {
				t.Fatalf("received %d fds, want %d", len(files), n)
			}
			for i, f := range files {
				fd := fdNum(f)
				if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
					t.Errorf("received fd %d flags %#x, %v; want FD_CLOEXEC", fd, flags, err)
				}
				// Order is kept: writing to received fd i reaches pipe i.
				if _, err := f.Write([]byte{byte('a' + i)}); err != nil {
					t.Fatalf("write to received fd %d: %v", i, err)
				}
				one := make([]byte, 1)
				if _, err := r[i].Read(one); err != nil || one[0] != byte('a'+i) {
					t.Errorf("pipe %d read %q, %v; want %q", i, one, err, string(rune('a'+i)))
				}
			}
			closeFiles(files)
			closeFiles(r)
			checkNoLeak(t, before)
		})
	}
}

func TestReceiveFDsTruncated(t *testing.T) {
	warmUp(t)
	a, b := socketPair(t, unix.SOCK_STREAM)
	before := countFDs(t)
	w, r := pipes(t, 5)
	if err := SendFDs(a, []byte("x"), w); err != nil {
		t.Fatal(err)
	}
	closeFiles(w)
	buf := make([]byte, 16)
	// Room for 1 fd (CmsgSpace rounds it up to 2): the kernel installs what
	// fits, discards the rest and sets MSG_CTRUNC.
	_, files, err := ReceiveFDs(b, buf, 1)
	if !errors.Is(err, ErrBadFD) || !strings.Contains(err.Error(), "MSG_CTRUNC") {
		t.Fatalf("ReceiveFDs(5 fds sent, room for 1) = %v, want ErrBadFD naming MSG_CTRUNC", err)
	}
	if files != nil {
		t.Errorf("ReceiveFDs returned %d files with an error", len(files))
	}
	// Every received fd was closed: the pipes see no writer left.
	for i, pr := range r {
		if n, err := pr.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("pipe %d read = %d, %v; want EOF (a received write end is still open)", i, n, err)
		}
	}
	closeFiles(r)
	checkNoLeak(t, before)
}

func TestReceiveFDsMoreThanMax(t *testing.T) {
	warmUp(t)
	a, b := socketPair(t, unix.SOCK_STREAM)
	before := countFDs(t)
	w, r := pipes(t, 2)
	if err := SendFDs(a, []byte("x"), w); err != nil {
		t.Fatal(err)
	}
	closeFiles(w)
	// max 1 leaves room for 2 after rounding: no MSG_CTRUNC, but still
	// more than asked for.
	_, files, err := ReceiveFDs(b, make([]byte, 16), 1)
	if !errors.Is(err, ErrBadFD) || !strings.Contains(err.Error(), "2 fds arrived, at most 1 allowed") {
		t.Fatalf("ReceiveFDs = %d files, %v; want ErrBadFD naming the limit", len(files), err)
	}
	for i, pr := range r {
		if _, err := pr.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("pipe %d: a received write end is still open (read err %v)", i, err)
		}
	}
	closeFiles(r)

	// max 0: any fd is unwanted, and is closed.
	w, r = pipes(t, 1)
	if err := SendFDs(a, []byte("y"), w); err != nil {
		t.Fatal(err)
	}
	closeFiles(w)
	if _, _, err := ReceiveFDs(b, make([]byte, 16), 0); !errors.Is(err, ErrBadFD) {
		t.Errorf("ReceiveFDs(max 0) with 1 fd sent = %v, want ErrBadFD", err)
	}
	if _, err := r[0].Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("max 0: the received write end is still open (read err %v)", err)
	}
	closeFiles(r)
	checkNoLeak(t, before)
}

func TestReceiveFDsDataOnly(t *testing.T) {
	a, b := socketPair(t, unix.SOCK_STREAM)
	if _, err := a.Write([]byte("GET /api/v1/vm.info HTTP/1.1\r\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, files, err := ReceiveFDs(b, buf, 4)
	if err != nil || len(files) != 0 || string(buf[:n]) != "GET /api/v1/vm.info HTTP/1.1\r\n" {
		t.Fatalf("ReceiveFDs(plain write) = %q, %d files, %v", buf[:n], len(files), err)
	}
	a.Close()
	if n, files, err := ReceiveFDs(b, buf, 4); err != io.EOF || n != 0 || files != nil {
		t.Errorf("ReceiveFDs after the peer closed = %d, %d files, %v; want io.EOF", n, len(files), err)
	}
}

func TestReceiveFDsSeqpacketTruncated(t *testing.T) {
	warmUp(t)
	a, b := socketPair(t, unix.SOCK_SEQPACKET)
	before := countFDs(t)
	w, r := pipes(t, 1)
	if err := SendFDs(a, []byte("0123456789"), w); err != nil {
		t.Fatal(err)
	}
	closeFiles(w)
	// A 4-byte buffer for a 10-byte message: the rest of the message is
	// gone, so the fds that came with it are refused.
	if _, files, err := ReceiveFDs(b, make([]byte, 4), 1); err == nil || !strings.Contains(err.Error(), "MSG_TRUNC") {
		t.Fatalf("ReceiveFDs(short buffer) = %d files, %v; want the MSG_TRUNC error", len(files), err)
	}
	if _, err := r[0].Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("the received write end is still open (read err %v)", err)
	}
	closeFiles(r)
	checkNoLeak(t, before)
}

func TestSendFDsRefuses(t *testing.T) {
	a, _ := socketPair(t, unix.SOCK_STREAM)
	w, r := pipes(t, 1)
	defer closeFiles(r)
	if err := SendFDs(a, nil, w); err == nil || !strings.Contains(err.Error(), "at least one data byte") {
		t.Errorf("SendFDs(no data, 1 fd) on a stream = %v, want the data-byte error", err)
	}
	closeFiles(w)
	if err := SendFDs(a, []byte("x"), w); !errors.Is(err, ErrBadFD) {
		t.Errorf("SendFDs(closed file) = %v, want ErrBadFD", err)
	}
	many := make([]*os.File, MaxSCMFDs+1)
	if err := SendFDs(a, []byte("x"), many); err == nil || !strings.Contains(err.Error(), "at most 253") {
		t.Errorf("SendFDs(254 fds) = %v, want the limit error", err)
	}
	if _, _, err := ReceiveFDs(a, nil, MaxSCMFDs+1); err == nil {
		t.Errorf("ReceiveFDs(max 254) succeeded")
	}
}

func TestParseRightsKeepsFDsBeforeError(t *testing.T) {
	// A well-formed SCM_RIGHTS message followed by a broken header: the
	// fds of the first are still reported, so they can be closed.
	oob := append(unix.UnixRights(7, 8), 0xff, 0xff, 0xff)
	fds, err := parseRights(oob)
	if err == nil || len(fds) != 2 || fds[0] != 7 || fds[1] != 8 {
		t.Errorf("parseRights = %v, %v; want [7 8] and an error", fds, err)
	}
}

// TestPlainReadDropsFDs pins the kernel behaviour NewListener exists for: a
// read without room for control data does not leave the fds for later, it
// closes them, so net/http's plain reads would lose them.
func TestPlainReadDropsFDs(t *testing.T) {
	a, b := socketPair(t, unix.SOCK_STREAM)
	w, r := pipes(t, 1)
	defer closeFiles(r)
	if err := SendFDs(a, []byte("x"), w); err != nil {
		t.Fatal(err)
	}
	closeFiles(w)
	if _, err := b.Read(make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	if _, err := r[0].Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("after a plain read the sent fd is still open somewhere (read err %v); want EOF", err)
	}
}

// TestStreamReadStopsAfterFDs pins the other fact the HTTP approach relies
// on: a stream read may glue earlier bytes to the segment that carries fds,
// but stops after it, so fds never ride with later bytes.
func TestStreamReadStopsAfterFDs(t *testing.T) {
	a, b := socketPair(t, unix.SOCK_STREAM)
	w, r := pipes(t, 1)
	defer closeFiles(r)
	if _, err := a.Write([]byte("AAAA")); err != nil {
		t.Fatal(err)
	}
	if err := SendFDs(a, []byte("BBBB"), w); err != nil {
		t.Fatal(err)
	}
	closeFiles(w)
	if _, err := a.Write([]byte("CCCC")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, files, err := ReceiveFDs(b, buf, 4)
	closeFiles(files)
	if err != nil || len(files) != 1 || !strings.HasSuffix(string(buf[:n]), "BBBB") {
		t.Fatalf("first read = %q with %d fds, %v; want data ending in BBBB with 1 fd", buf[:n], len(files), err)
	}
	n, files, err = ReceiveFDs(b, buf, 4)
	if err != nil || len(files) != 0 || string(buf[:n]) != "CCCC" {
		t.Errorf("second read = %q with %d fds, %v; want CCCC alone", buf[:n], len(files), err)
	}
}
