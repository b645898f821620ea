package vm

import (
	"errors"
	"fmt"
	"io"
	"log"
	"strconv"
	"strings"
)

// Limits on a VM's shape. MaxCPUs follows the xAPIC: APIC ids are 8 bits and
// 0xFF is the broadcast id.
const (
	MaxCPUs       = 254
	MinMemory     = 16 << 20
	MaxMemory     = 1 << 40
	DefaultMemory = 512 << 20
)

// ErrConfig marks an invalid VM configuration; the message says which field.
var ErrConfig = errors.New("vm: invalid configuration")

// Config describes a VM to boot: its shape, the kernel to boot it with,
// and the host resources it uses. Kernel is the only required field.
type Config struct {
	Shape
	// Kernel is the kernel image: a bzImage, or an ELF vmlinux with a PVH note.
	Kernel []byte
	// KernelPath names the kernel in messages.
	KernelPath string
	// Initrd is an optional initial ramdisk.
	Initrd []byte
	Host
}

// Shape is a VM's shape: data only, what an archive's config section
// records and what a restore rebuilds before any state is loaded.
type Shape struct {
	// Cmdline is the kernel command line.
	Cmdline string
	// CPUs is the number of vCPUs, 1 to MaxCPUs.
	CPUs int
	// Topology arranges the vCPUs; the zero value is DefaultTopology(CPUs).
	Topology Topology
	// Memory is guest RAM in bytes: a multiple of 2 MiB from MinMemory to MaxMemory.
	Memory uint64
	// Disks are the virtio-blk disks, in device order.
	Disks []DiskConfig
	// Nets are the virtio-net devices, in device order (after the disks).
	// Each carries its tap (NetConfig.Tap), the one host resource that
	// travels with the shape.
	Nets []NetConfig
}

// Host is what of the host a VM uses, besides its disk images and taps:
// none of it is recorded in an archive, and a restore is given it again.
type Host struct {
	// KVMDevice is the KVM device node; empty means /dev/kvm.
	KVMDevice string
	// SerialOut receives the bytes the guest writes to its serial port;
	// nil discards them. The VM does not close it.
	SerialOut io.Writer
	// SerialIn supplies bytes the guest reads from its serial port; nil
	// means none. The VM reads it from its own goroutine and does not close it.
	SerialIn io.Reader
	// Logger receives the problems that do not stop the VM (a serial input
	// error, a net that could not announce itself); nil writes them to
	// standard error, prefixed "chsnap: ".
	Logger *log.Logger
}

// Validate checks every field without touching the system.
func (c *Config) Validate() error {
	if len(c.Kernel) == 0 {
		return fmt.Errorf("%w: no kernel given", ErrConfig)
	}
	return c.Shape.Validate()
}

// Validate checks the shape without touching the system.
func (c *Shape) Validate() error {
	if c.CPUs < 1 || c.CPUs > MaxCPUs {
		return fmt.Errorf("%w: %d vCPUs is outside 1..%d", ErrConfig, c.CPUs, MaxCPUs)
	}
	if !c.Topology.IsZero() {
		if err := c.Topology.Validate(); err != nil {
			return err
		}
		if c.Topology.CPUs() != c.CPUs {
			return fmt.Errorf("%w: topology %s has %d vCPUs, not %d", ErrConfig, c.Topology, c.Topology.CPUs(), c.CPUs)
		}
	}
	if c.Memory < MinMemory || c.Memory > MaxMemory {
		return fmt.Errorf("%w: memory %s is outside %s..%s", ErrConfig, FormatSize(c.Memory), FormatSize(MinMemory), FormatSize(MaxMemory))
	}
	if c.Memory%(2<<20) != 0 {
		return fmt.Errorf("%w: memory %d bytes is not a multiple of 2 MiB", ErrConfig, c.Memory)
	}
	return validateDevices(c.Disks, c.Nets)
}

// topology is the vCPU topology in effect: Topology, or the default.
func (c *Shape) topology() Topology {
	if c.Topology.IsZero() {
		return DefaultTopology(c.CPUs)
	}
	return c.Topology
}

// ParseSize parses a memory size such as "512M", "2G", "1536MiB", "4 GiB"
// or "4096k".
// Suffixes are binary (K=1024); "B" alone means bytes. A bare number means
// MiB, as with QEMU's -m.
func ParseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	if i := strings.IndexByte(t, ' '); i > 0 {
		if unit := strings.TrimLeft(t[i:], " "); unit != "" && (unit[0] < '0' || unit[0] > '9') {
			t = t[:i] + unit // "4 GiB", as FormatSize writes
		}
	}
	if t == "" {
		return 0, fmt.Errorf("%w: empty size", ErrConfig)
	}
	upper := strings.ToUpper(t)
	upper = strings.TrimSuffix(upper, "IB")
	bytes := false // a "B" after the number itself: plain bytes
	if u, ok := strings.CutSuffix(upper, "B"); ok {
		upper, bytes = u, u != "" && u[len(u)-1] >= '0' && u[len(u)-1] <= '9'
	}
	shift := uint(20)
	if bytes {
		shift = 0
	} else if n := len(upper); n > 0 {
		switch upper[n-1] {
		case 'K':
			shift, upper = 10, upper[:n-1]
		case 'M':
			shift, upper = 20, upper[:n-1]
		case 'G':
			shift, upper = 30, upper[:n-1]
		case 'T':
			shift, upper = 40, upper[:n-1]
		}
	}
	n, err := strconv.ParseUint(upper, 10, 64)
	if err != nil || upper == "" {
		return 0, fmt.Errorf("%w: %q is not a size (use e.g. 512M or 2G)", ErrConfig, s)
	}
	if n > (1<<63)>>shift {
		return 0, fmt.Errorf("%w: size %q is too large", ErrConfig, s)
	}
	return n << shift, nil
}

// FormatSize renders a byte count with a binary unit, the one byte
// formatter of chsnap's messages and progress lines: "1000 B", "512 MiB",
// "2 GiB", exact whenever a unit divides n with a short quotient ("1536 MiB"),
// otherwise rounded to three digits ("1.5 KiB", "920 MiB"). ParseSize reads
// back every exact form.
func FormatSize(n uint64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	for i := len(units) - 1; i >= 0; i-- {
		shift := 10 * uint(i+1)
		if n%(1<<shift) == 0 && n>>shift < 10000 {
			return fmt.Sprintf("%d %ciB", n>>shift, units[i])
		}
	}
	v, i := float64(n)/1024, 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if v >= 100 {
		return fmt.Sprintf("%.0f %ciB", v, units[i])
	}
	return fmt.Sprintf("%.1f %ciB", v, units[i])
}
