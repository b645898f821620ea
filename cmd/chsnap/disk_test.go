package main

import (
	"testing"

	"github.com/chsnap/chsnap/vm"
)

func TestParseDisk(t *testing.T) {
	good := map[string]vm.DiskConfig{
		"id=disk0,path=/a.img":                        {ID: "disk0", Path: "/a.img"},
		"path=b.qcow2,id=d1,readonly=on,format=qcow2": {ID: "d1", Path: "b.qcow2", ReadOnly: true, Format: "qcow2"},
		"id=x,path=p,readonly=off":                    {ID: "x", Path: "p"},
	}
	for in, want := range good {
		got, err := parseDisk(in)
		if err != nil || got != want {
			t.Errorf("parseDisk(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "id=a", "path=p", "id=a,path=p,readonly=maybe", "id=a,path=p,size=3", "id=a,path"} {
		if _, err := parseDisk(in); err == nil {
			t.Errorf("parseDisk(%q) accepted", in)
		}
	}
	m, err := parseDiskOverrides([]string{"disk0=/copy.img", "d1=x"})
	if err != nil || m["disk0"] != "/copy.img" || m["d1"] != "x" {
		t.Errorf("parseDiskOverrides = %v, %v", m, err)
	}
	for _, bad := range [][]string{{"disk0"}, {"=x"}, {"a=x", "a=y"}} {
		if _, err := parseDiskOverrides(bad); err == nil {
			t.Errorf("parseDiskOverrides(%q) accepted", bad)
		}
	}
}
