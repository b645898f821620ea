//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runChsnap runs chsnap to completion with args and returns its exit status
// and standard error.
func runChsnap(t *testing.T, cred *syscall.Credential, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(chsnapBin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdin = strings.NewReader("")
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("chsnap %v did not finish in 60s; stderr:\n%s", args, stderr.String())
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

// TestRunBadInput checks that each bad input of `chsnap run` gets its own
// one-line error and a non-zero status, before any guest starts.
func TestRunBadInput(t *testing.T) {
	dir := t.TempDir()
	notKernel := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notKernel, bytes.Repeat([]byte("not a kernel\n"), 100), 0o644); err != nil {
		t.Fatal(err)
	}
	guest := guestImage(t)
	for _, tc := range []struct {
		name   string
		args   []string
		status int
		want   string
	}{
		{"missing kernel", []string{"run", "--kernel", filepath.Join(dir, "nope")}, 1, "no such file"},
		{"missing initrd", []string{"run", "--kernel", guest, "--initrd", filepath.Join(dir, "nope")}, 1, "initrd"},
		{"not a bzImage", []string{"run", "--kernel", notKernel}, 1, "not a bzImage"},
		{"bad size", []string{"run", "--kernel", guest, "--memory", "12X"}, 2, "not a size"},
		{"too little memory", []string{"run", "--kernel", guest, "--memory", "1M"}, 2, "memory"},
		{"zero cpus", []string{"run", "--kernel", guest, "--cpus", "0"}, 2, "--cpus"},
		{"bad serial", []string{"run", "--kernel", guest, "--serial", "tcp:1"}, 2, "--serial"},
		{"serial fd not open", []string{"run", "--kernel", guest, "--serial", "fd=97"}, 1, "not open"},
		{"serial fd stdout", []string{"run", "--kernel", guest, "--serial", "fd=1"}, 2, "standard stream"},
		{"stray argument", []string{"run", "--kernel", guest, "extra"}, 2, "no arguments"},
		{"kvm absent", []string{"run", "--kernel", guest, "--kvm-device", filepath.Join(dir, "no-kvm")}, 1, "absent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, stderr := runChsnap(t, nil, tc.args...)
			checkOneLineError(t, status, stderr, tc.status, tc.want)
		})
	}
}

// TestRunKVMNotPermitted runs chsnap as an unprivileged user against a KVM
// node it may not open.
func TestRunKVMNotPermitted(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run chsnap as another user")
	}
	dir := filepath.Dir(chsnapBin)
	guest := filepath.Join(dir, "guest.bzImage")
	data, err := os.ReadFile(guestImage(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(guest, data, 0o644); err != nil {
		t.Fatal(err)
	}
	node := filepath.Join(dir, "kvm-root-only")
	if err := os.WriteFile(node, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	status, stderr := runChsnap(t, &syscall.Credential{Uid: 65534, Gid: 65534}, "run", "--kernel", guest, "--kvm-device", node)
	checkOneLineError(t, status, stderr, 1, "not permitted")
}

func checkOneLineError(t *testing.T, status int, stderr string, wantStatus int, want string) {
	t.Helper()
	if status != wantStatus {
		t.Errorf("exit status %d, want %d; stderr:\n%s", status, wantStatus, stderr)
	}
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "chsnap: ") {
		t.Errorf("stderr is not one \"chsnap: \" line:\n%s", stderr)
	}
	if !strings.Contains(stderr, want) {
		t.Errorf("stderr %q does not mention %q", stderr, want)
	}
	if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine") {
		t.Errorf("chsnap panicked:\n%s", stderr)
	}
}

// vmProc is a chsnap run whose serial console the test drives.
type vmProc struct {
	cmd    *exec.Cmd
	con    *console
	stdin  io.WriteCloser
	stderr *bytes.Buffer
	done   chan error
}

// startVM starts `chsnap run` with the test guest and extra args, console on
// stdio.
func startVM(t *testing.T, args ...string) *vmProc {
	t.Helper()
	return startChsnap(t, append([]string{"run", "--kernel", guestImage(t)}, args...)...)
}

// wait waits for chsnap to exit and returns its status.
func (p *vmProc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		p.done <- nil // for Cleanup
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("chsnap did not exit within %v\nconsole:\n%s\nstderr:\n%s", timeout, p.con.Transcript(), p.stderr)
	}
	return -1
}

// send writes a command line whose answer is the VM ending, not a reply.
func (p *vmProc) send(t *testing.T, line string) {
	t.Helper()
	if err := p.con.Send(line); err != nil {
		t.Fatalf("send %q: %v", line, err)
	}
}

func (p *vmProc) command(t *testing.T, cmd, wantPrefix string) string {
	t.Helper()
	reply, err := p.con.Command(cmd, 60*time.Second)
	if err != nil {
		t.Fatalf("%s: %v\nconsole:\n%s\nstderr:\n%s", cmd, err, p.con.Transcript(), p.stderr)
	}
	if !strings.HasPrefix(reply, wantPrefix) {
		t.Fatalf("%s: reply %q, want prefix %q\nconsole:\n%s", cmd, reply, wantPrefix, p.con.Transcript())
	}
	return reply
}

// TestBootCPUs boots the test guest with 1, 2 and 8 vCPUs (8 on 2 host cores
// is overcommitted on purpose) and checks every vCPU comes online.
func TestBootCPUs(t *testing.T) {
	needKVM(t)
	for _, n := range []int{1, 2, 8} {
		t.Run(fmt.Sprintf("cpus=%d", n), func(t *testing.T) {
			p := startVM(t, "--cpus", fmt.Sprint(n), "--memory", "256M")
			if _, err := p.con.Expect(fmt.Sprintf(`^chsnap-guest ready cpus=%d$`, n), 60*time.Second); err != nil {
				t.Fatalf("%v\nconsole:\n%s\nstderr:\n%s", err, p.con.Transcript(), p.stderr)
			}
			p.command(t, "cpus", fmt.Sprintf("cpus %d", n))
			p.send(t, "poweroff")
			if st := p.wait(t, 30*time.Second); st != 0 {
				t.Errorf("exit status %d after poweroff, want 0; stderr:\n%s", st, p.stderr)
			}
		})
	}
}

// TestFillVerifyTicks fills and verifies 256 MiB and checks the timer runs.
func TestFillVerifyTicks(t *testing.T) {
	needKVM(t)
	p := startVM(t, "--cpus", "2", "--memory", "512M")
	if _, err := p.con.Expect(`^chsnap-guest ready cpus=2$`, 60*time.Second); err != nil {
		t.Fatalf("%v\nconsole:\n%s\nstderr:\n%s", err, p.con.Transcript(), p.stderr)
	}
	p.command(t, "fill 256 12345", "fill ok 256")
	p.command(t, "verify", "verify ok")
	var t1, t2 uint64
	fmt.Sscanf(p.command(t, "ticks", "ticks "), "ticks %d", &t1)
	time.Sleep(300 * time.Millisecond)
	fmt.Sscanf(p.command(t, "ticks", "ticks "), "ticks %d", &t2)
	if t2 <= t1 {
		t.Errorf("ticks did not advance: %d then %d", t1, t2)
	}
	p.send(t, "reboot")
	if st := p.wait(t, 30*time.Second); st != 0 {
		t.Errorf("exit status %d after reboot, want 0; stderr:\n%s", st, p.stderr)
	}
}

// TestSerialFD hands chsnap a socket as its serial console (fd 3) and checks
// chsnap uses it both ways and closes it at exit.
func TestSerialFD(t *testing.T) {
	needKVM(t)
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "console"), os.NewFile(uintptr(fds[1]), "guest-console")
	defer ours.Close()
	cmd := exec.Command(chsnapBin, "run", "--kernel", guestImage(t), "--serial", "fd=3")
	cmd.ExtraFiles = []*os.File{theirs}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close() // the child holds the only other copy now
	defer cmd.Process.Kill()
	con := newConsole(ours, ours)
	if _, err := con.Expect(`^chsnap-guest ready`, 60*time.Second); err != nil {
		t.Fatalf("%v\nconsole:\n%s\nstderr:\n%s", err, con.Transcript(), stderr.String())
	}
	if reply, err := con.Command("echo via-fd", 30*time.Second); err != nil || reply != "echo via-fd" {
		t.Fatalf("echo over fd 3: %q, %v", reply, err)
	}
	if err := con.Send("poweroff"); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("chsnap: %v; stderr:\n%s", err, stderr.String())
	}
	if strings.Contains(stderr.String(), "bad file descriptor") {
		t.Errorf("chsnap closed the serial fd twice or early:\n%s", stderr.String())
	}
	// chsnap has exited and held the only other end: reads must see EOF.
	ours.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := io.Copy(io.Discard, ours); err != nil {
		t.Errorf("after exit, reading the console gave %v after %d bytes; want EOF", err, n)
	}
}

// TestRunPVMNote checks that on a kvm_pvm host chsnap says, in one line, that
// a stock kernel only gets through early boot, and says nothing of the kind
// for the test guest.
func TestRunPVMNote(t *testing.T) {
	if _, err := os.Stat("/sys/module/kvm_pvm"); err != nil {
		t.Skip("SKIPPED: not a kvm_pvm host")
	}
	dir := debianKernelDir(t)
	missing := filepath.Join(t.TempDir(), "no-kvm")
	_, stderr := runChsnap(t, nil, "run", "--kernel", filepath.Join(dir, "vmlinux"), "--kvm-device", missing)
	if n := strings.Count(stderr, "kvm_pvm"); n != 1 {
		t.Errorf("want one kvm_pvm note for a stock kernel, got %d in:\n%s", n, stderr)
	}
	_, stderr = runChsnap(t, nil, "run", "--kernel", guestImage(t), "--kvm-device", missing)
	if strings.Contains(stderr, "kvm_pvm") {
		t.Errorf("kvm_pvm note printed for the test guest:\n%s", stderr)
	}
}
