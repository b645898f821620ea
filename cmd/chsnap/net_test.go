package main

import (
	"strings"
	"testing"
)

func TestParseNet(t *testing.T) {
	good := []struct {
		in      string
		id, tap string
		fd      int
		mac     string
	}{
		{"id=net0,tap=tap0", "net0", "tap0", -1, ""},
		{"id=net0,fd=3", "net0", "", 3, ""},
		{"tap=tap1,id=uplink,mac=52:54:00:12:34:56", "uplink", "tap1", -1, "52:54:00:12:34:56"},
	}
	for _, tt := range good {
		n, err := parseNet(tt.in)
		if err != nil {
			t.Errorf("parseNet(%q): %v", tt.in, err)
			continue
		}
		mac := ""
		if n.mac != nil {
			mac = n.mac.String()
		}
		if n.id != tt.id || n.tap != tt.tap || n.fd != tt.fd || mac != tt.mac {
			t.Errorf("parseNet(%q) = %+v", tt.in, n)
		}
	}
	bad := map[string]string{
		"tap=tap0":                  "needs id=",
		"id=net0":                   "needs tap=NAME or fd=N",
		"id=net0,tap=t,fd=3":        "not both",
		"id=net0,fd=1":              "standard stream",
		"id=net0,fd=x":              "fd",
		"id=net0,tap=":              "empty tap name",
		"id=net0,tap=t,mac=zz":      "not an Ethernet address",
		"id=net0,tap=t,queues=2":    `unknown key "queues"`,
		"id=net0,tap":               "not key=value",
		"id=net0,tap=t,mac=01:02:0": "not an Ethernet address",
	}
	for in, want := range bad {
		if _, err := parseNet(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseNet(%q) = %v, want an error containing %q", in, err, want)
		}
	}
	if _, err := parseNets([]string{"id=a,fd=3", "id=b,fd=3"}); err == nil || !strings.Contains(err.Error(), "already net a's") {
		t.Errorf("two nets on one fd: %v", err)
	}
}

// TestRunNetBadInput checks that --net mistakes are usage errors reported
// before any descriptor or /dev/kvm is touched.
func TestRunNetBadInput(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--net", "id=net0"}, "needs tap=NAME or fd=N"},
		{[]string{"run", "--net", "id=bad id,tap=t"}, `net id "bad id"`},
		{[]string{"run", "--net", "id=net0,tap=t,mac=01:00:00:00:00:01"}, "multicast"},
		{[]string{"run", "--net", "id=n,tap=a", "--net", "id=n,tap=b"}, `net id "n" is already the id of another device`},
		{[]string{"restore", "x.snap", "--net-fd", "net0"}, "--net-fd"},
		{[]string{"restore", "--net-fd", "net0=3"}, "--net-fd needs an archive"},
	} {
		var out, errb strings.Builder
		code := run(append([]string{"chsnap"}, tt.args...), &out, &errb)
		if code != exitUsage || !strings.Contains(errb.String(), tt.want) || strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 {
			t.Errorf("chsnap %s: exit %d, stderr %q; want exit %d and one line containing %q", strings.Join(tt.args, " "), code, errb.String(), exitUsage, tt.want)
		}
	}
}
