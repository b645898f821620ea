// Command snapbench measures snapshots of the test guest: a 2 GiB guest with
// 1 GiB filled by `fillmix` (half zero pages, a quarter text-like, a quarter
// random). For chsnap and for QEMU (-M microvm, KVM, the same guest) in the
// same run it times the save (pause to file), the archive size and the
// restore (process start to the guest answering), and then measures the
// host's own limits on the same bytes: file write and read, zstd at
// chsnap's level, xxhash. It prints the medians as a table with ratios.
//
//	go run ./bench/snapbench -chsnap bin/chsnap -guest bin/chsnap-guest.bzImage
//
// The two VMMs never run at the same time, and each archive is deleted
// before the next VMM starts, so the host needs about the guest's memory
// plus the largest file.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/chsnap/chsnap/bench/internal/vmcon"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

type config struct {
	chsnap, guest, qemu, accel string
	memory                     string
	fillMiB                    int
	seed                       uint64
	runs                       int
	dir                        string
	parts                      map[string]bool
}

func main() {
	var c config
	flag.StringVar(&c.chsnap, "chsnap", "bin/chsnap", "chsnap binary")
	flag.StringVar(&c.guest, "guest", "bin/chsnap-guest.bzImage", "test guest bzImage")
	flag.StringVar(&c.qemu, "qemu", "qemu-system-x86_64", "QEMU binary")
	flag.StringVar(&c.accel, "accel", "kvm", "QEMU accelerator (tcg only to try the QEMU part without KVM)")
	flag.StringVar(&c.memory, "memory", "2G", "guest memory")
	flag.IntVar(&c.fillMiB, "fill", 1024, "MiB the guest fills with fillmix")
	flag.Uint64Var(&c.seed, "seed", 42, "fillmix seed")
	flag.IntVar(&c.runs, "runs", 3, "repetitions of each measurement; the median is reported")
	flag.StringVar(&c.dir, "dir", "", "directory for archives and sockets (default: a new one under $TMPDIR)")
	parts := flag.String("parts", "chsnap,qemu,host", "comma-separated parts to run: chsnap, qemu, host")
	flag.Parse()
	c.parts = map[string]bool{}
	for _, p := range strings.Split(*parts, ",") {
		c.parts[strings.TrimSpace(p)] = true
	}
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "snapbench:", err)
		os.Exit(1)
	}
}

func run(c config) error {
	if c.runs < 1 {
		return errors.New("-runs must be at least 1")
	}
	if c.fillMiB < 1 {
		return errors.New("-fill must be at least 1 MiB")
	}
	for p := range c.parts {
		if p != "chsnap" && p != "qemu" && p != "host" {
			return fmt.Errorf("-parts: unknown part %q (chsnap, qemu, host)", p)
		}
	}
	if c.dir == "" {
		d, err := os.MkdirTemp("", "snapbench")
		if err != nil {
			return fmt.Errorf("work directory: %w", err)
		}
		defer os.RemoveAll(d)
		c.dir = d
	}
	var ch, qe vmResult
	var host hostResult
	var err error
	if c.parts["chsnap"] {
		if ch, err = benchChsnap(c); err != nil {
			return fmt.Errorf("chsnap: %w", err)
		}
	}
	if c.parts["qemu"] {
		if qe, err = benchQEMU(c); err != nil {
			return fmt.Errorf("QEMU: %w", err)
		}
	}
	if c.parts["host"] {
		if host, err = benchHost(c); err != nil {
			return fmt.Errorf("host limits: %w", err)
		}
	}
	printTable(os.Stdout, c, ch, qe, host)
	return nil
}

// vmResult is one VMM's measurements, one entry per run.
type vmResult struct {
	save, restore []time.Duration
	size          int64
}

func (r vmResult) ok() bool { return len(r.save) > 0 }

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "snapbench: "+format+"\n", args...)
}

// fillGuest waits for the ready line and runs fillmix.
func fillGuest(p *vmcon.Proc, c config) error {
	if _, err := p.Expect(`^chsnap-guest ready cpus=\d+$`, 2*time.Minute); err != nil {
		return err
	}
	t0 := time.Now()
	want := fmt.Sprintf("fillmix ok %d", c.fillMiB)
	l, err := p.Command(fmt.Sprintf("fillmix %d %d", c.fillMiB, c.seed), "^(fillmix|error) ", 15*time.Minute)
	if err != nil {
		return err
	}
	if l.Text != want {
		return fmt.Errorf("%s: fillmix replied %q, want %q", p.Name(), l.Text, want)
	}
	logf("%s: fillmix %d MiB took %v", p.Name(), c.fillMiB, time.Since(t0).Round(time.Millisecond))
	return nil
}

// restoreOnce starts a restoring process, times it to the guest's first
// answer, then (untimed) checks the guest's memory and ends the process.
// kick, if not nil, runs beside the timing once the process has started
// (QEMU needs a QMP cont).
func restoreOnce(name string, cmd *exec.Cmd, kick func() error) (time.Duration, error) {
	p, err := vmcon.Start(name, cmd)
	if err != nil {
		return 0, err
	}
	defer p.Kill()
	kicked := make(chan error, 1)
	if kick != nil {
		go func() { kicked <- kick() }()
	} else {
		kicked <- nil
	}
	d, err := p.FirstAnswer(10 * time.Minute)
	if err != nil {
		select {
		case kerr := <-kicked:
			if kerr != nil {
				return 0, fmt.Errorf("%w (and %w)", err, kerr)
			}
		default:
		}
		return 0, err
	}
	if err := <-kicked; err != nil {
		return 0, err
	}
	if err := p.Sync("restored"); err != nil {
		return 0, err
	}
	l, err := p.Command("verify", "^(verify|error)", 15*time.Minute)
	if err != nil {
		return 0, err
	}
	if l.Text != "verify ok" {
		return 0, fmt.Errorf("%s: restored guest replied %q to verify", name, l.Text)
	}
	return d, nil
}

func benchChsnap(c config) (vmResult, error) {
	var r vmResult
	sock := filepath.Join(c.dir, "run.sock")
	p, err := vmcon.Start("chsnap", exec.Command(c.chsnap, "run", "--kernel", c.guest, "--memory", c.memory, "--api-socket", sock))
	if err != nil {
		return r, err
	}
	defer p.Kill()
	if err := fillGuest(p, c); err != nil {
		return r, err
	}
	file := filepath.Join(c.dir, "chsnap.snap")
	defer os.Remove(file)
	for i := range c.runs {
		t0 := time.Now()
		out, err := exec.Command(c.chsnap, "save", "--api-socket", sock, file).CombinedOutput()
		d := time.Since(t0)
		if err != nil {
			return r, fmt.Errorf("chsnap save: %w: %s", err, strings.TrimSpace(string(out)))
		}
		r.save = append(r.save, d)
		if err := p.Sync(fmt.Sprint("save ", i)); err != nil {
			return r, err
		}
		logf("chsnap: save %d: %v", i+1, d.Round(time.Millisecond))
	}
	fi, err := os.Stat(file)
	if err != nil {
		return r, err
	}
	r.size = fi.Size()
	logf("chsnap: archive %d bytes", r.size)
	p.Kill()
	os.Remove(sock)
	for i := range c.runs {
		rsock := filepath.Join(c.dir, "restore.sock")
		d, err := restoreOnce("chsnap restore", exec.Command(c.chsnap, "restore", file, "--api-socket", rsock), nil)
		os.Remove(rsock)
		if err != nil {
			return r, err
		}
		r.restore = append(r.restore, d)
		logf("chsnap: restore %d: %v", i+1, d.Round(time.Millisecond))
	}
	return r, nil
}

func (c config) qemuArgs(extra ...string) []string {
	cpu := "host,-arch-capabilities"
	if c.accel != "kvm" {
		cpu = "max"
	}
	return append([]string{"-M", "microvm", "-accel", c.accel, "-cpu", cpu, "-m", c.memory,
		"-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio", "-no-reboot",
		"-kernel", c.guest}, extra...)
}

func benchQEMU(c config) (vmResult, error) {
	var r vmResult
	qsock := filepath.Join(c.dir, "qmp.sock")
	p, err := vmcon.Start("qemu", exec.Command(c.qemu, c.qemuArgs("-qmp", "unix:"+qsock+",server=on,wait=off")...))
	if err != nil {
		return r, err
	}
	defer p.Kill()
	if err := fillGuest(p, c); err != nil {
		return r, err
	}
	q, err := dialQMP(qsock, 30*time.Second)
	if err != nil {
		return r, err
	}
	defer q.close()
	// As for a save to file (libvirt does the same): no bandwidth cap.
	if _, err := q.run("migrate-set-parameters", map[string]any{"max-bandwidth": int64(1) << 40}); err != nil {
		return r, err
	}
	file := filepath.Join(c.dir, "qemu.mig")
	defer os.Remove(file)
	for i := range c.runs {
		os.Remove(file)
		t0 := time.Now()
		if err := qemuSave(q, file); err != nil {
			return r, err
		}
		d := time.Since(t0)
		r.save = append(r.save, d)
		if _, err := q.run("cont", nil); err != nil {
			return r, err
		}
		if err := p.Sync(fmt.Sprint("save ", i)); err != nil {
			return r, err
		}
		logf("qemu: save %d: %v", i+1, d.Round(time.Millisecond))
	}
	fi, err := os.Stat(file)
	if err != nil {
		return r, err
	}
	r.size = fi.Size()
	logf("qemu: migration file %d bytes", r.size)
	q.close()
	p.Kill()
	os.Remove(qsock)
	for i := range c.runs {
		// The stream says the guest was stopped, so QEMU stays paused
		// after the incoming migration until a QMP cont.
		cmd := exec.Command(c.qemu, c.qemuArgs("-qmp", "unix:"+qsock+",server=on,wait=off", "-incoming", "exec:cat "+file)...)
		d, err := restoreOnce("qemu -incoming", cmd, func() error { return qemuCont(qsock) })
		os.Remove(qsock)
		if err != nil {
			return r, err
		}
		r.restore = append(r.restore, d)
		logf("qemu: restore %d: %v", i+1, d.Round(time.Millisecond))
	}
	return r, nil
}

// qemuSave stops the guest and migrates it into file, polling until the
// migration has completed.
func qemuSave(q *qmp, file string) error {
	if _, err := q.run("stop", nil); err != nil {
		return err
	}
	if _, err := q.run("migrate", map[string]any{"uri": "exec:cat > " + file}); err != nil {
		return err
	}
	for {
		raw, err := q.run("query-migrate", nil)
		if err != nil {
			return err
		}
		var st struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		if err := json.Unmarshal(raw, &st); err != nil {
			return fmt.Errorf("query-migrate: %w", err)
		}
		switch st.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("migration %s: %s", st.Status, st.ErrorDesc)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// qemuCont waits for the incoming migration to finish and resumes the guest.
func qemuCont(sock string) error {
	q, err := dialQMP(sock, time.Minute)
	if err != nil {
		return err
	}
	defer q.close()
	for {
		raw, err := q.run("query-status", nil)
		if err != nil {
			return err
		}
		var st struct {
			Status string `json:"status"`
		}
		if err := json.Unmarshal(raw, &st); err != nil {
			return fmt.Errorf("query-status: %w", err)
		}
		switch st.Status {
		case "inmigrate":
			time.Sleep(2 * time.Millisecond)
			continue
		case "paused", "postmigrate":
			_, err := q.run("cont", nil)
			return err
		default:
			return fmt.Errorf("incoming migration left the guest %q", st.Status)
		}
	}
}
