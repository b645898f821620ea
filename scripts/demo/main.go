// Command demo boots chsnap's test guest, talks to it over its serial
// console, saves it, kills it, restores the archive in a new process and
// shows that the guest carries on. `make demo` runs it.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	chsnap := flag.String("chsnap", "bin/chsnap", "chsnap binary")
	guest := flag.String("guest", "bin/chsnap-guest.bzImage", "test guest")
	flag.Parse()
	if err := run(*chsnap, *guest); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// vm is a chsnap process whose console the demo drives.
type vm struct {
	cmd   *exec.Cmd
	in    io.Writer
	lines chan string
}

func start(chsnap string, args ...string) (*vm, error) {
	cmd := exec.Command(chsnap, args...)
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	v := &vm{cmd: cmd, in: in, lines: make(chan string, 100)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			v.lines <- strings.TrimRight(sc.Text(), "\r")
		}
		close(v.lines)
	}()
	return v, nil
}

// expect prints console lines until one starts with prefix.
func (v *vm) expect(prefix string) (string, error) {
	timeout := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-v.lines:
			if !ok {
				return "", fmt.Errorf("the VM exited before printing %q", prefix)
			}
			fmt.Printf("  guest| %s\n", l)
			if strings.HasPrefix(l, prefix) {
				return l, nil
			}
		case <-timeout:
			return "", fmt.Errorf("no %q from the guest within 60s", prefix)
		}
	}
}

func (v *vm) say(cmd, reply string) (string, error) {
	fmt.Printf("host > %s\n", cmd)
	fmt.Fprintln(v.in, cmd)
	if reply == "" {
		return "", nil
	}
	return v.expect(reply)
}

func step(format string, args ...any) { fmt.Printf("\n== "+format+"\n", args...) }

func run(chsnap, guest string) error {
	dir, err := os.MkdirTemp("", "chsnap-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sock1, sock2, snap := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock"), filepath.Join(dir, "vm.snap")

	step("boot: chsnap run --cpus 2 --memory 512M --api-socket %s", sock1)
	t0 := time.Now()
	a, err := start(chsnap, "run", "--kernel", guest, "--cpus", "2", "--memory", "512M", "--api-socket", sock1)
	if err != nil {
		return err
	}
	defer a.cmd.Process.Kill()
	if _, err := a.expect("chsnap-guest ready"); err != nil {
		return err
	}
	fmt.Printf("   (ready %v after starting chsnap)\n", time.Since(t0).Round(time.Millisecond))
	for _, c := range [][2]string{{"cpus", "cpus "}, {"fill 128 42", "fill "}, {"verify", "verify "}, {"ticks", "ticks "}} {
		if _, err := a.say(c[0], c[1]); err != nil {
			return err
		}
	}

	step("save: chsnap save --api-socket %s %s", sock1, snap)
	t0 = time.Now()
	if out, err := exec.Command(chsnap, "save", "--api-socket", sock1, snap).CombinedOutput(); err != nil {
		return fmt.Errorf("save: %v\n%s", err, out)
	}
	fi, err := os.Stat(snap)
	if err != nil {
		return err
	}
	fmt.Printf("   saved in %v: %d bytes for 512 MiB of guest RAM\n", time.Since(t0).Round(time.Millisecond), fi.Size())
	step("the first chsnap process is killed")
	a.cmd.Process.Kill()
	a.cmd.Wait()

	step("inspect: chsnap inspect %s", snap)
	out, err := exec.Command(chsnap, "inspect", snap).CombinedOutput()
	if err != nil {
		return fmt.Errorf("inspect: %v\n%s", err, out)
	}
	fmt.Print(string(out))

	step("restore in a new process: chsnap restore %s --api-socket %s", snap, sock2)
	t0 = time.Now()
	b, err := start(chsnap, "restore", snap, "--api-socket", sock2)
	if err != nil {
		return err
	}
	defer b.cmd.Process.Kill()
	if _, err := b.say("verify", "verify "); err != nil {
		return err
	}
	fmt.Printf("   (the restored guest answered %v after starting chsnap restore)\n", time.Since(t0).Round(time.Millisecond))
	if _, err := b.say("ticks", "ticks "); err != nil {
		return err
	}
	b.say("poweroff", "")
	if err := b.cmd.Wait(); err != nil {
		return fmt.Errorf("restored VM: %v", err)
	}
	step("the restored guest powered off; chsnap exited 0")
	return nil
}
