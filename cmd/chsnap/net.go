package main

import (
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/chsnap/chsnap/fdmap"
	"github.com/chsnap/chsnap/vm"
	"github.com/chsnap/chsnap/vm/api"
)

// netFlag is run's --net: a network device to attach, repeatable.
func netFlag() cli.Flag {
	return &cli.StringSliceFlag{
		Name: "net",
		Usage: "attach a virtio-net device: id=ID,tap=NAME[,mac=MAC] opens tap NAME (in --netns), " +
			"id=ID,fd=N[,mac=MAC] uses the inherited tap or macvtap descriptor N (repeatable; a random MAC when none is given)",
	}
}

// netnsFlag is --netns: where taps given by name are opened.
func netnsFlag() cli.Flag {
	return &cli.StringFlag{
		Name:      "netns",
		Usage:     "network namespace file (e.g. /var/run/netns/NAME or /proc/PID/ns/net) in which taps given by name are opened (run's --net tap=NAME, and restore's reopening of them)",
		TakesFile: true,
	}
}

// netFDFlag is restore's --net-fd: an inherited descriptor for a net.
func netFDFlag() cli.Flag {
	return &cli.StringSliceFlag{
		Name: "net-fd",
		Usage: "give net device ID the inherited tap descriptor FD: ID=FD (repeatable; each fd-backed net of the archive needs one, " +
			"nets run with tap=NAME are reopened by name without one)",
	}
}

// netSpec is one parsed --net value.
type netSpec struct {
	id, tap string
	fd      int // -1 when tap is used
	mac     net.HardwareAddr
}

// parseNet parses one --net value of run.
func parseNet(s string) (netSpec, error) {
	n := netSpec{fd: -1}
	var haveFD bool
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return n, fmt.Errorf("--net %q: %q is not key=value", s, kv)
		}
		switch k {
		case "id":
			n.id = v
		case "tap":
			if v == "" {
				return n, fmt.Errorf("--net %q: empty tap name", s)
			}
			n.tap = v
		case "fd":
			fd, err := fdmap.ParseFD(v)
			if err != nil {
				return n, fmt.Errorf("--net %q: %w", s, err)
			}
			n.fd, haveFD = fd, true
		case "mac":
			mac, err := net.ParseMAC(v)
			if err != nil || len(mac) != 6 {
				return n, fmt.Errorf("--net %q: mac %q is not an Ethernet address like 52:54:00:12:34:56", s, v)
			}
			n.mac = mac
		default:
			return n, fmt.Errorf("--net %q: unknown key %q (use id, tap, fd, mac)", s, k)
		}
	}
	switch {
	case n.id == "":
		return n, fmt.Errorf("--net %q: needs id=", s)
	case n.tap == "" && !haveFD:
		return n, fmt.Errorf("--net %q: needs tap=NAME or fd=N", s)
	case n.tap != "" && haveFD:
		return n, fmt.Errorf("--net %q: give tap=NAME or fd=N, not both", s)
	}
	return n, nil
}

// parseNets parses every --net value; the descriptors are not touched yet.
func parseNets(values []string) ([]netSpec, error) {
	var specs []netSpec
	fds := map[int]string{}
	for _, s := range values {
		n, err := parseNet(s)
		if err != nil {
			return nil, err
		}
		if n.fd >= 0 {
			if prev, ok := fds[n.fd]; ok {
				return nil, fmt.Errorf("--net %q: fd %d is already net %s's", s, n.fd, prev)
			}
			fds[n.fd] = n.id
		}
		specs = append(specs, n)
	}
	return specs, nil
}

// netConfigs turns parsed --net values into the VM's nets: it adopts each
// inherited descriptor, or opens each tap by name in netnsPath, and checks
// that each is a usable tap. On error every descriptor taken so far is
// closed. On success the caller hands the taps to vm.New, which owns them.
func netConfigs(specs []netSpec, netnsPath string) (_ []vm.NetConfig, err error) {
	var nets []vm.NetConfig
	defer func() {
		if err != nil {
			for _, n := range nets {
				n.Tap.Close()
			}
		}
	}()
	for _, s := range specs {
		var f *os.File
		if s.fd >= 0 {
			raw, err := fdmap.Adopt(s.fd, fmt.Sprintf("net %s fd %d", s.id, s.fd))
			if err != nil {
				return nil, fmt.Errorf("net %s: %w", s.id, err)
			}
			if _, err := fdmap.InspectTap(raw); err != nil {
				raw.Close()
				return nil, fmt.Errorf("net %s: %w", s.id, err)
			}
			if f, err = fdmap.Pollable(raw); err != nil {
				return nil, fmt.Errorf("net %s: %w", s.id, err)
			}
		} else {
			if f, err = fdmap.OpenTap(s.tap, netnsPath); err != nil {
				return nil, fmt.Errorf("net %s: %w", s.id, err)
			}
		}
		nets = append(nets, vm.NetConfig{ID: s.id, MAC: s.mac, Tap: f, TapName: s.tap})
	}
	return nets, nil
}

// netInfo describes the nets for vm.info.
func netInfo(nets []vm.NetConfig) []api.NetConfig {
	var out []api.NetConfig
	for _, n := range nets {
		out = append(out, api.NetConfig{ID: n.ID, Tap: n.TapName, MAC: n.MAC.String(), NumQueues: 2})
	}
	return out
}

// netFDSet adopts every --net-fd ID=FD into a set for vm.Restore.
func netFDSet(values []string) (*fdmap.Set, error) {
	set := &fdmap.Set{}
	for _, s := range values {
		id, fd, err := fdmap.ParseNetFD(s)
		if err == nil {
			err = set.AddInherited(id, fd)
		}
		if err != nil {
			set.Close()
			return nil, err
		}
	}
	return set, nil
}
