//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/chsnap/chsnap/vm/api"
)

// The guests' MACs (locally administered), so tests know what to look for.
const (
	mac0 = "52:54:00:12:34:56"
	mac1 = "52:54:00:12:34:57"
)

// bootNet boots the test guest with 128 MiB, its API socket at sock, the
// given --net values (files are fds 3, 4, ...) and chsnap.ip=10.0.0.2/24,
// and waits for its ready line.
func bootNet(t *testing.T, sock string, files []*os.File, nets ...string) *vmProc {
	t.Helper()
	args := []string{"run", "--kernel", guestImage(t), "--cpus", "1", "--memory", "128M",
		"--api-socket", sock, "--cmdline", guestCmdline + " chsnap.ip=" + guestCIDR}
	for _, n := range nets {
		args = append(args, "--net", n)
	}
	p := startChsnapFiles(t, files, args...)
	if _, err := p.con.Expect(`^chsnap-guest ready`, 90*time.Second); err != nil {
		t.Fatalf("%v\nconsole:\n%s\nstderr:\n%s", err, p.con.Transcript(), p.stderr)
	}
	return p
}

// checkReach pings dst in guest p (first until ARP resolves, then sizes up
// to a full 1500-byte IP packet) and does UDP echoes of a few sizes, all
// from namespace n. It returns how many packets the guest should have
// answered.
func checkReach(t *testing.T, p *vmProc, n *testNS, dst, what string) int {
	t.Helper()
	pg := n.pinger(t)
	if err := pg.pingUntil(dst, 30*time.Second); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, netDiag(p, n))
	}
	count := 1
	for _, size := range []int{0, 1, 56, 512, 1000, 1400, 1472} {
		if err := pg.ping(dst, size, 5*time.Second); err != nil {
			t.Errorf("%s: %v", what, err)
		}
		count++
	}
	for _, size := range []int{1, 64, 1024, 1400, 1472} {
		payload := bytes.Repeat([]byte{byte(size)}, size)
		copy(payload, fmt.Sprintf("%s-%d", what, size))
		if err := n.udpEchoRetry(dst, payload); err != nil {
			t.Errorf("%s: %v", what, err)
		}
		count++
	}
	return count
}

// TestNetPingUDP boots a guest on a tap passed as fd 3 and checks ping (up
// to a full 1500-byte frame) and UDP echo from the tap's namespace, and
// that the guest's `net` shows the link and counts the traffic. A second
// case gives the guest two nets on taps in two namespaces.
func TestNetPingUDP(t *testing.T) {
	needNet(t)
	t.Run("one", func(t *testing.T) {
		dir := shortDir(t)
		ns, tap := hostTap(t, "chs-a0", tapFlags)
		p := bootNet(t, filepath.Join(dir, "a.sock"), []*os.File{tap}, "id=net0,fd=3,mac="+mac0)
		before := guestNetState(t, p)
		if before.fields["devs"] != "1" {
			t.Errorf("net: devs=%s, want 1 (%v)", before.fields["devs"], before)
		}
		name, d := before.devByMAC(t, mac0)
		if d["ip"] != guestCIDR || d["link"] != "up" {
			t.Errorf("net: %s is %v, want ip %s and link up", name, d, guestCIDR)
		}
		sent := checkReach(t, p, ns, guestIP, "boot")
		_, after := guestNetState(t, p).devByMAC(t, mac0)
		rx, tx := after.count(t, "rx")-d.count(t, "rx"), after.count(t, "tx")-d.count(t, "tx")
		if rx < uint64(sent) || tx < uint64(sent) {
			t.Errorf("net counters rose by rx %d, tx %d over %d answered packets (before %v, after %v)", rx, tx, sent, d, after)
		}
		if after["announce"] != "0" {
			t.Errorf("announce:%s on a fresh boot, want 0", after["announce"])
		}
		// The driver took the MAC from the device and agreed to be told to
		// announce itself after a restore.
		feat, err := strconv.ParseUint(strings.TrimPrefix(after["features"], "0x"), 16, 64)
		if err != nil {
			t.Errorf("net: features %q: %v", after["features"], err)
		}
		const featMAC, featAnnounce = 1 << 5, 1 << 21 // VIRTIO_NET_F_MAC, VIRTIO_NET_F_GUEST_ANNOUNCE
		if feat&featMAC == 0 || feat&featAnnounce == 0 {
			t.Errorf("net: features %#x lack VIRTIO_NET_F_MAC or VIRTIO_NET_F_GUEST_ANNOUNCE", feat)
		}
		p.send(t, "poweroff")
		if st := p.wait(t, 30*time.Second); st != 0 {
			t.Errorf("exit status %d after poweroff; stderr:\n%s", st, p.stderr)
		}
	})
	t.Run("two", func(t *testing.T) {
		dir := shortDir(t)
		ns0, tap0 := hostTap(t, "chs-b0", tapFlags)
		ns1 := newNS(t)
		tap1 := ns1.tap(t, "chs-b1", tapFlags)
		ns1.up(t, "chs-b1", "10.0.1.1/24")
		p := bootNet(t, filepath.Join(dir, "a.sock"), []*os.File{tap0, tap1},
			"id=net0,fd=3,mac="+mac0, "id=net1,fd=4,mac="+mac1)
		st := guestNetState(t, p)
		if st.fields["devs"] != "2" {
			t.Fatalf("net: devs=%s, want 2 (%v)", st.fields["devs"], st)
		}
		// The guest numbers its devices: `net` lists them as netN, `ip`
		// takes N.
		name1, _ := st.devByMAC(t, mac1)
		idx := strings.TrimPrefix(name1, "net")
		p.command(t, "ip "+idx+" 10.0.1.2/24", "ip ok "+idx+" 10.0.1.2/24")
		checkReach(t, p, ns0, guestIP, "net0")
		checkReach(t, p, ns1, "10.0.1.2", "net1")
		// The nets are separate: net1's namespace cannot reach net0's address.
		if err := ns1.pinger(t).ping(guestIP, 56, 2*time.Second); err == nil {
			t.Errorf("10.0.0.2 answered from net1's namespace, which has no route to it")
		}
		st = guestNetState(t, p)
		_, d0 := st.devByMAC(t, mac0)
		_, d1 := st.devByMAC(t, mac1)
		if d0["ip"] != guestCIDR || d1["ip"] != "10.0.1.2/24" || d0["link"] != "up" || d1["link"] != "up" {
			t.Errorf("net: %v", st.devs)
		}
		p.send(t, "poweroff")
		if st := p.wait(t, 30*time.Second); st != 0 {
			t.Errorf("exit status %d after poweroff; stderr:\n%s", st, p.stderr)
		}
	})
}

// saveNetGuest boots a guest on a fresh tap, checks it answers, saves it
// to dir/vm.snap and kills it. The tap stays open on the test's side.
func saveNetGuest(t *testing.T, dir string) string {
	t.Helper()
	ns, tap := hostTap(t, "chs-s0", tapFlags)
	sock := filepath.Join(dir, "a.sock")
	p := bootNet(t, sock, []*os.File{tap}, "id=net0,fd=3,mac="+mac0)
	if err := ns.pinger(t).pingUntil(guestIP, 30*time.Second); err != nil {
		t.Fatalf("before the save: %v\n%s", err, netDiag(p, ns))
	}
	snap := filepath.Join(dir, "vm.snap")
	chsnapOK(t, "save", "--api-socket", sock, snap)
	p.cmd.Process.Kill()
	p.wait(t, 10*time.Second)
	return snap
}

// checkRestored checks a guest restored onto the tap in namespace ns: its
// gratuitous ARP came (cap was opened before the restore), ping and UDP
// echo work, and `net` shows announce:1. Its MAC is mac0.
func checkRestored(t *testing.T, r *vmProc, ns *testNS, cap *arpCapture) {
	t.Helper()
	checkRestoredMAC(t, r, ns, cap, mac0)
}

// checkRestoredMAC is checkRestored for a guest whose MAC is macStr.
func checkRestoredMAC(t *testing.T, r *vmProc, ns *testNS, cap *arpCapture, macStr string) {
	t.Helper()
	mac, err := net.ParseMAC(macStr)
	if err != nil {
		t.Fatal(err)
	}
	if seen, err := cap.waitGratuitous(mac, guestIP, 30*time.Second); err != nil {
		t.Errorf("after the restore: %v", err)
	} else {
		t.Logf("gratuitous ARP seen after %d ARP frame(s): %v", len(seen), seen[len(seen)-1])
	}
	checkReach(t, r, ns, guestIP, "restored")
	_, d := guestNetState(t, r).devByMAC(t, macStr)
	if d["announce"] != "1" || d["link"] != "up" || d["ip"] != guestCIDR {
		t.Errorf("net after the restore: %v, want announce:1, link:up, ip:%s", d, guestCIDR)
	}
	r.send(t, "poweroff")
	if st := r.wait(t, 30*time.Second); st != 0 {
		t.Errorf("exit status %d after poweroff; stderr:\n%s", st, r.stderr)
	}
}

// TestNetRestoreOtherTap saves a guest running on one tap and restores it
// in a new process onto a different tap, in another namespace, passed with
// --net-fd net0=3.
func TestNetRestoreOtherTap(t *testing.T) {
	needNet(t)
	dir := shortDir(t)
	snap := saveNetGuest(t, dir)
	ns, tap := hostTap(t, "chs-r1", tapFlags)
	cap := ns.captureARP(t, "chs-r1")
	r := startChsnapFiles(t, []*os.File{tap}, "restore", snap, "--net-fd", "net0=3", "--api-socket", filepath.Join(dir, "b.sock"))
	checkRestored(t, r, ns, cap)
}

// TestNetRestoreThroughAPI restores the same way through an empty VMM's
// vm.restore, the tap sent with SCM_RIGHTS by api.Client.Restore.
func TestNetRestoreThroughAPI(t *testing.T) {
	needNet(t)
	dir := shortDir(t)
	snap := saveNetGuest(t, dir)
	ns, tap := hostTap(t, "chs-r2", tapFlags)
	cap := ns.captureARP(t, "chs-r2")
	vmm := filepath.Join(dir, "vmm.sock")
	r := startChsnap(t, "restore", "--api-socket", vmm)
	waitSocket(t, vmm, r)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := api.RestoreConfig{SourceURL: "file://" + snap, NetFDs: []api.RestoredNetConfig{{ID: "net0", NumFDs: 1}}, Resume: true}
	if err := api.NewClient(vmm).Restore(ctx, cfg, []*os.File{tap}); err != nil {
		t.Fatalf("vm.restore with the tap: %v\nstderr:\n%s", err, r.stderr)
	}
	checkRestored(t, r, ns, cap)
}

// restoreWithFDs sends PUT /api/v1/vm.restore with body to the API socket
// sock, files attached with SCM_RIGHTS to the request's bytes, and returns
// the status and body of the answer.
func restoreWithFDs(t *testing.T, sock, body string, files []*os.File) (int, string) {
	t.Helper()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatalf("vm.restore: connect %s: %v", sock, err)
	}
	defer c.Close()
	req := fmt.Sprintf("PUT /api/v1/vm.restore HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"+
		"Accept: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := c.WriteMsgUnix([]byte(req), oob, nil); err != nil {
		t.Fatalf("vm.restore: send the request with %d fds: %v", len(files), err)
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Minute))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("vm.restore: read the answer: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// runRefused runs `chsnap args...` with files as fds 3, 4, ... and a line
// on its standard input that a running guest would answer; it returns the
// exit status, standard output and standard error. chsnap must exit by
// itself within 60 s.
func runRefused(t *testing.T, files []*os.File, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(chsnapBin, args...)
	cmd.ExtraFiles = files
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Stdin = strings.NewReader("echo a-guest-ran\n")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("chsnap %v did not exit in 60s (a guest runs?); stdout:\n%s\nstderr:\n%s", args, stdout.String(), stderr.String())
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// TestNetRestoreRefusals restores one archive (a guest saved on an
// IFF_VNET_HDR tap) with each wrong binding of its net0: each is refused
// with its own one-line message naming the device and the fd, and no guest
// runs. Then an empty VMM refuses wrong vm.restore bindings and still takes
// a right one.
func TestNetRestoreRefusals(t *testing.T) {
	needNet(t)
	dir := shortDir(t)
	snap := saveNetGuest(t, dir)
	nsB, tapB := hostTap(t, "chs-fb", tapFlags)
	nsC := newNS(t)
	tapC := nsC.tap(t, "chs-fc", tapFlags)
	nsN := newNS(t)
	tapNoHdr := nsN.tap(t, "chs-fn", unix.IFF_TAP|unix.IFF_NO_PI)
	regular, err := os.Create(filepath.Join(dir, "regular"))
	if err != nil {
		t.Fatal(err)
	}
	defer regular.Close()

	type refusal struct {
		name  string
		files []*os.File
		flags []string
		want  []string
	}
	cases := []refusal{
		{"no fd", nil, nil, []string{"net0"}},
		{"regular file", []*os.File{regular}, []string{"--net-fd", "net0=3"}, []string{"net0", "fd 3", "regular file"}},
		{"closed fd", nil, []string{"--net-fd", "net0=97"}, []string{"net0", "fd 97", "not open"}},
		{"unknown id", []*os.File{tapB}, []string{"--net-fd", "nosuch=3"}, []string{"nosuch", "fd 3"}},
		{"unknown id beside net0", []*os.File{tapB, tapC}, []string{"--net-fd", "net0=3", "--net-fd", "nosuch=4"}, []string{"nosuch", "fd 4"}},
		{"two fds for net0", []*os.File{tapB, tapC}, []string{"--net-fd", "net0=3", "--net-fd", "net0=4"}, []string{"net0", "fd 3", "fd 4"}},
		{"no vnet header", []*os.File{tapNoHdr}, []string{"--net-fd", "net0=3"}, []string{"net0", "fd 3", "IFF_VNET_HDR"}},
	}
	msgs := map[string]string{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rsock := filepath.Join(dir, "bad.sock")
			args := append([]string{"restore", snap, "--api-socket", rsock}, tc.flags...)
			status, stdout, stderr := runRefused(t, tc.files, args...)
			if status == 0 {
				t.Errorf("exit status 0, want a failure; stderr:\n%s", stderr)
			}
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "chsnap: ") {
				t.Errorf("stderr is not one \"chsnap: \" line:\n%s", stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q does not mention %q", strings.TrimSpace(stderr), w)
				}
			}
			if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine") {
				t.Errorf("chsnap panicked:\n%s", stderr)
			}
			if strings.Contains(stdout, "a-guest-ran") || strings.Contains(stdout, "chsnap-guest") {
				t.Errorf("a guest ran; stdout:\n%s", stdout)
			}
			if _, err := os.Stat(rsock); err == nil {
				t.Errorf("an API socket appeared: a VMM was started")
				os.Remove(rsock)
			}
			if tc.name != "unknown id beside net0" { // the same refusal as "unknown id"
				for other, m := range msgs {
					if m == stderr {
						t.Errorf("same message as case %q: %s", other, stderr)
					}
				}
				msgs[tc.name] = stderr
			}
			t.Logf("refused: %s", strings.TrimSpace(stderr))
		})
	}

	// The same archive through vm.restore on one empty VMM.
	vmm := filepath.Join(dir, "vmm.sock")
	r := startChsnap(t, "restore", "--api-socket", vmm)
	waitSocket(t, vmm, r)
	src := `"source_url":"file://` + snap + `"`
	for _, tc := range []struct {
		name  string
		body  string
		files []*os.File
		want  []string
	}{
		{"unknown id", `{` + src + `,"net_fds":[{"id":"net0","num_fds":1},{"id":"nosuch","num_fds":1}],"resume":true}`,
			[]*os.File{tapB, tapC}, []string{"nosuch"}},
		{"two fds for net0", `{` + src + `,"net_fds":[{"id":"net0","num_fds":2}],"resume":true}`,
			[]*os.File{tapB, tapC}, []string{"net0"}},
		{"no fd", `{` + src + `,"resume":true}`, nil, []string{"net0"}},
		{"fewer fds than num_fds", `{` + src + `,"net_fds":[{"id":"net0","num_fds":1}],"resume":true}`, nil, []string{"fds"}},
		{"no vnet header", `{` + src + `,"net_fds":[{"id":"net0","num_fds":1}],"resume":true}`,
			[]*os.File{tapNoHdr}, []string{"net0", "IFF_VNET_HDR"}},
	} {
		st, msg := restoreWithFDs(t, vmm, tc.body, tc.files)
		if st < 400 || st > 499 {
			t.Errorf("vm.restore %s: status %d %s, want 4xx", tc.name, st, msg)
		}
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("vm.restore %s: message %q does not mention %q", tc.name, msg, w)
			}
		}
		t.Logf("vm.restore %s refused: %d %s", tc.name, st, msg)
		if out, err := exec.Command(chsnapBin, "info", "--api-socket", vmm).CombinedOutput(); err == nil || !strings.Contains(string(out), "no VM yet") {
			t.Errorf("after the refused vm.restore %s the VMM is not empty: %v: %s", tc.name, err, out)
		}
	}
	cap := nsB.captureARP(t, "chs-fb")
	if st, msg := restoreWithFDs(t, vmm, `{`+src+`,"net_fds":[{"id":"net0","num_fds":1}],"resume":true}`, []*os.File{tapB}); st != http.StatusNoContent && st != http.StatusOK {
		t.Fatalf("vm.restore after the refusals: %d %s\nstderr:\n%s", st, msg, r.stderr)
	}
	checkRestored(t, r, nsB, cap)
}

// TestNetFDLeaks: 50 saves of a running guest with a net leave chsnap's
// open fd count as it was, and the guest keeps answering; refused
// vm.restore requests carrying taps leave an empty VMM's count as it was,
// and a good one then works.
func TestNetFDLeaks(t *testing.T) {
	needNet(t)
	t.Run("saves", func(t *testing.T) {
		dir := shortDir(t)
		ns, tap := hostTap(t, "chs-l0", tapFlags)
		sock := filepath.Join(dir, "a.sock")
		p := bootNet(t, sock, []*os.File{tap}, "id=net0,fd=3,mac="+mac0)
		pg := ns.pinger(t)
		if err := pg.pingUntil(guestIP, 30*time.Second); err != nil {
			t.Fatalf("%v\n%s", err, netDiag(p, ns))
		}
		snap := filepath.Join(dir, "vm.snap")
		pid := p.cmd.Process.Pid
		chsnapOK(t, "save", "--api-socket", sock, snap) // lazily opened fds open now
		base := stableFDs(t, pid)
		list := listProcFDs(pid)
		start := time.Now()
		// UDP echoes all along: frames in flight while a save pauses the
		// guest may be delayed or lost, never altered.
		stream := ns.startEchoStream(t, guestIP, 20*time.Millisecond, 5000)
		for i := 1; i <= 50; i++ {
			chsnapOK(t, "save", "--api-socket", sock, snap)
			if i%10 == 0 {
				if err := pg.ping(guestIP, 1000, 10*time.Second); err != nil {
					t.Fatalf("after save %d: %v", i, err)
				}
				if n := settleFDs(t, pid, base); n != base {
					t.Fatalf("after save %d chsnap has %d fds, %d before\nbefore:\n%s\nnow:\n%s", i, n, base, list, listProcFDs(pid))
				}
			}
		}
		t.Logf("50 saves in %v; chsnap holds %d fds throughout", time.Since(start).Round(time.Millisecond), base)
		sent, got, wrong, first := stream.stopEcho()
		t.Logf("UDP echoes during the saves: %d sent, %d answered, %d wrong", sent, got, wrong)
		if wrong != 0 {
			t.Errorf("%d UDP echo answers during the saves were not copies of what was sent (first: %s)", wrong, first)
		}
		if got < sent/2 {
			t.Errorf("only %d of %d UDP echoes during the saves were answered", got, sent)
		}
		if err := ns.udpEchoRetry(guestIP, []byte("after 50 saves")); err != nil {
			t.Error(err)
		}
		p.send(t, "poweroff")
		if st := p.wait(t, 30*time.Second); st != 0 {
			t.Errorf("exit status %d after poweroff; stderr:\n%s", st, p.stderr)
		}
	})
	t.Run("refused restores", func(t *testing.T) {
		dir := shortDir(t)
		snap := saveNetGuest(t, dir)
		ns, tap := hostTap(t, "chs-l1", tapFlags)
		tap2 := newNS(t).tap(t, "chs-l2", tapFlags)
		tapNoHdr := newNS(t).tap(t, "chs-l3", unix.IFF_TAP|unix.IFF_NO_PI)
		regular, err := os.Create(filepath.Join(dir, "regular"))
		if err != nil {
			t.Fatal(err)
		}
		defer regular.Close()
		vmm := filepath.Join(dir, "vmm.sock")
		r := startChsnap(t, "restore", "--api-socket", vmm)
		waitSocket(t, vmm, r)
		pid := r.cmd.Process.Pid
		// A first refused request (no such archive), so fds the server
		// opens lazily are open before the count is taken.
		restoreWithFDs(t, vmm, `{"source_url":"file://`+filepath.Join(dir, "missing.snap")+`"}`, nil)
		base := stableFDs(t, pid)
		list := listProcFDs(pid)
		src := `"source_url":"file://` + snap + `"`
		one := `{` + src + `,"net_fds":[{"id":"net0","num_fds":1}],"resume":true}`
		for round := 0; round < 3; round++ {
			for _, tc := range []struct {
				name  string
				body  string
				files []*os.File
			}{
				{"unknown id", `{` + src + `,"net_fds":[{"id":"net0","num_fds":1},{"id":"nosuch","num_fds":1}],"resume":true}`, []*os.File{tap, tap2}},
				{"two fds", `{` + src + `,"net_fds":[{"id":"net0","num_fds":2}],"resume":true}`, []*os.File{tap, tap2}},
				{"more fds than num_fds", one, []*os.File{tap, tap2}},
				{"no vnet header", one, []*os.File{tapNoHdr}},
				{"regular file", one, []*os.File{regular}},
				{"missing archive", `{"source_url":"file://` + filepath.Join(dir, "missing.snap") + `","net_fds":[{"id":"net0","num_fds":1}]}`, []*os.File{tap}},
			} {
				st, msg := restoreWithFDs(t, vmm, tc.body, tc.files)
				if st < 400 {
					t.Fatalf("vm.restore %s: %d %s, want a refusal", tc.name, st, msg)
				}
				if n := settleFDs(t, pid, base); n != base {
					t.Fatalf("after the refused vm.restore %s (%d %s) chsnap has %d fds, %d before\nbefore:\n%s\nnow:\n%s",
						tc.name, st, msg, n, base, list, listProcFDs(pid))
				}
			}
		}
		cap := ns.captureARP(t, "chs-l1")
		if st, msg := restoreWithFDs(t, vmm, one, []*os.File{tap}); st != http.StatusNoContent && st != http.StatusOK {
			t.Fatalf("vm.restore after the refusals: %d %s\nstderr:\n%s", st, msg, r.stderr)
		}
		checkRestored(t, r, ns, cap)
	})
}

// TestNetMacvtap runs the guest on a macvtap (bridge mode on a dummy
// parent, the host side a macvlan on the same parent), then saves it and
// restores it onto another macvtap in another namespace.
func TestNetMacvtap(t *testing.T) {
	needNet(t)
	dir := shortDir(t)
	ns := newNS(t)
	mvt := ns.macvtapPair(t, "chs-m0", mac0)
	sock := filepath.Join(dir, "a.sock")
	p := bootNet(t, sock, []*os.File{mvt}, "id=net0,fd=3,mac="+mac0)
	checkReach(t, p, ns, guestIP, "macvtap")
	snap := filepath.Join(dir, "vm.snap")
	chsnapOK(t, "save", "--api-socket", sock, snap)
	p.cmd.Process.Kill()
	p.wait(t, 10*time.Second)
	// /dev/tapN is named after the ifindex, which the next namespace's
	// macvtap will have too: remove this one (its node goes with it).
	mvt.Close()
	if link, err := ns.nl.LinkByName("chs-m0-mvt"); err != nil {
		t.Fatal(err)
	} else if err := ns.nl.LinkDel(link); err != nil {
		t.Fatalf("delete the first macvtap: %v", err)
	}

	ns2 := newNS(t)
	mvt2 := ns2.macvtapPair(t, "chs-m1", mac0)
	cap := ns2.captureARP(t, "chs-m1-mvl")
	r := startChsnapFiles(t, []*os.File{mvt2}, "restore", snap, "--net-fd", "net0=3", "--api-socket", filepath.Join(dir, "b.sock"))
	checkRestored(t, r, ns2, cap)
}

// TestNetTapByName runs the guest with --net id=net0,tap=NAME --netns PATH
// and no mac= (chsnap opens a persistent tap by name inside the test's
// namespace and picks a MAC), then restores with only --netns: the tap is
// reopened by name and the guest keeps its MAC.
func TestNetTapByName(t *testing.T) {
	needNet(t)
	dir := shortDir(t)
	ns := newNS(t)
	f := ns.tap(t, "chs-p0", tapFlags)
	if err := ioctlPersist(f); err != nil {
		t.Fatalf("TUNSETPERSIST chs-p0: %v", err)
	}
	t.Cleanup(func() {
		if link, err := ns.nl.LinkByName("chs-p0"); err == nil {
			ns.nl.LinkDel(link)
		}
	})
	f.Close() // the tap stays, for chsnap to open by name
	ns.up(t, "chs-p0", hostCIDR)
	sock := filepath.Join(dir, "a.sock")
	p := startChsnap(t, "run", "--kernel", guestImage(t), "--cpus", "1", "--memory", "128M",
		"--api-socket", sock, "--cmdline", guestCmdline+" chsnap.ip="+guestCIDR,
		"--net", "id=net0,tap=chs-p0", "--netns", ns.path())
	if _, err := p.con.Expect(`^chsnap-guest ready`, 90*time.Second); err != nil {
		t.Fatalf("%v\nconsole:\n%s\nstderr:\n%s", err, p.con.Transcript(), p.stderr)
	}
	// Without mac= chsnap picks a random locally administered unicast MAC.
	st := guestNetState(t, p)
	d, ok := st.devs["net0"]
	if !ok {
		t.Fatalf("net: no net0 in %v", st.devs)
	}
	mac, err := net.ParseMAC(d["mac"])
	if err != nil || len(mac) != 6 || mac[0]&2 == 0 || mac[0]&1 != 0 {
		t.Fatalf("net: MAC %q is not a locally administered unicast address (%v)", d["mac"], err)
	}
	checkReach(t, p, ns, guestIP, "tap by name")
	snap := filepath.Join(dir, "vm.snap")
	chsnapOK(t, "save", "--api-socket", sock, snap)
	p.cmd.Process.Kill()
	p.wait(t, 10*time.Second)

	cap := ns.captureARP(t, "chs-p0")
	r := startChsnap(t, "restore", snap, "--netns", ns.path(), "--api-socket", filepath.Join(dir, "b.sock"))
	checkRestoredMAC(t, r, ns, cap, mac.String()) // the archive kept the MAC
}

// ioctlPersist makes the tap behind f persistent (TUNSETPERSIST 1).
func ioctlPersist(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) { ierr = unix.IoctlSetInt(int(fd), unix.TUNSETPERSIST, 1) }); err != nil {
		return err
	}
	return ierr
}

// TestNetRestoreTwice restores one archive into two processes at once, each
// on its own tap in its own namespace: both guests announce themselves and
// answer, independently (one powered off, the other still answers).
func TestNetRestoreTwice(t *testing.T) {
	needNet(t)
	dir := shortDir(t)
	snap := saveNetGuest(t, dir)
	nsA, tapA := hostTap(t, "chs-ta", tapFlags)
	nsB, tapB := hostTap(t, "chs-tb", tapFlags)
	capA, capB := nsA.captureARP(t, "chs-ta"), nsB.captureARP(t, "chs-tb")
	a := startChsnapFiles(t, []*os.File{tapA}, "restore", snap, "--net-fd", "net0=3", "--api-socket", filepath.Join(dir, "ra.sock"))
	b := startChsnapFiles(t, []*os.File{tapB}, "restore", snap, "--net-fd", "net0=3", "--api-socket", filepath.Join(dir, "rb.sock"))
	mac, _ := net.ParseMAC(mac0)
	for _, c := range []struct {
		name string
		cap  *arpCapture
	}{{"a", capA}, {"b", capB}} {
		if _, err := c.cap.waitGratuitous(mac, guestIP, 30*time.Second); err != nil {
			t.Errorf("restore %s: %v", c.name, err)
		}
	}
	checkReach(t, a, nsA, guestIP, "restore a")
	checkReach(t, b, nsB, guestIP, "restore b")
	a.send(t, "poweroff")
	if st := a.wait(t, 30*time.Second); st != 0 {
		t.Errorf("restore a: exit status %d after poweroff; stderr:\n%s", st, a.stderr)
	}
	if err := nsB.pinger(t).ping(guestIP, 100, 10*time.Second); err != nil {
		t.Errorf("restore b after a powered off: %v", err)
	}
	if err := nsA.pinger(t).ping(guestIP, 100, 2*time.Second); err == nil {
		t.Errorf("restore a answers a ping after it powered off")
	}
	if _, d := guestNetState(t, b).devByMAC(t, mac0); d["announce"] != "1" {
		t.Errorf("restore b: net shows %v, want announce:1", d)
	}
	b.send(t, "poweroff")
	if st := b.wait(t, 30*time.Second); st != 0 {
		t.Errorf("restore b: exit status %d after poweroff; stderr:\n%s", st, b.stderr)
	}
}

// TestNetRestoreTwoNets saves a guest with two nets and restores it with
// the new taps passed in the other order (net1 at fd 3, net0 at fd 4): the
// fds are bound by id, so each address answers in its own new namespace and
// both devices announce themselves.
func TestNetRestoreTwoNets(t *testing.T) {
	needNet(t)
	dir := shortDir(t)
	ns0, tap0 := hostTap(t, "chs-w0", tapFlags)
	ns1 := newNS(t)
	tap1 := ns1.tap(t, "chs-w1", tapFlags)
	ns1.up(t, "chs-w1", "10.0.1.1/24")
	sock := filepath.Join(dir, "a.sock")
	p := startChsnapFiles(t, []*os.File{tap0, tap1}, "run", "--kernel", guestImage(t), "--cpus", "1", "--memory", "128M",
		"--api-socket", sock, "--cmdline", guestCmdline+" chsnap.ip="+guestCIDR+",10.0.1.2/24",
		"--net", "id=net0,fd=3,mac="+mac0, "--net", "id=net1,fd=4,mac="+mac1)
	if _, err := p.con.Expect(`^chsnap-guest ready`, 90*time.Second); err != nil {
		t.Fatalf("%v\nconsole:\n%s\nstderr:\n%s", err, p.con.Transcript(), p.stderr)
	}
	if err := ns0.pinger(t).pingUntil(guestIP, 30*time.Second); err != nil {
		t.Fatalf("net0 before the save: %v\n%s", err, netDiag(p, ns0))
	}
	if err := ns1.pinger(t).pingUntil("10.0.1.2", 30*time.Second); err != nil {
		t.Fatalf("net1 before the save (chsnap.ip's second address): %v\n%s", err, netDiag(p, ns1))
	}
	snap := filepath.Join(dir, "vm.snap")
	chsnapOK(t, "save", "--api-socket", sock, snap)
	p.cmd.Process.Kill()
	p.wait(t, 10*time.Second)

	nsA, tapA := hostTap(t, "chs-w2", tapFlags) // for net0
	nsB := newNS(t)                             // for net1
	tapB := nsB.tap(t, "chs-w3", tapFlags)
	nsB.up(t, "chs-w3", "10.0.1.1/24")
	capA, capB := nsA.captureARP(t, "chs-w2"), nsB.captureARP(t, "chs-w3")
	r := startChsnapFiles(t, []*os.File{tapB, tapA}, "restore", snap, "--net-fd", "net1=3", "--net-fd", "net0=4",
		"--api-socket", filepath.Join(dir, "b.sock"))
	m0, _ := net.ParseMAC(mac0)
	m1, _ := net.ParseMAC(mac1)
	if _, err := capA.waitGratuitous(m0, guestIP, 30*time.Second); err != nil {
		t.Errorf("net0 after the restore: %v", err)
	}
	if _, err := capB.waitGratuitous(m1, "10.0.1.2", 30*time.Second); err != nil {
		t.Errorf("net1 after the restore: %v", err)
	}
	checkReach(t, r, nsA, guestIP, "net0 restored")
	checkReach(t, r, nsB, "10.0.1.2", "net1 restored")
	st := guestNetState(t, r)
	for _, m := range []string{mac0, mac1} {
		if name, d := st.devByMAC(t, m); d["announce"] != "1" || d["link"] != "up" {
			t.Errorf("net after the restore: %s is %v, want announce:1 and link:up", name, d)
		}
	}
	r.send(t, "poweroff")
	if st := r.wait(t, 30*time.Second); st != 0 {
		t.Errorf("exit status %d after poweroff; stderr:\n%s", st, r.stderr)
	}
}
