package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/chsnap/chsnap/vm/api"
)

// fakeVM is an api.Controller without KVM. Its archive is a byte pattern;
// failAfter >= 0 makes Snapshot fail after that many bytes, and hold, if
// set, makes it wait there until closed (started is closed first).
type fakeVM struct {
	mu        sync.Mutex
	paused    bool
	archive   []byte
	failAfter int
	hold      chan struct{}
	started   chan struct{}
	lastOpt   api.SnapshotOptions
}

func newFakeVM() *fakeVM {
	a := make([]byte, 1<<20+123)
	for i := range a {
		a[i] = byte(i ^ i>>11)
	}
	return &fakeVM{archive: a, failAfter: -1}
}

func (f *fakeVM) Info() (api.VMInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := api.StateRunning
	if f.paused {
		st = api.StatePaused
	}
	return api.VMInfo{State: st, Config: api.VMConfigInfo{
		CPUs: api.CPUsConfig{BootVCPUs: 1, MaxVCPUs: 1}, Memory: api.MemoryConfig{Size: 64 << 20},
	}, MemoryActualSize: 64 << 20}, nil
}

func (f *fakeVM) Pause() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.paused {
		return api.StateErrorf("the VM is already paused")
	}
	f.paused = true
	return nil
}

func (f *fakeVM) Resume() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.paused {
		return api.StateErrorf("the VM is not paused")
	}
	f.paused = false
	return nil
}

func (f *fakeVM) Snapshot(w io.Writer, opt api.SnapshotOptions) error {
	f.mu.Lock()
	f.lastOpt = opt
	failAfter, hold, started := f.failAfter, f.hold, f.started
	f.mu.Unlock()
	stop := len(f.archive)
	if failAfter >= 0 {
		stop = failAfter
	}
	for off := 0; off < stop; off += 4096 {
		if _, err := w.Write(f.archive[off:min(off+4096, stop)]); err != nil {
			return err
		}
	}
	if started != nil {
		close(started)
	}
	if hold != nil {
		<-hold
		_, err := w.Write(f.archive[stop:])
		return err
	}
	if stop < len(f.archive) {
		return errors.New("memdump: chunk 3: read guest memory: bad address")
	}
	return nil
}

func (f *fakeVM) SnapshotToFile(string, api.SnapshotOptions) error { return nil }
func (f *fakeVM) Shutdown() error                                  { return nil }

// serveFake runs an API server for f on a socket in a temporary directory.
func serveFake(t *testing.T, f *fakeVM) (socket string, srv *api.Server) {
	t.Helper()
	socket = filepath.Join(t.TempDir(), "vm.sock")
	l, err := api.Listen(socket)
	if err != nil {
		t.Fatal(err)
	}
	srv = api.NewServer(f, api.ServerOptions{Version: "test"})
	done := make(chan struct{})
	go func() { srv.Serve(l); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return socket, srv
}

// runCLI runs chsnap with args as main does, with the API commands added
// (main.go wires them in separately), and returns the exit status.
func runCLI(t *testing.T, stdout, stderr io.Writer, args ...string) int {
	t.Helper()
	app := newApp(stdout, stderr)
	have := map[string]bool{}
	for _, c := range app.Commands {
		have[c.Name] = true
	}
	for _, c := range apiCommands() {
		if !have[c.Name] {
			app.Commands = append(app.Commands, c)
		}
	}
	err := app.Run(append([]string{programName}, args...))
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", programName, err)
	}
	return exitCode(err)
}

// run1 runs chsnap with buffers for stdout and stderr.
func run1(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = runCLI(t, &out, &errb, args...)
	return code, out.String(), errb.String()
}

// dirEntries lists a directory's names.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestSaveToFile(t *testing.T) {
	f := newFakeVM()
	sock, _ := serveFake(t, f)
	dir := t.TempDir()
	dest := filepath.Join(dir, "vm.snap")
	code, out, errs := run1(t, "save", "--api-socket", sock, "--leave-paused", dest)
	if code != 0 {
		t.Fatalf("save: exit %d, stderr %q", code, errs)
	}
	if out != "" || errs != "" {
		t.Errorf("save not on a terminal printed stdout %q stderr %q, want silence", out, errs)
	}
	got, err := os.ReadFile(dest)
	if err != nil || !bytes.Equal(got, f.archive) {
		t.Fatalf("archive: %d bytes (%v), want the %d streamed bytes", len(got), err, len(f.archive))
	}
	if fi, _ := os.Stat(dest); fi.Mode().Perm() != 0o600 {
		t.Errorf("archive mode %v, want 0600", fi.Mode().Perm())
	}
	if names := dirEntries(t, dir); len(names) != 1 {
		t.Errorf("directory holds %v, want only vm.snap", names)
	}
	if !f.lastOpt.LeavePaused {
		t.Errorf("--leave-paused did not reach the VM")
	}
}

// TestSaveFailureKeepsOldArchive: a stream that fails midway leaves the
// earlier archive as it was and no temporary file.
func TestSaveFailureKeepsOldArchive(t *testing.T) {
	f := newFakeVM()
	f.failAfter = 300 << 10
	sock, _ := serveFake(t, f)
	dir := t.TempDir()
	dest := filepath.Join(dir, "vm.snap")
	old := []byte("an earlier archive")
	if err := os.WriteFile(dest, old, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs := run1(t, "save", "--api-socket", sock, dest)
	if code != 1 {
		t.Fatalf("save with a failing stream: exit %d, want 1 (stderr %q)", code, errs)
	}
	want := "chsnap: save " + dest + ": vm.snapshot.stream: failed after 307200 bytes: memdump: chunk 3: read guest memory: bad address\n"
	if errs != want {
		t.Errorf("stderr = %q, want %q", errs, want)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, old) {
		t.Errorf("the earlier archive changed: %q", got)
	}
	if names := dirEntries(t, dir); len(names) != 1 {
		t.Errorf("directory holds %v, want only vm.snap", names)
	}
}

// TestSaveServerDies: the VMM going away mid-stream is an error, the old
// archive stays, no temporary file is left.
func TestSaveServerDies(t *testing.T) {
	f := newFakeVM()
	f.failAfter = 200 << 10
	f.hold, f.started = make(chan struct{}), make(chan struct{})
	sock, srv := serveFake(t, f)
	dir := t.TempDir()
	dest := filepath.Join(dir, "vm.snap")
	os.WriteFile(dest, []byte("old"), 0o600)
	go func() {
		<-f.started
		srv.Close()
		close(f.hold)
	}()
	code, _, errs := run1(t, "save", "--api-socket", sock, dest)
	if code != 1 || !strings.Contains(errs, "archive cut off after") {
		t.Errorf("save against a dying VMM: exit %d, stderr %q", code, errs)
	}
	if got, _ := os.ReadFile(dest); string(got) != "old" {
		t.Errorf("the earlier archive changed: %q", got)
	}
	if names := dirEntries(t, dir); len(names) != 1 {
		t.Errorf("directory holds %v, want only vm.snap", names)
	}
}

// TestSaveInterrupted: SIGINT during a save removes the temporary file and
// leaves the earlier archive.
func TestSaveInterrupted(t *testing.T) {
	f := newFakeVM()
	f.failAfter = 100 << 10
	f.hold, f.started = make(chan struct{}), make(chan struct{})
	sock, _ := serveFake(t, f)
	dir := t.TempDir()
	dest := filepath.Join(dir, "vm.snap")
	os.WriteFile(dest, []byte("old"), 0o600)
	go func() {
		<-f.started
		// save's signal.NotifyContext is active while the stream runs.
		time.Sleep(50 * time.Millisecond)
		syscall.Kill(os.Getpid(), syscall.SIGINT)
	}()
	code, _, errs := run1(t, "save", "--api-socket", sock, dest)
	close(f.hold)
	if code != 1 || !strings.Contains(errs, "interrupted; any earlier archive is left as it was") {
		t.Errorf("interrupted save: exit %d, stderr %q", code, errs)
	}
	if got, _ := os.ReadFile(dest); string(got) != "old" {
		t.Errorf("the earlier archive changed: %q", got)
	}
	if names := dirEntries(t, dir); len(names) != 1 {
		t.Errorf("directory holds %v, want only vm.snap", names)
	}
}

func TestSaveToStdout(t *testing.T) {
	f := newFakeVM()
	sock, _ := serveFake(t, f)
	code, out, errs := run1(t, "save", "--api-socket", sock, "-")
	if code != 0 || errs != "" || out != string(f.archive) {
		t.Errorf("save -: exit %d, stderr %q, %d bytes on stdout (want %d)", code, errs, len(out), len(f.archive))
	}
}

// openPTY returns both ends of a new pseudo-terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal to test with: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Skipf("ptsname: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Skipf("open pty slave: %v", err)
	}
	t.Cleanup(func() { s.Close(); m.Close() })
	return m, s
}

func TestSaveToTerminalRefused(t *testing.T) {
	_, tty := openPTY(t)
	var errb bytes.Buffer
	code := runCLI(t, tty, &errb, "save", "--api-socket", "/nonexistent.sock", "-")
	if code != 2 || !strings.Contains(errb.String(), "refusing to write the archive to a terminal") {
		t.Errorf("save - to a terminal: exit %d, stderr %q", code, errb.String())
	}
}

// TestSaveProgressOnTerminal: with stderr on a terminal, save draws a
// progress line and ends with a summary.
func TestSaveProgressOnTerminal(t *testing.T) {
	master, tty := openPTY(t)
	var shown bytes.Buffer
	readDone := make(chan struct{})
	go func() {
		io.Copy(&shown, master) // ends with EIO when the slave closes
		close(readDone)
	}()
	f := newFakeVM()
	sock, _ := serveFake(t, f)
	dest := filepath.Join(t.TempDir(), "vm.snap")
	var out bytes.Buffer
	code := runCLI(t, &out, tty, "save", "--api-socket", sock, dest)
	tty.Close()
	<-readDone
	if code != 0 {
		t.Fatalf("save: exit %d, terminal %q", code, shown.String())
	}
	s := shown.String()
	if !strings.Contains(s, "saving "+dest) || !strings.Contains(s, "saved "+dest+": 1.0 MiB in") {
		t.Errorf("terminal shows %q, want a progress line and a summary", s)
	}
	if out.Len() != 0 {
		t.Errorf("stdout got %q during a save to a file", out.String())
	}
}

func TestAPICommands(t *testing.T) {
	f := newFakeVM()
	sock, _ := serveFake(t, f)
	if code, out, errs := run1(t, "pause", "--api-socket", sock); code != 0 || out != "" || errs != "" {
		t.Errorf("pause: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, _, errs := run1(t, "pause", "--api-socket", sock)
	if code != 1 || errs != "chsnap: vm.pause: the VM is already paused\n" {
		t.Errorf("second pause: exit %d, stderr %q", code, errs)
	}
	code, out, _ := run1(t, "info", "--api-socket", sock)
	var info api.VMInfo
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil || info.State != api.StatePaused || info.Config.Memory.Size != 64<<20 {
		t.Errorf("info: exit %d, stdout %q", code, out)
	}
	if code, _, errs := run1(t, "resume", "--api-socket", sock); code != 0 {
		t.Errorf("resume: exit %d, stderr %q", code, errs)
	}
	if code, _, errs := run1(t, "shutdown", "--api-socket", sock); code != 0 {
		t.Errorf("shutdown: exit %d, stderr %q", code, errs)
	}
}

func TestAPICommandsByName(t *testing.T) {
	runtime := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", runtime)
	sock := api.DefaultSocketPath("web-1")
	l, err := api.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := api.NewServer(newFakeVM(), api.ServerOptions{})
	go srv.Serve(l)
	defer srv.Close()
	if code, _, errs := run1(t, "pause", "--name", "web-1"); code != 0 {
		t.Errorf("pause --name web-1: exit %d, stderr %q", code, errs)
	}
	code, _, errs := run1(t, "pause")
	want := "no VMM is listening on " + filepath.Join(runtime, "chsnap", "default.sock")
	if code != 1 || !strings.Contains(errs, want) || strings.Count(errs, "\n") != 1 {
		t.Errorf("pause with no VM: exit %d, stderr %q, want one line containing %q", code, errs, want)
	}
}

func TestAPICommandUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"pause", "now"}, `pause takes no arguments (got "now")`},
		{[]string{"info", "x"}, `info takes no arguments`},
		{[]string{"resume", "--api-socket", "/a.sock", "--name", "b"}, "--api-socket and --name exclude each other"},
		{[]string{"shutdown", "--name", "../etc"}, "--name: api: VM name"},
		{[]string{"shutdown", "--api-socket", ""}, "--api-socket: empty path"},
		{[]string{"save"}, "save takes one argument, FILE or - (got 0)"},
		{[]string{"save", "a", "b"}, "save takes one argument, FILE or - (got 2)"},
		{[]string{"save", "--name", "a/b", "x.snap"}, "--name: api: VM name"},
		{[]string{"save", "--nosuch", "x.snap"}, "flag provided but not defined: -nosuch"},
		{[]string{"save", os.TempDir()}, "is a directory"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errs := run1(t, tc.args...)
			if code != 2 || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, errs, tc.want)
			}
			if out != "" {
				t.Errorf("stdout %q on a usage error", out)
			}
		})
	}
}
