package fdmap

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

const (
	tapFlags = unix.IFF_TAP | unix.IFF_NO_PI
	vnet     = unix.IFF_VNET_HDR
)

func TestCheckTap(t *testing.T) {
	ns := newNetns(t)
	warmUp(t)
	before := countFDs(t)

	type tc struct {
		name      string
		open      func(t *testing.T) int
		want      uint32
		wantErr   error
		wantMsg   string // with %d for the fd number
		wantName  string
		wantFlags uint32
		wantKind  TapKind
		// filter attaches a two-instruction socket filter before the
		// check, which must still be there after it.
		filter bool
	}
	cases := []tc{
		{name: "tap-vnet", open: func(t *testing.T) int { return ns.tun(t, "tapv0", tapFlags|vnet) },
			want: FlagTAP | FlagNoPI | FlagVnetHdr, wantName: "tapv0", wantFlags: FlagTAP | FlagNoPI | FlagVnetHdr, wantKind: KindTap},
		{name: "tap-plain", open: func(t *testing.T) int { return ns.tun(t, "tapp0", tapFlags) },
			want: FlagTAP | FlagNoPI, wantName: "tapp0", wantFlags: FlagTAP | FlagNoPI, wantKind: KindTap},
		{name: "tap-vnet-not-recorded", open: func(t *testing.T) int { return ns.tun(t, "tapv1", tapFlags|vnet) },
			want: FlagTAP | FlagNoPI, wantErr: ErrNotTap, wantMsg: "fd %d is tap tapv1 with IFF_VNET_HDR, which the snapshot did not record"},
		{name: "tap-vnet-missing", open: func(t *testing.T) int { return ns.tun(t, "tapp1", tapFlags) },
			want: FlagTAP | FlagNoPI | FlagVnetHdr, wantErr: ErrNotTap, wantMsg: "fd %d is tap tapp1 without IFF_VNET_HDR, which the snapshot recorded"},
		{name: "tap-with-pi", open: func(t *testing.T) int { return ns.tun(t, "tappi", unix.IFF_TAP) },
			want: FlagTAP | FlagNoPI, wantErr: ErrNotTap, wantMsg: "fd %d is tap tappi without IFF_NO_PI"},
		{name: "tun", open: func(t *testing.T) int { return ns.tun(t, "tun0", unix.IFF_TUN|unix.IFF_NO_PI) },
			want: FlagTAP | FlagNoPI, wantErr: ErrNotTap, wantMsg: "fd %d is tun device tun0 (IFF_TUN"},
		{name: "tap-filtered", open: func(t *testing.T) int { return ns.tun(t, "tapf0", tapFlags|vnet) }, filter: true,
			want: FlagTAP | FlagNoPI | FlagVnetHdr, wantName: "tapf0", wantFlags: FlagTAP | FlagNoPI | FlagVnetHdr, wantKind: KindTap},
		{name: "tap-with-pi-filtered", open: func(t *testing.T) int { return ns.tun(t, "tapf1", unix.IFF_TAP) }, filter: true,
			want: FlagTAP | FlagNoPI, wantErr: ErrNotTap, wantMsg: "fd %d is tap tapf1 without IFF_NO_PI"},
		{name: "tun-unattached", open: func(t *testing.T) int { return ns.tun(t, "", 0) },
			want: FlagTAP | FlagNoPI, wantErr: ErrNotTap, wantMsg: "fd %d is /dev/net/tun not attached to an interface"},
		{name: "regular-file", open: rawFile,
			want: FlagTAP | FlagNoPI, wantErr: ErrNotTap, wantMsg: "fd %d is a regular file, not a tap device"},
		{name: "pipe", open: func(t *testing.T) int { r, w := rawPipe(t); unix.Close(w); return r },
			want: FlagTAP | FlagNoPI, wantErr: ErrNotTap, wantMsg: "fd %d is a pipe, not a tap device"},
		{name: "dev-null", open: func(t *testing.T) int {
			fd, err := unix.Open(os.DevNull, unix.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			return fd
		}, want: FlagTAP | FlagNoPI, wantErr: ErrNotTap, wantMsg: "fd %d is character device 1:3, not a tap device (TUNGETIFF: inappropriate ioctl"},
		{name: "macvtap", open: func(t *testing.T) int { return ns.macvtap(t, "mvt0") },
			// The kernel opens /dev/tapN with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR.
			want: FlagTAP | FlagNoPI | FlagVnetHdr, wantName: "mvt0", wantFlags: FlagTAP | FlagNoPI | FlagVnetHdr, wantKind: KindMacvtap},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fd := c.open(t)
			f := os.NewFile(uintptr(fd), c.name)
			defer f.Close()
			if c.filter {
				if err := tunAttachFilter(fd, twoInsns); err != nil {
					t.Fatalf("attach filter: %v", err)
				}
			}
			info, err := CheckTap(f, c.want)
			checkFilterKept(t, fd, c.filter)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("CheckTap(%s) error = %v, want %v", c.name, err, c.wantErr)
				}
				if msg := fmt.Sprintf(c.wantMsg, fd); !strings.Contains(err.Error(), msg) {
					t.Errorf("CheckTap(%s) error = %q, want it to contain %q", c.name, err, msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("CheckTap(%s): %v", c.name, err)
			}
			if info.Name != c.wantName || info.Flags&^unix.IFF_PERSIST != c.wantFlags || info.Kind != c.wantKind {
				t.Errorf("CheckTap(%s) = %+v (%s), want name %s flags %s kind %s",
					c.name, info, FlagString(info.Flags), c.wantName, FlagString(c.wantFlags), c.wantKind)
			}
			// CheckTap borrows: the fd is still open and still a tap.
			if !isOpen(fd) {
				t.Errorf("fd %d closed by CheckTap", fd)
			}
		})
	}
	checkNoLeak(t, before)
}

// twoInsns is a filter a user might attach: accept everything, in two steps.
var twoInsns = []unix.SockFilter{
	{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_LEN},
	{Code: unix.BPF_RET | unix.BPF_A},
}

// checkFilterKept checks that CheckTap left a tap's socket filter as it was:
// the user's two-instruction program still attached, or none at all (no
// probe program left behind, remembered or attached).
func checkFilterKept(t *testing.T, fd int, filtered bool) {
	t.Helper()
	n, err := tunFilterLen(fd)
	if err != nil {
		return // not a /dev/net/tun tap
	}
	ifr, err := unix.NewIfreq("")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err != nil {
		return
	}
	switch {
	case filtered && n != len(twoInsns):
		t.Errorf("after CheckTap the filter length is %d, want the user's %d", n, len(twoInsns))
	case filtered && ifr.Uint16()&unix.IFF_NOFILTER != 0 && ifr.Uint16()&unix.IFF_NO_PI == 0:
		t.Errorf("after CheckTap the user's filter is detached")
	case !filtered && (n != 0 || ifr.Uint16()&unix.IFF_NOFILTER == 0):
		t.Errorf("after CheckTap a probe filter is left: TUNGETFILTER length %d, TUNGETIFF flags %#x", n, ifr.Uint16())
	}
}

func TestCheckTapClosedFile(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := CheckTap(f, FlagTAP|FlagNoPI); !errors.Is(err, ErrBadFD) {
		t.Errorf("CheckTap(closed file) error = %v, want ErrBadFD", err)
	}
}

func TestFlagString(t *testing.T) {
	for _, c := range []struct {
		in   uint32
		want string
	}{
		{0, "no flags"},
		{FlagTAP | FlagNoPI | FlagVnetHdr, "IFF_TAP|IFF_NO_PI|IFF_VNET_HDR"},
		{FlagTUN | 0x10000, "IFF_TUN|0x10000"},
	} {
		if got := FlagString(c.in); got != c.want {
			t.Errorf("FlagString(%#x) = %q, want %q", c.in, got, c.want)
		}
	}
}
