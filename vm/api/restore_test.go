package api

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chsnap/chsnap/fdmap"
)

// restoringFake is a Controller that can also restore.
type restoringFake struct {
	*fakeController
	restored []string
	cfgs     []RestoreConfig
	files    []int
	err      error
}

func (r *restoringFake) Restore(path string, cfg RestoreConfig, files []*os.File) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.files = append(r.files, len(files))
	for _, f := range files {
		f.Close()
	}
	if r.err != nil {
		return r.err
	}
	if len(r.restored) > 0 {
		return StateErrorf("this VMM already has a VM")
	}
	r.restored = append(r.restored, path)
	r.cfgs = append(r.cfgs, cfg)
	return nil
}

func TestRestoreRoute(t *testing.T) {
	f := &restoringFake{fakeController: newFake()}
	s := startServer(t, f)
	body := []byte(`{"source_url": "file:///snaps/vm.snap", "resume": true}`)
	if r := rawDo(t, s.path, "PUT", "/api/v1/vm.restore", "application/json", body); r.status != 204 {
		t.Fatalf("vm.restore: status %d, body %s", r.status, r.body)
	}
	f.mu.Lock()
	if len(f.restored) != 1 || f.restored[0] != "/snaps/vm.snap" || !f.cfgs[0].Resume {
		t.Errorf("Restore got %q %+v", f.restored, f.cfgs)
	}
	f.mu.Unlock()
	r := rawDo(t, s.path, "PUT", "/api/v1/vm.restore", "application/json", body)
	if r.status != 409 || errorMessage(t, r) != "this VMM already has a VM" {
		t.Errorf("second vm.restore: status %d, %s", r.status, r.body)
	}
	f2 := &restoringFake{fakeController: newFake(), err: errors.New("archive vm.snap: formats: checksum mismatch")}
	s2 := startServer(t, f2)
	r = rawDo(t, s2.path, "PUT", "/api/v1/vm.restore", "application/json", body)
	if r.status != 500 || errorMessage(t, r) != "archive vm.snap: formats: checksum mismatch" {
		t.Errorf("failed restore: status %d, %s", r.status, r.body)
	}
	r = rawDo(t, s2.path, "PUT", "/api/v1/vm.restore", "application/json", []byte(`{"source_url": "http://x/vm.snap"}`))
	if r.status != 400 {
		t.Errorf("non-file source_url: status %d", r.status)
	}
}

// TestRestoreCarriesFDs sends descriptors with vm.restore through
// Client.Restore (SCM_RIGHTS) and checks the Restorer gets them, in order,
// with the net_fds list; descriptors sent with another request are closed.
func TestRestoreCarriesFDs(t *testing.T) {
	var got []*os.File
	f := &fdRestorer{fakeController: newFake(), take: func(files []*os.File) { got = files }}
	// The handler runs on the server's goroutines: every field of f is
	// read and written under f.mu on both sides.
	s := startServer(t, f)
	r1, w1, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	defer w1.Close()
	r2, w2, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	defer w2.Close()
	cfg := RestoreConfig{SourceURL: "file:///snaps/vm.snap", NetFDs: []RestoredNetConfig{{ID: "net0", NumFDs: 1}, {ID: "net1", NumFDs: 1}}}
	if err := NewClient(s.path).Restore(context.Background(), cfg, []*os.File{w1, w2}); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	f.mu.Lock()
	cfgGot := f.cfg
	f.mu.Unlock()
	if len(got) != 2 || len(cfgGot.NetFDs) != 2 || cfgGot.NetFDs[1].ID != "net1" {
		t.Fatalf("restorer got %d files and %+v", len(got), cfgGot)
	}
	// The received descriptors are the pipes' write ends, in order.
	for i, pair := range []struct{ r, w *os.File }{{r1, w1}, {r2, w2}} {
		msg := []byte{'a' + byte(i)}
		if _, err := got[i].Write(msg); err != nil {
			t.Fatalf("write to received fd %d: %v", i, err)
		}
		got[i].Close()
		buf := make([]byte, 1)
		if _, err := pair.r.Read(buf); err != nil || buf[0] != msg[0] {
			t.Errorf("pipe %d read %q, %v; want %q", i, buf, err, msg)
		}
	}

	// A refused restore closes what it was sent: the pipe's only other
	// write end is ours, so after closing it the reader sees EOF.
	f.mu.Lock()
	f.err = errors.New("net_fds: refused")
	f.mu.Unlock()
	r3, w3, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r3.Close()
	err = NewClient(s.path).Restore(context.Background(), cfg, []*os.File{w3, w3})
	if err == nil || !strings.Contains(err.Error(), "net_fds: refused") {
		t.Errorf("refused Restore: %v", err)
	}
	w3.Close()
	r3.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := r3.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("after a refused restore the sent fds are still open somewhere: read %d, %v", n, err)
	}
}

// fdRestorer is a Restorer that hands the received files to take.
type fdRestorer struct {
	*fakeController
	take func([]*os.File)
	cfg  RestoreConfig
	err  error
}

func (r *fdRestorer) Restore(path string, cfg RestoreConfig, files []*os.File) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		for _, f := range files {
			f.Close()
		}
		return r.err
	}
	r.cfg = cfg
	r.take(files)
	return nil
}

// TestUntakenFDsClosed sends a descriptor with a request that does not use
// it (vm.pause): the server closes it when the request is done.
func TestUntakenFDsClosed(t *testing.T) {
	s := startServer(t, newFake())
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	conn, err := net.Dial("unix", s.path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := "PUT /api/v1/vm.pause HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"
	if err := fdmap.SendFDs(conn.(*net.UnixConn), []byte(req), []*os.File{w}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("vm.pause: status %d", resp.StatusCode)
	}
	// The connection stays open (keep-alive): only the server's copy of
	// the write end can keep the pipe from reaching EOF.
	r.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := r.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("the fd sent with vm.pause is still open in the server: read %d, %v", n, err)
	}
}
