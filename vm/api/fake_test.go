package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fakeController is a VM without KVM: a state machine and a byte pattern as
// the archive.
type fakeController struct {
	mu    sync.Mutex
	state string
	// archive is what Snapshot writes; failAfter, if >= 0, makes it fail
	// with snapErr after that many bytes (0: before the first byte).
	archive   []byte
	failAfter int
	snapErr   error
	// hold, if not nil, is closed by the test to let a snapshot that has
	// written failAfter bytes go on; started is closed when it has.
	hold, started chan struct{}
	infoErr       error
	lastPath      string
	lastOpt       SnapshotOptions
	shutdowns     int
}

func newFake() *fakeController {
	a := make([]byte, 300<<10)
	for i := range a {
		a[i] = byte(i*7 + i>>9)
	}
	return &fakeController{state: StateRunning, archive: a, failAfter: -1}
}

func (f *fakeController) Info() (VMInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.infoErr != nil {
		return VMInfo{}, f.infoErr
	}
	return VMInfo{
		State: f.state,
		Config: VMConfigInfo{
			CPUs:    CPUsConfig{BootVCPUs: 2, MaxVCPUs: 2},
			Memory:  MemoryConfig{Size: 256 << 20},
			Payload: PayloadConfig{Kernel: "/k/vmlinuz", Cmdline: "console=ttyS0"},
		},
		MemoryActualSize: 256 << 20,
	}, nil
}

func (f *fakeController) Pause() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state != StateRunning {
		return StateErrorf("the VM is already paused")
	}
	f.state = StatePaused
	return nil
}

func (f *fakeController) Resume() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state != StatePaused {
		return StateErrorf("the VM is not paused")
	}
	f.state = StateRunning
	return nil
}

func (f *fakeController) Snapshot(w io.Writer, opt SnapshotOptions) error {
	f.mu.Lock()
	f.lastOpt = opt
	archive, failAfter, snapErr, hold, started := f.archive, f.failAfter, f.snapErr, f.hold, f.started
	if f.state == StateShutdown {
		f.mu.Unlock()
		return StateErrorf("the VM is shut down")
	}
	f.mu.Unlock()
	if failAfter < 0 {
		failAfter = len(archive)
	}
	for off := 0; off < failAfter; {
		n := min(8192, failAfter-off)
		if _, err := w.Write(archive[off : off+n]); err != nil {
			return err
		}
		off += n
	}
	if started != nil {
		close(started)
	}
	if hold != nil {
		<-hold
		if _, err := w.Write(archive[failAfter:]); err != nil {
			return err
		}
		return nil
	}
	if failAfter < len(archive) {
		return snapErr
	}
	return nil
}

func (f *fakeController) SnapshotToFile(path string, opt SnapshotOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastPath, f.lastOpt = path, opt
	return f.snapErr
}

func (f *fakeController) Shutdown() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shutdowns++
	if f.state == StateShutdown {
		return StateErrorf("the VM is already shut down")
	}
	f.state = StateShutdown
	return nil
}

// testServer runs a Server for c on a socket in a temporary directory and
// stops it when the test ends.
type testServer struct {
	*Server
	path string
	done chan error
}

func startServer(t *testing.T, c Controller) *testServer {
	t.Helper()
	path := filepath.Join(t.TempDir(), "api.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	s := &testServer{Server: NewServer(c, ServerOptions{Version: "1.2.3", BuildVersion: "abc"}), path: path, done: make(chan error, 1)}
	go func() { s.done <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Close()
		select {
		case err := <-s.done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return after Close")
		}
	})
	return s
}

// rawResponse is what rawDo saw.
type rawResponse struct {
	status  int
	header  http.Header
	trailer http.Header
	body    []byte
	err     error // from reading the body
}

// rawDo sends one request over the socket with plain net/http.
func rawDo(t *testing.T, socket, method, path, contentType string, body []byte) rawResponse {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		},
	}}
	defer hc.CloseIdleConnections()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://localhost"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, rerr := io.ReadAll(resp.Body)
	return rawResponse{status: resp.StatusCode, header: resp.Header, trailer: resp.Trailer, body: b, err: rerr}
}

// errorMessage decodes an ErrorResponse body, failing the test if it is not
// one.
func errorMessage(t *testing.T, r rawResponse) string {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error response Content-Type = %q, want application/json", ct)
	}
	var er ErrorResponse
	dec := jsonDecoderStrict(r.body)
	if err := dec.Decode(&er); err != nil || er.Error == "" {
		t.Fatalf("error body %q is not {\"error\": ...}: %v", r.body, err)
	}
	return er.Error
}

var errBoom = errors.New("disk full at 12 MiB")

func jsonDecoderStrict(b []byte) *json.Decoder {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec
}
