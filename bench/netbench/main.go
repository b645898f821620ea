// Command netbench measures networking through virtio-net on a tap, from
// the host side, for chsnap and for QEMU (-M microvm, KVM, the same test
// guest) in the same run, and prints the medians as a table with the ratio
// chsnap/QEMU:
//
//	go run ./bench/netbench -chsnap bin/chsnap -guest bin/chsnap-guest.bzImage
//
// Each repetition gives each VMM a private network namespace of its own
// with a tap (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, 10.0.0.1/24 on the host side)
// whose fd the VMM inherits as fd 3; the guest takes 10.0.0.2/24 from its
// command line (chsnap.ip=) and answers UDP echo on port 7 while idle at
// its prompt. netbench then measures, over one UDP socket in that
// namespace:
//
//   - latency: -count sequential echo round trips of -size-byte payloads
//     after -warmup unmeasured ones; the median and the 99th percentile;
//   - packet rate: -window requests kept in flight for -duration (each echo
//     answered with a new request, a request without an echo after
//     -loss-timeout counted lost and replaced); echoes per second.
//
// The VMM order alternates between repetitions. Nothing touches the network
// namespace netbench runs in; the namespaces disappear with their last fd.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/chsnap/chsnap/bench/internal/vmcon"
)

// defaultCmdline is chsnap run's default --cmdline (cmd/chsnap/run.go);
// both VMMs' guests get it plus the words netbench adds.
const defaultCmdline = "console=ttyS0 reboot=k panic=1"

// guestMAC is given to both VMMs' devices.
const guestMAC = "52:54:00:12:34:56"

type config struct {
	chsnap, guest, qemu, accel, memory string
	runs, count, warmup, window, size  int
	duration, lossAfter, timeout       time.Duration
	vmms                               []string
	json                               bool
	qemuExtra                          []string
}

func main() {
	var c config
	flag.StringVar(&c.chsnap, "chsnap", "bin/chsnap", "chsnap binary")
	flag.StringVar(&c.guest, "guest", "bin/chsnap-guest.bzImage", "test guest bzImage")
	flag.StringVar(&c.qemu, "qemu", "qemu-system-x86_64", "QEMU binary")
	flag.StringVar(&c.accel, "accel", "kvm", "QEMU accelerator (tcg only to try the QEMU part without KVM; its numbers mean nothing)")
	flag.StringVar(&c.memory, "memory", "256M", "guest memory")
	flag.IntVar(&c.runs, "runs", 3, "repetitions; the median is reported")
	flag.IntVar(&c.count, "count", 2000, "sequential round trips timed for the latency")
	flag.IntVar(&c.warmup, "warmup", 200, "round trips before the latency is timed")
	flag.IntVar(&c.window, "window", 32, "requests in flight for the packet rate")
	flag.IntVar(&c.size, "size", 64, "UDP payload bytes")
	flag.DurationVar(&c.duration, "duration", 3*time.Second, "how long the packet rate is measured")
	flag.DurationVar(&c.lossAfter, "loss-timeout", 500*time.Millisecond, "a request with no echo after this long is lost")
	flag.DurationVar(&c.timeout, "boot-timeout", 60*time.Second, "how long a guest may take to print its ready line")
	only := flag.String("only", "", "measure one VMM only: chsnap or qemu")
	flag.BoolVar(&c.json, "json", false, "print the results as JSON instead of a table")
	qemuExtra := flag.String("qemu-args", "", "extra QEMU arguments, space-separated")
	flag.Parse()
	c.vmms = []string{"chsnap", "qemu"}
	if *only != "" {
		c.vmms = []string{*only}
	}
	c.qemuExtra = strings.Fields(*qemuExtra)
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "netbench:", err)
		os.Exit(1)
	}
}

// check refuses settings that cannot give a measurement.
func (c config) check() error {
	for _, v := range c.vmms {
		if v != "chsnap" && v != "qemu" {
			return fmt.Errorf("-only: unknown VMM %q (chsnap, qemu)", v)
		}
	}
	switch {
	case c.runs < 1:
		return errors.New("-runs must be at least 1")
	case c.count < 1:
		return errors.New("-count must be at least 1")
	case c.warmup < 0:
		return errors.New("-warmup must not be negative")
	case c.window < 1 || c.window > 4096:
		return fmt.Errorf("-window %d outside 1..4096", c.window)
	case c.size < minPayload || c.size > 1472:
		return fmt.Errorf("-size %d outside %d..1472 bytes (one untagged Ethernet frame)", c.size, minPayload)
	case c.duration <= 0:
		return errors.New("-duration must be positive")
	case c.lossAfter < time.Millisecond:
		return errors.New("-loss-timeout must be at least 1ms")
	}
	return nil
}

func run(c config) error {
	if err := c.check(); err != nil {
		return err
	}
	results := map[string][]runResult{}
	start := time.Now()
	for rep := range c.runs {
		// Alternate which VMM goes first, so neither always runs on a
		// colder (or warmer) host.
		order := slices.Clone(c.vmms)
		if rep%2 == 1 {
			slices.Reverse(order)
		}
		for _, vmm := range order {
			r, err := onePass(c, vmm)
			if err != nil {
				return fmt.Errorf("%s, repetition %d: %w", vmm, rep+1, err)
			}
			results[vmm] = append(results[vmm], r)
			fmt.Fprintf(os.Stderr, "netbench: %s rep %d: %s\n", vmm, rep+1, r)
		}
	}
	if c.json {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(jsonReport(c, results)); err != nil {
			return fmt.Errorf("json output: %w", err)
		}
	} else {
		printTable(os.Stdout, c, results)
	}
	fmt.Fprintf(os.Stderr, "netbench: whole run %v\n", time.Since(start).Round(time.Second))
	return nil
}

// runResult is one VMM's measurements in one repetition.
type runResult struct {
	P50, P99 time.Duration
	LatLost  int // latency round trips without an echo
	Rate     rateResult
	GuestNet string // the guest's `net` line after the run
}

func (r runResult) String() string {
	return fmt.Sprintf("latency p50 %.1f µs p99 %.1f µs (%d lost), %.0f pkts/s (%d sent, %d lost, %d late); guest %q",
		micros(r.P50), micros(r.P99), r.LatLost, r.Rate.PPS(), r.Rate.Sent, r.Rate.Lost, r.Rate.Late, r.GuestNet)
}

// command builds vmm's command line; the tap is its fd 3.
func (c config) command(vmm string) *exec.Cmd {
	guestWords := "chsnap.ip=" + guestAddr.String()
	if vmm == "chsnap" {
		return exec.Command(c.chsnap, "run", "--kernel", c.guest, "--cpus", "1", "--memory", c.memory,
			"--net", "id=net0,fd=3,mac="+guestMAC,
			"--cmdline", defaultCmdline+" "+guestWords)
	}
	cpu := "host,-arch-capabilities"
	if c.accel != "kvm" {
		cpu = "max"
	}
	// QEMU 7.2 microvm describes virtio-mmio transports to the guest only
	// in the DSDT when ACPI is on, so the command-line word the test guest
	// reads is passed here: transport 1 at 0xfeb00200, GSI 25 on microvm's
	// second I/O APIC. Not transport 0: QEMU's I/O APIC model delivers
	// input 0 on pin 2, so the interrupt-driven guest driver would never
	// see GSI 24 (testdata/guest/README.md).
	cmd := exec.Command(c.qemu, "-M", "microvm", "-accel", c.accel, "-cpu", cpu, "-smp", "1", "-m", c.memory,
		"-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio", "-no-reboot",
		"-kernel", c.guest,
		"-append", defaultCmdline+" virtio_mmio.device=512@0xfeb00200:25 "+guestWords,
		"-global", "virtio-mmio.force-legacy=false",
		"-netdev", "tap,id=n0,fd=3,vhost=off",
		"-device", "virtio-net-device,netdev=n0,bus=virtio-mmio-bus.1,mac="+guestMAC)
	cmd.Args = append(cmd.Args, c.qemuExtra...)
	return cmd
}

// arpTimeout is how long the guest may take to answer the first echo
// (and so the ARP request before it) once it is ready.
const arpTimeout = 10 * time.Second

// onePass boots vmm on a fresh namespace and tap and measures.
func onePass(c config, vmm string) (runResult, error) {
	var r runResult
	env, err := newNetEnv()
	if err != nil {
		return r, err
	}
	defer env.close()
	cmd := c.command(vmm)
	cmd.ExtraFiles = []*os.File{env.tap}
	p, err := vmcon.Start(vmm, cmd)
	if err != nil {
		return r, err
	}
	defer p.Kill()
	if _, err := p.Expect(`chsnap-guest ready`, c.timeout); err != nil {
		return r, fmt.Errorf("guest did not boot: %w", err)
	}
	if err := checkGuestNet(p); err != nil {
		return r, err
	}
	e := newEchoer(env.sock, c.size)
	if err := waitEcho(env, e, arpTimeout); err != nil {
		// The guest's counters tell whether frames reached it at all.
		if l, nerr := p.Command("net", `^(net |error)`, 10*time.Second); nerr == nil {
			return r, fmt.Errorf("%w; %s; guest says %q", err, env.tapStats(), l.Text)
		}
		return r, fmt.Errorf("%w; %s", err, env.tapStats())
	}
	if _, err := e.measureLatency(c.warmup, c.lossAfter); err != nil {
		return r, fmt.Errorf("warm-up: %w", err)
	}
	lat, err := e.measureLatency(c.count, c.lossAfter)
	if err != nil {
		return r, fmt.Errorf("latency: %w", err)
	}
	if len(lat.RTTs) == 0 {
		return r, fmt.Errorf("latency: none of %d requests was echoed", c.count)
	}
	r.P50, r.P99, r.LatLost = percentile(lat.RTTs, 50), percentile(lat.RTTs, 99), lat.Lost
	if r.Rate, err = e.measureRate(c.window, c.duration, c.lossAfter); err != nil {
		return r, fmt.Errorf("packet rate: %w", err)
	}
	if e.bad > 0 {
		return r, fmt.Errorf("%d replies were not intact echoes of a request", e.bad)
	}
	l, err := p.Command("net", `^(net |error)`, 30*time.Second)
	if err != nil {
		return r, err
	}
	r.GuestNet = l.Text
	return r, nil
}

// netLine matches the guest's reply to `net` for one device with our
// address and its link up.
var netLine = regexp.MustCompile(`^net devs=1 .*net0=.*ip:` + regexp.QuoteMeta(guestAddr.String()) + `.*link:up`)

// checkGuestNet asks the guest for its network devices: one, with the
// address from the command line, link up.
func checkGuestNet(p *vmcon.Proc) error {
	l, err := p.Command("net", `^(net |error)`, 30*time.Second)
	if err != nil {
		return err
	}
	if !netLine.MatchString(l.Text) {
		return fmt.Errorf("guest does not show one net device with %v and link up: %q", guestAddr, l.Text)
	}
	return nil
}

// waitEcho sends echo requests until one is answered, for up to limit. It
// then names what failed: the guest never answered ARP, or it did but
// echoed nothing.
func waitEcho(env *netEnv, e *echoer, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	arp := false // the guest's address was resolved at some point
	for time.Now().Before(deadline) {
		_, ok, err := e.roundTrip(200 * time.Millisecond)
		if err != nil {
			return fmt.Errorf("first echo from %v port %d: %w", guestAddr.Addr(), echoPort, err)
		}
		if ok {
			return nil
		}
		arp = arp || resolved(env.guestNeighbour())
	}
	if !arp {
		return fmt.Errorf("guest did not answer ARP for %v within %v (host neighbour entry %s)", guestAddr.Addr(), limit, env.guestNeighbour())
	}
	return fmt.Errorf("guest answered ARP but no UDP echo on %v port %d within %v", guestAddr.Addr(), echoPort, limit)
}
