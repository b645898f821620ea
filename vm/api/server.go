package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/chsnap/chsnap/fdmap"
)

// Prefix is the path every route starts with.
const Prefix = "/api/v1/"

// Operation names: the last path element of each route.
const (
	OpPing           = "vmm.ping"
	OpShutdown       = "vmm.shutdown"
	OpInfo           = "vm.info"
	OpPause          = "vm.pause"
	OpResume         = "vm.resume"
	OpSnapshot       = "vm.snapshot"
	OpSnapshotStream = "vm.snapshot.stream"
	OpRestore        = "vm.restore"
)

// Headers of vm.snapshot.stream's response.
const (
	// HeaderMemoryBytes carries guest RAM in bytes (decimal), for a
	// client's progress display.
	HeaderMemoryBytes = "Chsnap-Memory-Bytes"
	// TrailerError carries the message of a failure after the body began.
	TrailerError = "Chsnap-Error"
)

// MaxBodySize caps a request body; a larger one gets 413.
const MaxBodySize = 64 << 10

// Route is one method on one path that the server answers.
type Route struct {
	// Method is the HTTP method, e.g. "PUT".
	Method string
	// Path is the full path, e.g. "/api/v1/vm.pause".
	Path string
}

// ServerOptions are the server's fixed facts.
type ServerOptions struct {
	// Version is chsnap's release version, reported by vmm.ping.
	Version string
	// BuildVersion identifies the build, reported by vmm.ping.
	BuildVersion string
}

// Server serves the API for one Controller. Create it with NewServer, then
// call Serve; Close or Shutdown ends it. Its methods are safe for concurrent
// use.
type Server struct {
	c      Controller
	opt    ServerOptions
	routes map[string]map[string]http.HandlerFunc // path → method → handler
	srv    *http.Server
}

// NewServer returns a server for c.
func NewServer(c Controller, opt ServerOptions) *Server {
	s := &Server{c: c, opt: opt}
	s.routes = map[string]map[string]http.HandlerFunc{}
	add := func(method, op string, h http.HandlerFunc) {
		p := Prefix + op
		if s.routes[p] == nil {
			s.routes[p] = map[string]http.HandlerFunc{}
		}
		s.routes[p][method] = h
	}
	add(http.MethodGet, OpPing, s.ping)
	add(http.MethodGet, OpInfo, s.info)
	add(http.MethodPut, OpPause, s.action(OpPause, c.Pause))
	add(http.MethodPut, OpResume, s.action(OpResume, c.Resume))
	add(http.MethodPut, OpShutdown, s.action(OpShutdown, c.Shutdown))
	add(http.MethodPut, OpSnapshot, s.snapshot)
	add(http.MethodPut, OpSnapshotStream, s.snapshotStream)
	add(http.MethodPut, OpRestore, s.restore)
	s.srv = &http.Server{
		// Descriptors a request brought and its handler did not take
		// (any but vm.restore's) are closed when it returns.
		Handler: fdmap.CloseUntaken(s),
		// No ReadTimeout or WriteTimeout: a snapshot stream may take
		// minutes, and bodies are bounded by MaxBodySize instead.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	return s
}

// Routes lists every route the server answers, sorted by path then method.
func (s *Server) Routes() []Route {
	var rs []Route
	for p, ms := range s.routes {
		for m := range ms {
			rs = append(rs, Route{Method: m, Path: p})
		}
	}
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].Path != rs[j].Path {
			return rs[i].Path < rs[j].Path
		}
		return rs[i].Method < rs[j].Method
	})
	return rs
}

// Serve answers requests on l until Close or Shutdown, and closes l (which,
// for a listener from Listen, removes the socket file). It returns nil after
// Close or Shutdown.
//
// Descriptors a client sends with SCM_RIGHTS on a request are kept for that
// request (vm.restore binds them to network devices) and closed otherwise.
func (s *Server) Serve(l net.Listener) error {
	s.srv.ConnContext = fdmap.ConnContext
	err := s.srv.Serve(fdmap.NewListener(l, maxRequestFDs))
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops the server at once: it closes the listener and every
// connection, cutting off a snapshot stream in progress.
func (s *Server) Close() error { return s.srv.Close() }

// Shutdown stops accepting requests and waits, until ctx ends, for those in
// progress to finish. Use it after vmm.shutdown so the reply reaches the
// client before the process exits.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// ServeHTTP routes a request: 404 for an unknown path, 405 (with Allow) for
// a known path with the wrong method.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ms, ok := s.routes[r.URL.Path]
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint %s", r.URL.Path))
		return
	}
	h, ok := ms[r.Method]
	if !ok {
		var allow []string
		for m := range ms {
			allow = append(allow, m)
		}
		sort.Strings(allow)
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s does not accept %s (use %s)", path.Base(r.URL.Path), r.Method, strings.Join(allow, ", ")))
		return
	}
	h(w, r)
}

func (s *Server) ping(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, PingResponse{
		BuildVersion: s.opt.BuildVersion,
		Version:      s.opt.Version,
		PID:          int64(os.Getpid()),
		Features:     []string{OpSnapshotStream},
	})
}

func (s *Server) info(w http.ResponseWriter, _ *http.Request) {
	info, err := s.c.Info()
	if err != nil {
		writeControllerError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

// action serves a body-less PUT that calls f and answers 204. Like Cloud
// Hypervisor, it ignores any request body.
func (s *Server) action(op string, f func() error) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if err := f(); err != nil {
			writeControllerError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) snapshot(w http.ResponseWriter, r *http.Request) {
	var cfg SnapshotConfig
	if !decodeBody(w, r, &cfg, true) {
		return
	}
	p, err := fileURLPath("destination_url", cfg.DestinationURL)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := s.c.SnapshotToFile(p, SnapshotOptions{}); err != nil {
		writeControllerError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) restore(w http.ResponseWriter, r *http.Request) {
	var cfg RestoreConfig
	ok := decodeBody(w, r, &cfg, true)
	// Descriptors sent with the request arrived with its first bytes:
	// they are all here once the body is read. Whatever they are, they are
	// this handler's to hand on or close.
	files := fdmap.TakeFDs(r.Context())
	defer func() { closeFiles(files) }()
	if !ok {
		return
	}
	if _, err := fileURLPath("source_url", cfg.SourceURL); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	for i, n := range cfg.NetFDs {
		if n.ID == "" {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("net_fds[%d]: id is required", i))
			return
		}
	}
	rs, ok := s.c.(Restorer)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this VMM cannot restore; start one with `chsnap restore` (no archive) or `chsnap restore FILE`")
		return
	}
	p, _ := fileURLPath("source_url", cfg.SourceURL)
	handed := files
	files = nil // Restore owns them now
	if err := rs.Restore(p, cfg, handed); err != nil {
		writeControllerError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) snapshotStream(w http.ResponseWriter, r *http.Request) {
	var cfg StreamConfig
	if !decodeBody(w, r, &cfg, false) {
		return
	}
	sw := &streamWriter{w: w}
	if info, err := s.c.Info(); err == nil {
		sw.memBytes = info.Config.Memory.Size
	}
	err := s.c.Snapshot(sw, SnapshotOptions{LeavePaused: cfg.LeavePaused})
	switch {
	case !sw.started && err != nil:
		writeControllerError(w, err)
	case !sw.started:
		writeError(w, http.StatusInternalServerError, "the snapshot produced no data")
	case err != nil:
		// The status line is gone; the declared trailer tells the client.
		w.Header().Set(TrailerError, oneLine(err.Error()))
	}
}

// streamWriter sends the response header on the first byte of the archive,
// so that a failure before it can still get a proper error status.
type streamWriter struct {
	w        http.ResponseWriter
	memBytes uint64
	started  bool
}

func (s *streamWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if !s.started {
		h := s.w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Trailer", TrailerError)
		if s.memBytes > 0 {
			h.Set(HeaderMemoryBytes, strconv.FormatUint(s.memBytes, 10))
		}
		s.w.WriteHeader(http.StatusOK)
		s.started = true
	}
	return s.w.Write(p)
}

// fileURLPath checks that u is file:// with an absolute path naming a file
// (not a directory) and returns the cleaned path.
func fileURLPath(field, u string) (string, error) {
	if u == "" {
		return "", fmt.Errorf("%s is required", field)
	}
	pu, err := url.Parse(u)
	if err != nil {
		return "", fmt.Errorf("%s %q is not a URL: %w", field, u, err)
	}
	if pu.Scheme != "file" {
		return "", fmt.Errorf("%s %q: only file:// URLs are supported", field, u)
	}
	if pu.Host != "" && pu.Host != "localhost" {
		return "", fmt.Errorf("%s %q: host %q is not this machine", field, u, pu.Host)
	}
	if pu.Opaque != "" || !strings.HasPrefix(pu.Path, "/") {
		return "", fmt.Errorf("%s %q: the path must be absolute (file:///dir/vm.snap)", field, u)
	}
	if pu.RawQuery != "" || pu.Fragment != "" {
		return "", fmt.Errorf("%s %q: a query or fragment is not allowed", field, u)
	}
	if strings.HasSuffix(pu.Path, "/") || path.Base(pu.Path) == ".." || path.Base(pu.Path) == "." {
		return "", fmt.Errorf("%s %q: names a directory, not an archive file", field, u)
	}
	if strings.IndexByte(pu.Path, 0) >= 0 {
		return "", fmt.Errorf("%s %q: the path contains a NUL byte", field, u)
	}
	return path.Clean(pu.Path), nil
}

// jsonLikeTypes are the request Content-Types accepted besides *+json:
// curl -d sends form-urlencoded, and Cloud Hypervisor ignores the header.
var jsonLikeTypes = map[string]bool{
	"application/json":                  true,
	"text/plain":                        true,
	"application/x-www-form-urlencoded": true,
}

// decodeBody reads a JSON object into dst, strictly: at most MaxBodySize
// bytes, no unknown fields, nothing after the object. An empty body leaves
// dst as is unless required. On failure it writes the error response and
// returns false.
func decodeBody(w http.ResponseWriter, r *http.Request, dst any, required bool) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || !(jsonLikeTypes[mt] || strings.HasSuffix(mt, "+json")) {
			writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("content type %q is not JSON", ct))
			return false
		}
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodySize))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", MaxBodySize))
			return false
		}
		writeError(w, http.StatusBadRequest, fmt.Sprintf("read request body: %v", err))
		return false
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		if required {
			writeError(w, http.StatusBadRequest, "a JSON request body is required")
			return false
		}
		return true
	}
	if data[0] != '{' {
		writeError(w, http.StatusBadRequest, "the request body must be a JSON object")
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		writeError(w, http.StatusBadRequest, jsonErrorMessage(err))
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("malformed JSON: unexpected data after the object at byte %d", dec.InputOffset()))
		return false
	}
	return true
}

// jsonErrorMessage turns a decoding error into a message for the client.
func jsonErrorMessage(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at byte %d: %s", se.Offset, se.Error())
	case errors.As(err, &te):
		return fmt.Sprintf("field %q must be %s, not a JSON %s", te.Field, te.Type, te.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: the body ends inside the object"
	}
	// DisallowUnknownFields reports `json: unknown field "x"`.
	return strings.TrimPrefix(err.Error(), "json: ")
}

// statusFor maps a Controller error to a status code.
func statusFor(err error) int {
	switch {
	case errors.Is(err, ErrState):
		return http.StatusConflict
	case errors.Is(err, ErrNotImplemented):
		return http.StatusNotImplemented
	case errors.Is(err, fdmap.ErrBinding), errors.Is(err, fdmap.ErrNotTap), errors.Is(err, fdmap.ErrBadFD):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

func writeControllerError(w http.ResponseWriter, err error) {
	writeError(w, statusFor(err), err.Error())
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, ErrorResponse{Error: oneLine(msg)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body, _ = json.Marshal(ErrorResponse{Error: fmt.Sprintf("encode response: %v", err)})
	}
	body = append(body, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// oneLine folds a message onto one line (trailers and log lines need it).
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// maxRequestFDs bounds the descriptors one connection may hold: more than
// any vm.restore needs (fdmap.MaxSCMFDs per message).
const maxRequestFDs = fdmap.MaxSCMFDs

// closeFiles closes descriptors a request brought and nobody took.
func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
