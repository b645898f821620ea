package vm

import (
	"bytes"
	"errors"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/chsnap/chsnap/fdmap"
	"github.com/chsnap/chsnap/memdump"
)

// goldenState reads the golden archive's state and a scratch memory.
func goldenState(t *testing.T) (*savedState, *memdump.Memory) {
	t.Helper()
	f, err := os.Open(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a, err := readArchive(f, readOptions{memName: "chsnap-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.mem.Close() })
	return a.st, a.mem
}

// TestArchiveNets writes an archive with a net and reads it back: the
// config record, the host resource and the device section survive, and the
// configuration read in the first phase holds the nets to bind.
func TestArchiveNets(t *testing.T) {
	st, mem := goldenState(t)
	rec := netRecord{ID: "net0", MAC: "52:54:00:12:34:56", Tap: "tap0", Flags: fdmap.FlagTAP | fdmap.FlagNoPI | fdmap.FlagVnetHdr, FDs: 1}
	st.Config.Nets = []netRecord{rec}
	st.Nets = []netSaved{{Record: rec}}
	st.Nets[0].Net.MAC = rec.MAC
	st.Nets[0].Transport.DeviceStatus = 15
	st.Resources.Resources = append(st.Resources.Resources, hostResource{Device: "net0", Kind: "net", FDs: 1})
	var buf bytes.Buffer
	if err := writeArchive(&buf, st, mem, nil); err != nil {
		t.Fatal(err)
	}
	a, err := readArchive(bytes.NewReader(buf.Bytes()), readOptions{memName: "chsnap-test"})
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	a.mem.Close()
	back, gotCfg, gotNets := a.st, a.cfg, a.st.Config.Nets
	if len(gotNets) != 1 || gotNets[0] != rec {
		t.Errorf("config section nets = %+v, want %+v", gotNets, rec)
	}
	if len(gotCfg.Nets) != 1 || gotCfg.Nets[0].ID != "net0" || gotCfg.Nets[0].MAC.String() != rec.MAC || gotCfg.Nets[0].TapName != "tap0" {
		t.Errorf("config nets = %+v", gotCfg.Nets)
	}
	if len(back.Nets) != 1 || back.Nets[0].Net.MAC != rec.MAC || back.Nets[0].Transport.DeviceStatus != 15 {
		t.Errorf("net state = %+v", back.Nets)
	}

	// Two fds per net (multiqueue) is not something this chsnap can build.
	st.Config.Nets[0].FDs = 2
	buf.Reset()
	if err := writeArchive(&buf, st, mem, nil); err != nil {
		t.Fatal(err)
	}
	_, err = readArchive(bytes.NewReader(buf.Bytes()), readOptions{memName: "chsnap-test"})
	if !errors.Is(err, errNotRestorable) || !strings.Contains(err.Error(), "net0 needs 2 tap fds") {
		t.Errorf("2-fd net: %v", err)
	}
}

// TestValidateDevices: one id rule for disks and nets, ids unique among
// all devices (legacy ones too), and each kind's own checks.
func TestValidateDevices(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:00:00:01")
	ok := []NetConfig{{ID: "net0", MAC: mac}, {ID: "net1"}}
	if err := validateDevices([]DiskConfig{{ID: "disk0", Path: "d.img"}}, ok); err != nil {
		t.Errorf("valid nets: %v", err)
	}
	for _, tt := range []struct {
		nets  []NetConfig
		disks []DiskConfig
		want  string
	}{
		{[]NetConfig{{ID: "a"}, {ID: "a"}}, nil, "already the id"},
		{[]NetConfig{{ID: "disk0"}}, []DiskConfig{{ID: "disk0", Path: "d.img"}}, "already the id"},
		{nil, []DiskConfig{{ID: "d", Path: "a"}, {ID: "d", Path: "b"}}, `disk id "d" is already`},
		{nil, []DiskConfig{{ID: "i8042", Path: "a"}}, `disk id "i8042" is already`},
		{nil, []DiskConfig{{ID: "a.b", Path: "a"}}, `disk id "a.b": use 1 to 20`},
		{nil, []DiskConfig{{ID: "abcdefghijklmnopqrstu", Path: "a"}}, "disk id"},
		{nil, []DiskConfig{{ID: "d"}}, "no path"},
		{nil, []DiskConfig{{ID: "d", Path: "a", Format: "vmdk"}}, "not raw or qcow2"},
		{[]NetConfig{{ID: "com1"}}, nil, "already the id"},
		{[]NetConfig{{ID: "bad/id"}}, nil, "net id"},
		{[]NetConfig{{ID: "n", MAC: net.HardwareAddr{1, 0, 0, 0, 0, 1}}}, nil, "multicast"},
		{[]NetConfig{{ID: "n", MAC: net.HardwareAddr{0, 0, 0, 0, 0, 0}}}, nil, "all zeros"},
		{make([]NetConfig, maxVirtioDevices+1), nil, "virtio devices"},
	} {
		if err := validateDevices(tt.disks, tt.nets); err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrConfig) {
			t.Errorf("validateDevices(%+v, %+v): %v, want %q", tt.disks, tt.nets, err, tt.want)
		}
	}
	m, err := RandomMAC()
	if err != nil || checkMAC(m) != nil || m[0]&2 == 0 {
		t.Errorf("RandomMAC = %s, %v: want a valid locally administered address", m, err)
	}
}

// TestNetWants: nets given as fds always want one; nets opened by name want
// one only when one is offered, and are reopened otherwise.
func TestNetWants(t *testing.T) {
	recs := []netRecord{{ID: "a", FDs: 1}, {ID: "b", Tap: "tapb", FDs: 1}, {ID: "c", Tap: "tapc", FDs: 1}}
	set := &fdmap.Set{}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	set.AddReceived("c", []*os.File{w})
	defer set.Close()
	want, reopen := netWants(recs, set)
	if len(want) != 2 || want[0].ID != "a" || want[1].ID != "c" || len(reopen) != 1 || reopen[0] != 1 {
		t.Errorf("netWants = %+v, reopen %v", want, reopen)
	}
}

// TestBindNetsUnknownID refuses fds for a net the archive does not have,
// naming the id and the fd, and closes them.
func TestBindNetsUnknownID(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	set := &fdmap.Set{}
	set.AddReceived("nosuch", []*os.File{w})
	cfg := Config{Shape: Shape{Nets: []NetConfig{{ID: "net0", TapName: "tap0"}}}}
	err = bindNets(&cfg, []netRecord{{ID: "net0", Tap: "tap0", FDs: 1}}, set, "")
	if !errors.Is(err, fdmap.ErrBinding) || !strings.Contains(err.Error(), "nosuch (received fd ") || !strings.Contains(err.Error(), "its nets: net0") {
		t.Errorf("bindNets: %v", err)
	}
	if n, err := r.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("the refused fd is still open: read %d, %v", n, err)
	}
	if cfg.Nets[0].Tap != nil {
		t.Errorf("a tap was opened for a refused restore")
	}
}
