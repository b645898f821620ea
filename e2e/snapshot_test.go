//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/chsnap/chsnap/formats"
)

// shortDir returns a short temporary directory: unix socket paths are
// limited to 108 bytes, which t.TempDir can exceed.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "chs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// startChsnap starts chsnap with args (run or restore), console on stdio.
func startChsnap(t *testing.T, args ...string) *vmProc {
	t.Helper()
	return startChsnapFiles(t, nil, args...)
}

// startChsnapFiles is startChsnap with files as the child's fds 3, 4, ...
// The test keeps its own copies of files.
func startChsnapFiles(t *testing.T, files []*os.File, args ...string) *vmProc {
	t.Helper()
	cmd := exec.Command(chsnapBin, args...)
	cmd.ExtraFiles = files
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &vmProc{cmd: cmd, stdin: stdin, stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
	})
	p.con = newConsole(stdout, stdin)
	return p
}

// chsnapOK runs a chsnap client command and fails the test unless it exits 0.
func chsnapOK(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(chsnapBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("chsnap %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func ticksOf(t *testing.T, p *vmProc) uint64 {
	t.Helper()
	var n uint64
	if _, err := fmt.Sscanf(p.command(t, "ticks", "ticks "), "ticks %d", &n); err != nil {
		t.Fatalf("ticks reply: %v", err)
	}
	return n
}

// bootFilled boots the test guest, fills 256 MiB and returns the VM and its
// API socket.
func bootFilled(t *testing.T, dir string, cpus int) (*vmProc, string) {
	t.Helper()
	return bootFilledSized(t, dir, cpus, "512M", 256)
}

// bootFilledSized boots the test guest with mem of RAM and fills fillMiB.
func bootFilledSized(t *testing.T, dir string, cpus int, mem string, fillMiB int) (*vmProc, string) {
	t.Helper()
	sock := filepath.Join(dir, "a.sock")
	p := startChsnap(t, "run", "--kernel", guestImage(t), "--cpus", fmt.Sprint(cpus), "--memory", mem, "--api-socket", sock)
	if _, err := p.con.Expect(fmt.Sprintf(`^chsnap-guest ready cpus=%d$`, cpus), 60*time.Second); err != nil {
		t.Fatalf("%v\nconsole:\n%s\nstderr:\n%s", err, p.con.Transcript(), p.stderr)
	}
	p.command(t, fmt.Sprintf("fill %d 4242", fillMiB), fmt.Sprintf("fill ok %d", fillMiB))
	return p, sock
}

// TestSnapshotRestore saves a running guest that filled 256 MiB, kills the
// first process, restores the archive in a new one, and checks the memory
// and that the timer continues from where it stopped.
func TestSnapshotRestore(t *testing.T) {
	needKVM(t)
	for _, cpus := range []int{1, 2} {
		t.Run(fmt.Sprintf("cpus=%d", cpus), func(t *testing.T) {
			dir := shortDir(t)
			p, sock := bootFilled(t, dir, cpus)
			time.Sleep(200 * time.Millisecond)
			before := ticksOf(t, p)
			snap := filepath.Join(dir, "vm.snap")
			chsnapOK(t, "save", "--api-socket", sock, snap)
			p.cmd.Process.Kill()
			p.wait(t, 10*time.Second)
			if _, err := os.Stat(sock); err == nil {
				t.Logf("note: the killed VM's socket %s is left behind (stale)", sock)
			}

			r := startChsnap(t, "restore", snap, "--api-socket", filepath.Join(dir, "b.sock"))
			r.command(t, "verify", "verify ok")
			after := ticksOf(t, r)
			if after < before {
				t.Errorf("ticks went back: %d before the save, %d after the restore", before, after)
			}
			if after > before+6000 {
				t.Errorf("ticks jumped from %d to %d across the restore", before, after)
			}
			time.Sleep(300 * time.Millisecond)
			if later := ticksOf(t, r); later <= after {
				t.Errorf("restored timer does not run: %d then %d", after, later)
			}
			r.command(t, "cpus", fmt.Sprintf("cpus %d", cpus))
			r.send(t, "poweroff")
			if st := r.wait(t, 30*time.Second); st != 0 {
				t.Errorf("restored VM exit status %d after poweroff; stderr:\n%s", st, r.stderr)
			}
		})
	}
}

// TestRestoreTwice restores one archive into two processes at once and
// checks that they are independent guests.
func TestRestoreTwice(t *testing.T) {
	needKVM(t)
	dir := shortDir(t)
	p, sock := bootFilled(t, dir, 1)
	snap := filepath.Join(dir, "vm.snap")
	chsnapOK(t, "save", "--api-socket", sock, snap)
	p.cmd.Process.Kill()

	a := startChsnap(t, "restore", snap, "--api-socket", filepath.Join(dir, "r1.sock"))
	b := startChsnap(t, "restore", snap, "--api-socket", filepath.Join(dir, "r2.sock"))
	a.command(t, "verify", "verify ok")
	b.command(t, "verify", "verify ok")
	a.command(t, "fill 64 777", "fill ok 64") // a's memory moves on
	b.command(t, "verify", "verify ok")       // b's does not
	a.command(t, "verify", "verify ok")
	a.send(t, "poweroff")
	b.send(t, "poweroff")
	if st := a.wait(t, 30*time.Second); st != 0 {
		t.Errorf("first restore exit %d", st)
	}
	if st := b.wait(t, 30*time.Second); st != 0 {
		t.Errorf("second restore exit %d", st)
	}
}

// TestSaveRestorePausedSaveIdentical: an archive restored paused and saved
// again, with nothing run in between, is byte for byte the same.
func TestSaveRestorePausedSaveIdentical(t *testing.T) {
	needKVM(t)
	dir := shortDir(t)
	p, sock := bootFilled(t, dir, 2)
	first := filepath.Join(dir, "first.snap")
	chsnapOK(t, "save", "--api-socket", sock, first)
	p.cmd.Process.Kill()

	sock2 := filepath.Join(dir, "r.sock")
	r := startChsnap(t, "restore", first, "--paused", "--api-socket", sock2)
	waitSocket(t, sock2, r)
	if info := chsnapOK(t, "info", "--api-socket", sock2); !strings.Contains(info, `"Paused"`) {
		t.Errorf("info after restore --paused: %s", info)
	}
	second := filepath.Join(dir, "second.snap")
	chsnapOK(t, "save", "--api-socket", sock2, second)
	a, _ := os.ReadFile(first)
	b, _ := os.ReadFile(second)
	if !bytes.Equal(a, b) {
		t.Fatalf("second archive differs: %d vs %d bytes", len(a), len(b))
	}
	// It was saved paused and is still paused; now let it run.
	chsnapOK(t, "resume", "--api-socket", sock2)
	r.command(t, "verify", "verify ok")
	chsnapOK(t, "shutdown", "--api-socket", sock2)
	if st := r.wait(t, 30*time.Second); st != 0 {
		t.Errorf("exit status %d after vmm.shutdown; stderr:\n%s", st, r.stderr)
	}
}

// waitSocket waits until chsnap has put its API socket up.
func waitSocket(t *testing.T, sock string, p *vmProc) {
	t.Helper()
	for i := 0; i < 300; i++ {
		if _, err := os.Stat(sock); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no API socket %s after 30s; stderr:\n%s", sock, p.stderr)
}

// TestRestoreRefusesDamage: a truncated, bit-flipped (config, vCPU and
// memory sections), wrong-magic or newer-major archive is refused with one
// clear line, and no guest starts (no API socket appears, exit status 1).
func TestRestoreRefusesDamage(t *testing.T) {
	needKVM(t)
	dir := shortDir(t)
	p, sock := bootFilledSized(t, dir, 1, "128M", 32)
	snap := filepath.Join(dir, "vm.snap")
	chsnapOK(t, "save", "--api-socket", sock, snap)
	p.cmd.Process.Kill()
	good, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	_, _, table, err := formats.ReadTable(bytes.NewReader(good), int64(len(good)))
	if err != nil {
		t.Fatal(err)
	}
	offsetOf := func(kind formats.SectionKind) int64 {
		for _, s := range table {
			if s.Kind == kind {
				return s.Offset + 24 + int64(s.Length)/2
			}
		}
		t.Fatalf("no %s section", kind)
		return 0
	}
	// Each damaged copy is made when its case runs: archives are large.
	flip := func(kind formats.SectionKind) func() []byte {
		return func() []byte {
			b := bytes.Clone(good)
			b[offsetOf(kind)] ^= 0x10
			return b
		}
	}
	cases := map[string]func() []byte{
		"truncated":         func() []byte { return good[:len(good)/2] },
		"truncated tail":    func() []byte { return good[:len(good)-5] },
		"flip config":       flip(formats.KindConfig),
		"flip vcpu":         flip(formats.KindVCPU),
		"flip memory":       flip(formats.KindMemoryChunk),
		"flip memory index": flip(formats.KindMemoryIndex),
		"wrong magic":       func() []byte { return append([]byte("NOTSNAP!"), good[8:]...) },
		"newer major": func() []byte {
			// Major version 2 (u16 at offset 8) with a valid header checksum
			// (the xxhash64 of bytes 0-23, at 24): the version is refused.
			b := bytes.Clone(good)
			b[8] = 2
			binary.LittleEndian.PutUint64(b[24:], xxhash.Sum64(b[:24]))
			return b
		},
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			bad := filepath.Join(dir, "bad.snap")
			if err := os.WriteFile(bad, data(), 0o644); err != nil {
				t.Fatal(err)
			}
			rsock := filepath.Join(dir, "bad.sock")
			status, stderr := runChsnap(t, nil, "restore", bad, "--api-socket", rsock)
			checkOneLineError(t, status, stderr, 1, "restore")
			if name == "newer major" && !strings.Contains(stderr, "newer") {
				t.Errorf("newer major not reported as a version problem: %s", stderr)
			}
			if _, err := os.Stat(rsock); err == nil {
				t.Errorf("an API socket appeared: a guest was started")
			}
			vstatus, vstderr := runChsnap(t, nil, "verify", bad)
			checkOneLineError(t, vstatus, vstderr, 1, "archive")
		})
	}
	if out := chsnapOK(t, "verify", snap); !strings.Contains(out, "ok") {
		t.Errorf("verify of the good archive: %s", out)
	}
	if out := chsnapOK(t, "inspect", snap, "--json"); !strings.Contains(out, `"cpus": 1`) {
		t.Errorf("inspect --json: %s", out)
	}
}

// TestSaveRestoreStreams saves to standard output (`chsnap save -`) and
// restores from standard input (`chsnap restore -`), with the restored
// guest's console on an inherited descriptor since stdin carries the archive.
func TestSaveRestoreStreams(t *testing.T) {
	needKVM(t)
	dir := shortDir(t)
	p, sock := bootFilledSized(t, dir, 1, "128M", 32)
	snapPath := filepath.Join(dir, "stream.snap")
	out, err := os.Create(snapPath)
	if err != nil {
		t.Fatal(err)
	}
	save := exec.Command(chsnapBin, "save", "--api-socket", sock, "-")
	save.Stdout = out
	var saveErr bytes.Buffer
	save.Stderr = &saveErr
	if err := save.Run(); err != nil {
		t.Fatalf("chsnap save -: %v\n%s", err, saveErr.String())
	}
	out.Close()
	p.cmd.Process.Kill()

	in, err := os.Open(snapPath)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "console"), os.NewFile(uintptr(fds[1]), "guest-console")
	defer ours.Close()
	restore := exec.Command(chsnapBin, "restore", "-", "--serial", "fd=3", "--api-socket", filepath.Join(dir, "s.sock"))
	restore.Stdin = in
	restore.ExtraFiles = []*os.File{theirs}
	var stderr bytes.Buffer
	restore.Stderr = &stderr
	if err := restore.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	defer restore.Process.Kill()
	con := newConsole(ours, ours)
	if reply, err := con.Command("verify", time.Minute); err != nil || reply != "verify ok" {
		t.Fatalf("verify after restore from stdin: %q, %v\nstderr:\n%s", reply, err, stderr.String())
	}
	if err := con.Send("poweroff"); err != nil {
		t.Fatal(err)
	}
	if err := restore.Wait(); err != nil {
		t.Fatalf("chsnap restore -: %v\nstderr:\n%s", err, stderr.String())
	}
}

// apiPut sends a PUT with a JSON body to chsnap's API socket and returns the
// status and body.
func apiPut(t *testing.T, sock, op, body string) (int, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}, Timeout: 2 * time.Minute}
	req, err := http.NewRequest("PUT", "http://localhost/api/v1/"+op, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("PUT %s: %v", op, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRestoreThroughAPI starts a VMM with only its API socket and restores
// an archive into it with PUT /api/v1/vm.restore (Cloud Hypervisor's body):
// the VM comes back paused, as Cloud Hypervisor's does, and runs on resume.
func TestRestoreThroughAPI(t *testing.T) {
	needKVM(t)
	dir := shortDir(t)
	p, sock := bootFilledSized(t, dir, 2, "128M", 32)
	snap := filepath.Join(dir, "vm.snap")
	chsnapOK(t, "save", "--api-socket", sock, snap)
	p.cmd.Process.Kill()

	vmm := filepath.Join(dir, "vmm.sock")
	r := startChsnap(t, "restore", "--api-socket", vmm)
	waitSocket(t, vmm, r)
	if out, err := exec.Command(chsnapBin, "info", "--api-socket", vmm).CombinedOutput(); err == nil || !strings.Contains(string(out), "no VM yet") {
		t.Errorf("info before vm.restore: %v: %s", err, out)
	}
	if st, body := apiPut(t, vmm, "vm.restore", `{"source_url": "file://`+filepath.Join(dir, "missing.snap")+`"}`); st != 500 || !strings.Contains(body, "no such file") {
		t.Errorf("vm.restore of a missing file: %d %s", st, body)
	}
	if st, body := apiPut(t, vmm, "vm.restore", `{"source_url": "file://`+snap+`"}`); st != 204 {
		t.Fatalf("vm.restore: %d %s\nstderr:\n%s", st, body, r.stderr)
	}
	if info := chsnapOK(t, "info", "--api-socket", vmm); !strings.Contains(info, `"Paused"`) {
		t.Errorf("info after vm.restore: %s", info)
	}
	if st, body := apiPut(t, vmm, "vm.restore", `{"source_url": "file://`+snap+`"}`); st != 409 {
		t.Errorf("second vm.restore: %d %s, want 409", st, body)
	}
	chsnapOK(t, "resume", "--api-socket", vmm)
	r.command(t, "verify", "verify ok")
	r.command(t, "cpus", "cpus 2")
	r.send(t, "poweroff")
	if st := r.wait(t, 30*time.Second); st != 0 {
		t.Errorf("exit status %d; stderr:\n%s", st, r.stderr)
	}
}
