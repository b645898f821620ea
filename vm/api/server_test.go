package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRoutes(t *testing.T) {
	big := []byte(`{"destination_url": "file:///tmp/x", "pad": "` + strings.Repeat("a", MaxBodySize) + `"}`)
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		rawBody     []byte
		setup       func(f *fakeController)
		wantStatus  int
		wantErr     string // substring of the JSON error message; "" for a success
		check       func(t *testing.T, f *fakeController, r rawResponse)
	}{
		{name: "ping", method: "GET", path: "/api/v1/vmm.ping", wantStatus: 200, check: func(t *testing.T, _ *fakeController, r rawResponse) {
			var p PingResponse
			if err := jsonDecoderStrict(r.body).Decode(&p); err != nil {
				t.Fatal(err)
			}
			if p.Version != "1.2.3" || p.BuildVersion != "abc" || p.PID != int64(os.Getpid()) || len(p.Features) != 1 || p.Features[0] != OpSnapshotStream {
				t.Errorf("ping = %+v", p)
			}
		}},
		{name: "info", method: "GET", path: "/api/v1/vm.info", wantStatus: 200, check: func(t *testing.T, _ *fakeController, r rawResponse) {
			var m map[string]any
			if err := json.Unmarshal(r.body, &m); err != nil {
				t.Fatal(err)
			}
			cfg, _ := m["config"].(map[string]any)
			cpus, _ := cfg["cpus"].(map[string]any)
			mem, _ := cfg["memory"].(map[string]any)
			if m["state"] != "Running" || cpus["boot_vcpus"] != 2.0 || mem["size"] != float64(256<<20) || m["memory_actual_size"] != float64(256<<20) {
				t.Errorf("info body = %s", r.body)
			}
		}},
		{name: "info failure", method: "GET", path: "/api/v1/vm.info", setup: func(f *fakeController) { f.infoErr = errBoom }, wantStatus: 500, wantErr: "disk full at 12 MiB"},
		{name: "pause", method: "PUT", path: "/api/v1/vm.pause", wantStatus: 204, check: func(t *testing.T, f *fakeController, r rawResponse) {
			if f.state != StatePaused || len(r.body) != 0 {
				t.Errorf("state %s, body %q after pause", f.state, r.body)
			}
		}},
		{name: "pause while paused", method: "PUT", path: "/api/v1/vm.pause", setup: func(f *fakeController) { f.state = StatePaused }, wantStatus: 409, wantErr: "the VM is already paused"},
		{name: "resume", method: "PUT", path: "/api/v1/vm.resume", setup: func(f *fakeController) { f.state = StatePaused }, wantStatus: 204},
		{name: "resume while running", method: "PUT", path: "/api/v1/vm.resume", wantStatus: 409, wantErr: "the VM is not paused"},
		{name: "shutdown", method: "PUT", path: "/api/v1/vmm.shutdown", wantStatus: 204, check: func(t *testing.T, f *fakeController, _ rawResponse) {
			if f.shutdowns != 1 {
				t.Errorf("Shutdown called %d times, want 1", f.shutdowns)
			}
		}},
		{name: "shutdown twice", method: "PUT", path: "/api/v1/vmm.shutdown", setup: func(f *fakeController) { f.state = StateShutdown }, wantStatus: 409, wantErr: "already shut down"},
		{name: "snapshot", method: "PUT", path: "/api/v1/vm.snapshot", contentType: "application/json", body: `{"destination_url": "file:///srv/vms/a%20b.snap"}`, wantStatus: 204, check: func(t *testing.T, f *fakeController, _ rawResponse) {
			if f.lastPath != "/srv/vms/a b.snap" || f.lastOpt.LeavePaused {
				t.Errorf("SnapshotToFile(%q, %+v), want /srv/vms/a b.snap", f.lastPath, f.lastOpt)
			}
		}},
		{name: "snapshot curl form type", method: "PUT", path: "/api/v1/vm.snapshot", contentType: "application/x-www-form-urlencoded", body: `{"destination_url": "file://localhost/a.snap"}`, wantStatus: 204},
		{name: "snapshot failure", method: "PUT", path: "/api/v1/vm.snapshot", body: `{"destination_url": "file:///a.snap"}`, setup: func(f *fakeController) { f.snapErr = errBoom }, wantStatus: 500, wantErr: "disk full"},
		{name: "snapshot wrong state", method: "PUT", path: "/api/v1/vm.snapshot", body: `{"destination_url": "file:///a.snap"}`, setup: func(f *fakeController) { f.snapErr = StateErrorf("the VM is shut down") }, wantStatus: 409, wantErr: "the VM is shut down"},
		{name: "snapshot no body", method: "PUT", path: "/api/v1/vm.snapshot", wantStatus: 400, wantErr: "request body is required"},
		{name: "snapshot empty object", method: "PUT", path: "/api/v1/vm.snapshot", body: `{}`, wantStatus: 400, wantErr: "destination_url is required"},
		{name: "snapshot relative path", method: "PUT", path: "/api/v1/vm.snapshot", body: `{"destination_url": "file:a.snap"}`, wantStatus: 400, wantErr: "must be absolute"},
		{name: "snapshot http url", method: "PUT", path: "/api/v1/vm.snapshot", body: `{"destination_url": "http://x/a.snap"}`, wantStatus: 400, wantErr: "only file:// URLs"},
		{name: "snapshot bare path", method: "PUT", path: "/api/v1/vm.snapshot", body: `{"destination_url": "/a.snap"}`, wantStatus: 400, wantErr: "only file:// URLs"},
		{name: "snapshot directory", method: "PUT", path: "/api/v1/vm.snapshot", body: `{"destination_url": "file:///srv/vms/"}`, wantStatus: 400, wantErr: "names a directory"},
		{name: "snapshot remote host", method: "PUT", path: "/api/v1/vm.snapshot", body: `{"destination_url": "file://other/a.snap"}`, wantStatus: 400, wantErr: `host "other"`},
		{name: "malformed json", method: "PUT", path: "/api/v1/vm.snapshot", body: `{"destination_url": }`, wantStatus: 400, wantErr: "malformed JSON at byte"},
		{name: "truncated json", method: "PUT", path: "/api/v1/vm.snapshot", body: `{"destination_url": "file:///a"`, wantStatus: 400, wantErr: "malformed JSON"},
		{name: "trailing data", method: "PUT", path: "/api/v1/vm.snapshot", body: `{"destination_url": "file:///a"} {}`, wantStatus: 400, wantErr: "unexpected data after the object"},
		{name: "not an object", method: "PUT", path: "/api/v1/vm.snapshot", body: `["file:///a"]`, wantStatus: 400, wantErr: "must be a JSON object"},
		{name: "wrong field type", method: "PUT", path: "/api/v1/vm.snapshot", body: `{"destination_url": 7}`, wantStatus: 400, wantErr: `field "destination_url" must be string`},
		{name: "unknown field", method: "PUT", path: "/api/v1/vm.snapshot", body: `{"destination_url": "file:///a", "compress": true}`, wantStatus: 400, wantErr: `unknown field "compress"`},
		{name: "oversized body", method: "PUT", path: "/api/v1/vm.snapshot", rawBody: big, wantStatus: 413, wantErr: "larger than 65536 bytes"},
		{name: "not json content type", method: "PUT", path: "/api/v1/vm.snapshot", contentType: "multipart/form-data; boundary=x", body: `{}`, wantStatus: 415, wantErr: "is not JSON"},
		{name: "json suffix content type", method: "PUT", path: "/api/v1/vm.snapshot", contentType: "application/vnd.chsnap+json; charset=utf-8", body: `{"destination_url": "file:///a"}`, wantStatus: 204},
		{name: "restore not implemented", method: "PUT", path: "/api/v1/vm.restore", body: `{"source_url": "file:///a.snap", "prefault": true, "net_fds": [{"id": "net0", "num_fds": 1}]}`, wantStatus: 501, wantErr: "chsnap restore"},
		{name: "restore missing source", method: "PUT", path: "/api/v1/vm.restore", body: `{"prefault": true}`, wantStatus: 400, wantErr: "source_url is required"},
		{name: "restore net fd without id", method: "PUT", path: "/api/v1/vm.restore", body: `{"source_url": "file:///a", "net_fds": [{"num_fds": 1}]}`, wantStatus: 400, wantErr: "net_fds[0]: id is required"},
		{name: "restore unknown field", method: "PUT", path: "/api/v1/vm.restore", body: `{"source_url": "file:///a", "memory_restore_mode": "OnDemand"}`, wantStatus: 400, wantErr: `unknown field "memory_restore_mode"`},
		{name: "stream unknown field", method: "PUT", path: "/api/v1/vm.snapshot.stream", body: `{"leave_paused": true, "x": 1}`, wantStatus: 400, wantErr: `unknown field "x"`},
		{name: "stream wrong state", method: "PUT", path: "/api/v1/vm.snapshot.stream", setup: func(f *fakeController) { f.state = StateShutdown }, wantStatus: 409, wantErr: "shut down"},
		{name: "stream with no data", method: "PUT", path: "/api/v1/vm.snapshot.stream", setup: func(f *fakeController) { f.archive = nil }, wantStatus: 500, wantErr: "produced no data"},
		{name: "stream fails before first byte", method: "PUT", path: "/api/v1/vm.snapshot.stream", setup: func(f *fakeController) { f.failAfter, f.snapErr = 0, errBoom }, wantStatus: 500, wantErr: "disk full"},
		{name: "wrong method get", method: "GET", path: "/api/v1/vm.pause", wantStatus: 405, wantErr: "vm.pause does not accept GET (use PUT)", check: func(t *testing.T, _ *fakeController, r rawResponse) {
			if a := r.header.Get("Allow"); a != "PUT" {
				t.Errorf("Allow = %q, want PUT", a)
			}
		}},
		{name: "wrong method put", method: "PUT", path: "/api/v1/vmm.ping", wantStatus: 405, wantErr: "use GET"},
		{name: "wrong method delete", method: "DELETE", path: "/api/v1/vm.snapshot", wantStatus: 405, wantErr: "does not accept DELETE"},
		{name: "unknown path", method: "GET", path: "/api/v1/vm.counters", wantStatus: 404, wantErr: "no such endpoint /api/v1/vm.counters"},
		{name: "unknown prefix", method: "PUT", path: "/api/v2/vm.pause", wantStatus: 404, wantErr: "no such endpoint"},
		{name: "trailing slash", method: "PUT", path: "/api/v1/vm.pause/", wantStatus: 404, wantErr: "no such endpoint"},
	}
	doc := loadOpenAPI(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			if tc.setup != nil {
				tc.setup(f)
			}
			s := startServer(t, f)
			body := tc.rawBody
			if body == nil && tc.body != "" {
				body = []byte(tc.body)
			}
			r := rawDo(t, s.path, tc.method, tc.path, tc.contentType, body)
			if r.status != tc.wantStatus {
				t.Fatalf("status = %d (body %q), want %d", r.status, r.body, tc.wantStatus)
			}
			if tc.wantErr != "" {
				if msg := errorMessage(t, r); !strings.Contains(msg, tc.wantErr) {
					t.Errorf("error = %q, want it to contain %q", msg, tc.wantErr)
				}
			}
			if tc.check != nil {
				f.mu.Lock()
				tc.check(t, f, r)
				f.mu.Unlock()
			}
			// Every status a served route answers must be documented.
			if tc.wantStatus != 404 && tc.wantStatus != 405 {
				if !doc.documents(tc.method, tc.path, tc.wantStatus) {
					t.Errorf("openapi.yaml does not document status %d for %s %s", tc.wantStatus, tc.method, tc.path)
				}
			}
		})
	}
}

func TestStreamSuccess(t *testing.T) {
	f := newFake()
	s := startServer(t, f)
	r := rawDo(t, s.path, "PUT", "/api/v1/vm.snapshot.stream", "application/json", []byte(`{"leave_paused": true}`))
	if r.status != 200 || r.err != nil {
		t.Fatalf("status %d, read error %v", r.status, r.err)
	}
	if !bytes.Equal(r.body, f.archive) {
		t.Errorf("body: %d bytes, differs from the %d-byte archive", len(r.body), len(f.archive))
	}
	if got := r.header.Get("Content-Type"); got != "application/octet-stream" {
		t.Errorf("Content-Type = %q", got)
	}
	if got := r.header.Get(HeaderMemoryBytes); got != "268435456" {
		t.Errorf("%s = %q, want 268435456", HeaderMemoryBytes, got)
	}
	if got := r.trailer.Get(TrailerError); got != "" {
		t.Errorf("trailer %s = %q on success", TrailerError, got)
	}
	f.mu.Lock() // the handler wrote lastOpt on the server's goroutine
	leavePaused := f.lastOpt.LeavePaused
	f.mu.Unlock()
	if !leavePaused {
		t.Errorf("leave_paused did not reach the Controller")
	}

	// The Client gets the same bytes.
	var buf bytes.Buffer
	var mem uint64
	n, err := NewClient(s.path).SnapshotStreamTo(t.Context(), &buf, StreamOptions{OnStart: func(m uint64) { mem = m }})
	if err != nil || n != int64(len(f.archive)) || !bytes.Equal(buf.Bytes(), f.archive) || mem != 256<<20 {
		t.Errorf("SnapshotStreamTo = %d, %v (mem %d); want %d bytes equal to the archive", n, err, mem, len(f.archive))
	}
}

func TestStreamFailureAfterStart(t *testing.T) {
	f := newFake()
	f.failAfter, f.snapErr = 100<<10, errors.New("vcpu 1: get xsave:\nbad address")
	s := startServer(t, f)
	r := rawDo(t, s.path, "PUT", "/api/v1/vm.snapshot.stream", "", nil)
	if r.status != 200 {
		t.Fatalf("status %d, want 200 (the body had started)", r.status)
	}
	if len(r.body) != 100<<10 {
		t.Errorf("body %d bytes, want %d", len(r.body), 100<<10)
	}
	if got, want := r.trailer.Get(TrailerError), "vcpu 1: get xsave: bad address"; got != want {
		t.Errorf("trailer %s = %q, want %q", TrailerError, got, want)
	}

	var buf bytes.Buffer
	n, err := NewClient(s.path).SnapshotStream(t.Context(), &buf, false)
	if err == nil || !strings.Contains(err.Error(), "vm.snapshot.stream: failed after 102400 bytes: vcpu 1: get xsave: bad address") {
		t.Errorf("SnapshotStream = %d, %v; want the trailer's message", n, err)
	}
}

func TestStreamCutOff(t *testing.T) {
	f := newFake()
	f.failAfter = 64 << 10
	f.hold, f.started = make(chan struct{}), make(chan struct{})
	s := startServer(t, f)
	errc := make(chan error, 1)
	go func() {
		_, err := NewClient(s.path).SnapshotStream(t.Context(), &bytes.Buffer{}, false)
		errc <- err
	}()
	<-f.started
	s.Close() // the VMM dies mid-stream
	close(f.hold)
	err := <-errc
	if err == nil || !strings.Contains(err.Error(), "archive cut off after") {
		t.Errorf("SnapshotStream after the server died = %v, want a cut-off error", err)
	}
}

func TestStreamWriterFails(t *testing.T) {
	f := newFake()
	s := startServer(t, f)
	_, err := NewClient(s.path).SnapshotStream(t.Context(), failingWriter{}, false)
	if err == nil || !strings.Contains(err.Error(), "write archive after 0 bytes: disk quota exceeded") {
		t.Errorf("SnapshotStream into a failing writer = %v", err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk quota exceeded") }

func TestClient(t *testing.T) {
	f := newFake()
	s := startServer(t, f)
	c := NewClient(s.path)
	ctx := t.Context()
	p, err := c.Ping(ctx)
	if err != nil || p.Version != "1.2.3" {
		t.Fatalf("Ping = %+v, %v", p, err)
	}
	if err := c.Pause(ctx); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	err = c.Pause(ctx)
	if err == nil || err.Error() != "vm.pause: the VM is already paused" || !errors.Is(err, ErrState) {
		t.Errorf("second Pause = %v, want \"vm.pause: the VM is already paused\" matching ErrState", err)
	}
	info, err := c.Info(ctx)
	if err != nil || info.State != StatePaused || info.Config.CPUs.BootVCPUs != 2 || info.Config.Payload.Cmdline != "console=ttyS0" {
		t.Errorf("Info = %+v, %v", info, err)
	}
	if err := c.Resume(ctx); err != nil {
		t.Errorf("Resume: %v", err)
	}
	if err := c.Snapshot(ctx, "/srv/vm 1.snap"); err != nil || f.lastPath != "/srv/vm 1.snap" {
		t.Errorf("Snapshot = %v, path %q", err, f.lastPath)
	}
	if err := c.Snapshot(ctx, "rel.snap"); err == nil || !strings.Contains(err.Error(), "not an absolute path") {
		t.Errorf("Snapshot(relative) = %v", err)
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	err = NewClient(s.path + ".missing").Pause(ctx)
	if err == nil || !strings.Contains(err.Error(), "vm.pause: no VMM is listening on "+s.path+".missing") {
		t.Errorf("Pause on a missing socket = %v", err)
	}
}

// TestClientErrorBodies: the client reads chsnap's, Cloud Hypervisor's and
// plain error bodies.
func TestClientErrorBodies(t *testing.T) {
	tests := []struct{ body, want string }{
		{`{"error": "the VM is already paused"}`, "vm.pause: the VM is already paused"},
		{`["Error from API", "The VM could not be paused", "already paused"]`, "vm.pause: Error from API: The VM could not be paused: already paused"},
		{"Internal Server Error\n", "vm.pause: Internal Server Error"},
		{"", "vm.pause: 500 Internal Server Error"},
	}
	for _, tc := range tests {
		path := serveHandler(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(500)
			w.Write([]byte(tc.body))
		}))
		err := NewClient(path).Pause(t.Context())
		var ae *Error
		if err == nil || err.Error() != tc.want || !errors.As(err, &ae) || ae.StatusCode != 500 {
			t.Errorf("body %q: error %v, want %q with status 500", tc.body, err, tc.want)
		}
	}
}

func TestFileURLPath(t *testing.T) {
	tests := []struct{ in, want, wantErr string }{
		{"file:///a/b.snap", "/a/b.snap", ""},
		{"file:///a/./c/../b.snap", "/a/b.snap", ""},
		{"file://localhost/x", "/x", ""},
		{"file:/x", "/x", ""},
		{"", "", "is required"},
		{"file://", "", "must be absolute"},
		{"file:///", "", "names a directory"},
		{"file:///a/..", "", "names a directory"},
		{"file:///a?x=1", "", "query or fragment"},
		{"file:///a%00b", "", "NUL"},
		{"tcp://1.2.3.4:5", "", "only file://"},
		{"%zz", "", "not a URL"},
	}
	for _, tc := range tests {
		got, err := fileURLPath("destination_url", tc.in)
		if tc.wantErr == "" && (err != nil || got != tc.want) {
			t.Errorf("fileURLPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
		if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("fileURLPath(%q) error = %v, want %q", tc.in, err, tc.wantErr)
		}
	}
}

// serveHandler serves h on a fresh socket until the test ends.
func serveHandler(t *testing.T, h http.Handler) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "h.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h}
	go hs.Serve(l)
	t.Cleanup(func() { hs.Close() })
	return path
}

// FuzzRequest: any body and Content-Type on any route gets a documented
// status and, for an error, a JSON ErrorResponse; never a panic.
func FuzzRequest(f *testing.F) {
	f.Add(uint8(0), "application/json", []byte(`{"destination_url": "file:///a"}`))
	f.Add(uint8(1), "", []byte(`{"leave_paused": true}`))
	f.Add(uint8(2), "text/plain", []byte(`{"source_url": "file:///a", "net_fds": [{"id": "n", "num_fds": 1}]}`))
	f.Add(uint8(3), "application/json; charset=\"", []byte(`{`))
	f.Add(uint8(0), "application/json", []byte(`{"destination_url": "file:///a", "destination_url": 1}`))
	f.Add(uint8(4), "", []byte("\x00\xff"))
	doc := loadOpenAPI(f)
	f.Fuzz(func(t *testing.T, route uint8, contentType string, body []byte) {
		fc := newFake()
		fc.archive = fc.archive[:100]
		s := NewServer(fc, ServerOptions{})
		routes := s.Routes()
		r := routes[int(route)%len(routes)]
		req := httptest.NewRequest(r.Method, r.Path, bytes.NewReader(body))
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if !doc.documents(r.Method, r.Path, rec.Code) {
			t.Fatalf("%s %s with body %q: undocumented status %d (%s)", r.Method, r.Path, body, rec.Code, rec.Body)
		}
		if rec.Code >= 400 {
			var er ErrorResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &er); err != nil || er.Error == "" || strings.Contains(er.Error, "\n") {
				t.Fatalf("error body %q is not a one-line ErrorResponse", rec.Body)
			}
		}
	})
}
