package vm

import (
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"

	"github.com/chsnap/chsnap/devstate"
	"github.com/chsnap/chsnap/fdmap"
)

// NetConfig is one virtio-net device on a tap.
type NetConfig struct {
	// ID names the device in the archive, in errors and in --net-fd ID=FD:
	// 1 to fdmap.MaxIDLen of [A-Za-z0-9_-], unique among nets and disks.
	ID string
	// MAC is the guest's Ethernet address: unicast, not all zeros. Nil
	// means a random locally administered one (RandomMAC).
	MAC net.HardwareAddr
	// Tap is the tap or macvtap descriptor. The VM owns it from the call to
	// New (or Restore) on, failed calls included, and closes it once.
	Tap *os.File
	// TapName is set when chsnap opened the tap by name (--net tap=NAME):
	// a restore given no fd for the device reopens it by that name.
	TapName string
}

// RandomMAC returns a random unicast, locally administered MAC address.
func RandomMAC() (net.HardwareAddr, error) {
	mac := make(net.HardwareAddr, 6)
	if _, err := rand.Read(mac); err != nil {
		return nil, fmt.Errorf("random MAC: %w", err)
	}
	mac[0] = mac[0]&^0x01 | 0x02
	return mac, nil
}

// validate checks a net's MAC.
func (n *NetConfig) validate() error {
	if n.MAC != nil {
		if err := checkMAC(n.MAC); err != nil {
			return fmt.Errorf("%w: net %s: %w", ErrConfig, n.ID, err)
		}
	}
	return nil
}

// checkMAC refuses an address a guest NIC cannot have.
func checkMAC(mac net.HardwareAddr) error {
	switch {
	case len(mac) != 6:
		return fmt.Errorf("mac %s is not a 6-byte Ethernet address", mac)
	case mac[0]&1 != 0:
		return fmt.Errorf("mac %s is a multicast address", mac)
	case slices.Equal(mac, make(net.HardwareAddr, 6)):
		return fmt.Errorf("mac %s is all zeros", mac)
	}
	return nil
}

// closeNetTaps closes the taps of nets: the VM's way of keeping its
// ownership promise when it fails before its devices own them.
func closeNetTaps(nets []NetConfig) {
	for i := range nets {
		if nets[i].Tap != nil {
			nets[i].Tap.Close()
			nets[i].Tap = nil
		}
	}
}

// virtioNet is one virtio-net device and its transport.
type virtioNet struct {
	cfg       NetConfig
	flags     uint32 // IFF_* flags of the tap, as TUNGETIFF gave them
	net       *devstate.VirtioNet
	transport *devstate.VirtioMMIO
}

// netRecord is a net as the config section records it (format 1.2).
type netRecord struct {
	ID  string `json:"id"`
	MAC string `json:"mac"`
	// Tap is the interface name when chsnap opened the tap by name, so a
	// restore can reopen it; empty for a tap given as an fd.
	Tap string `json:"tap,omitempty"`
	// Flags are the IFF_* flags TUNGETIFF reported; a restore needs a tap
	// with the same IFF_VNET_HDR.
	Flags uint32 `json:"flags"`
	// FDs is the number of tap descriptors (queue pairs) the device needs.
	FDs int `json:"fds"`
}

// netSaved is one net's saved state.
type netSaved struct {
	Record netRecord
	netDeviceState
}

// netDeviceState is the state field of a net's KindDevice section.
type netDeviceState struct {
	Transport devstate.VirtioMMIOState `json:"transport"`
	Net       devstate.VirtioNetState  `json:"net"`
}

// addNets puts a virtio-net device on a virtio-mmio transport for every
// configured net, after the disks' slots, fresh or from saved state (saved
// nil). The taps stay the VM's (closed by VM.release), not the devices'.
func (d *devices) addNets(v *VM, saved []netSaved) error {
	for i := range v.cfg.Nets {
		cfg := &v.cfg.Nets[i]
		if cfg.Tap == nil {
			return fmt.Errorf("net %s: no tap", cfg.ID)
		}
		info, err := fdmap.InspectTap(cfg.Tap)
		if err != nil {
			return fmt.Errorf("net %s: %w", cfg.ID, err)
		}
		vn := &virtioNet{cfg: *cfg, flags: info.Flags}
		tap := cfg.Tap
		deps := devstate.VirtioNetDeps{
			Tap:     tap,
			VnetHdr: info.Flags&fdmap.FlagVnetHdr != 0,
			ID:      cfg.ID,
		}
		if deps.VnetHdr {
			deps.Configure = func(hdrLen int, offloads uint32) error { return fdmap.ConfigureTap(tap, hdrLen, offloads) }
		}
		base, gsi := virtioSlot(len(v.cfg.Disks) + i)
		tdeps := devstate.VirtioMMIODeps{Base: base, Mem: v.mem, IRQ: irqLine{v.kvm, gsi}}
		dev := &device{id: cfg.ID, save: vn.save, kick: vn.kick, close: vn.close}
		var transportSt *devstate.VirtioMMIOState
		if saved == nil {
			mac := cfg.MAC
			if mac == nil {
				if mac, err = RandomMAC(); err != nil {
					return fmt.Errorf("net %s: %w", cfg.ID, err)
				}
				cfg.MAC = mac
				vn.cfg.MAC = mac
			}
			if vn.net, err = devstate.NewVirtioNet(deps, mac); err != nil {
				return fmt.Errorf("net %s: %w", cfg.ID, err)
			}
		} else {
			s := &saved[i]
			if s.Net.MAC != s.Record.MAC {
				return fmt.Errorf("net %s: the device state has MAC %s, the config %s", cfg.ID, s.Net.MAC, s.Record.MAC)
			}
			if vn.net, err = devstate.RestoreVirtioNet(s.Net, deps); err != nil {
				return fmt.Errorf("restore net %s: %w", cfg.ID, err)
			}
			transportSt = &s.Transport
		}
		d.nets = append(d.nets, vn)
		d.table = append(d.table, dev) // from here close stops it
		tdeps.Device = vn.net
		if vn.transport, err = virtioTransport(transportSt, tdeps); err != nil {
			if saved != nil {
				return fmt.Errorf("restore net %s: %w", cfg.ID, err)
			}
			return fmt.Errorf("net %s: %w", cfg.ID, err)
		}
		dev.transport = vn.transport
		d.mmio.add(base, devstate.VirtioMMIOSize, vn.transport)
		if err := d.bells.add(v.kvm, vn.transport); err != nil {
			// The kicks still arrive as MMIO exits, only slower.
			v.logf("net %s: no ioeventfd doorbells, queue kicks exit to chsnap instead: %v", cfg.ID, err)
		}
	}
	return nil
}

// save records the net in st.
func (vn *virtioNet) save(st *savedState) error {
	rec := vn.record()
	st.Config.Nets = append(st.Config.Nets, rec)
	st.Nets = append(st.Nets, netSaved{Record: rec, netDeviceState: netDeviceState{Transport: vn.transport.State(), Net: vn.net.State()}})
	st.Resources.Resources = append(st.Resources.Resources, hostResource{Device: rec.ID, Kind: "net", FDs: rec.FDs})
	return nil
}

// kick asks the guest's driver, after a restore, to announce itself
// (VIRTIO_NET_F_GUEST_ANNOUNCE) so that switches learn where its MAC went.
// The queues need no kick: Start, called just before, serves what they
// hold.
func (vn *virtioNet) kick() error {
	if _, err := vn.net.Announce(); err != nil {
		return fmt.Errorf("announce: %w", err)
	}
	return nil
}

// close stops the device; the tap is the VM's, closed after this.
func (vn *virtioNet) close() error {
	vn.net.Close()
	return nil
}

// record is what the archive keeps about the net.
func (vn *virtioNet) record() netRecord {
	return netRecord{ID: vn.cfg.ID, MAC: vn.cfg.MAC.String(), Tap: vn.cfg.TapName, Flags: vn.flags, FDs: 1}
}

// netWants lists the nets of an archive that need descriptors from the
// caller: every net the set offers fds for, and every net that chsnap
// cannot reopen itself (one given as an fd). The others are reopened by
// tap name in netnsPath.
func netWants(recs []netRecord, set *fdmap.Set) (want []fdmap.Want, reopen []int) {
	for i, r := range recs {
		if r.Tap != "" && !set.Offered(r.ID) {
			reopen = append(reopen, i)
			continue
		}
		want = append(want, fdmap.Want{ID: r.ID, NumFDs: r.FDs, Flags: r.Flags})
	}
	return want, reopen
}

// bindNets supplies the taps of an archive's nets to cfg.Nets (built from
// recs, in the same order): the descriptors offered in set, bound by
// fdmap.Set.Bind with all its checks, and taps reopened by name. On error
// no tap is left open and the set is empty.
func bindNets(cfg *Config, recs []netRecord, set *fdmap.Set, netnsPath string) (err error) {
	defer func() {
		if err != nil {
			closeNetTaps(cfg.Nets)
		}
	}()
	var unknown []string
	for _, id := range set.IDs() {
		if !slices.ContainsFunc(recs, func(r netRecord) bool { return r.ID == id }) {
			unknown = append(unknown, fmt.Sprintf("%s (%s)", id, set.Describe(id)))
		}
	}
	if len(unknown) > 0 {
		set.Close()
		have := "none"
		if len(recs) > 0 {
			ids := make([]string, len(recs))
			for i, r := range recs {
				ids[i] = r.ID
			}
			have = strings.Join(ids, ", ")
		}
		return fmt.Errorf("%w: %s given, but the archive has no such net (its nets: %s)", fdmap.ErrBinding, strings.Join(unknown, ", "), have)
	}
	want, reopen := netWants(recs, set)
	bound, err := set.Bind(want)
	if err != nil {
		return err
	}
	for id, files := range bound {
		i := slices.IndexFunc(recs, func(r netRecord) bool { return r.ID == id })
		if i < 0 || len(files) != 1 {
			for _, f := range files {
				f.Close()
			}
			return fmt.Errorf("net %s: bound %d fds to an unknown device", id, len(files))
		}
		if cfg.Nets[i].Tap, err = fdmap.Pollable(files[0]); err != nil {
			return fmt.Errorf("net %s: %w", id, err)
		}
	}
	for _, i := range reopen {
		r := recs[i]
		f, err := fdmap.OpenTap(r.Tap, netnsPath)
		if err != nil {
			return fmt.Errorf("net %s: reopen %w (or pass its fd with --net-fd %s=FD)", r.ID, err, r.ID)
		}
		cfg.Nets[i].Tap = f
		if _, err := fdmap.CheckTap(f, r.Flags); err != nil {
			return fmt.Errorf("net %s: %w", r.ID, err)
		}
	}
	return nil
}
