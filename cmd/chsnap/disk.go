package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/chsnap/chsnap/formats/disk"
	"github.com/chsnap/chsnap/vm"
	"github.com/chsnap/chsnap/vm/api"
)

// diskFlag is run's --disk: a disk to attach, repeatable.
func diskFlag() cli.Flag {
	return &cli.StringSliceFlag{
		Name:      "disk",
		Usage:     "attach a virtio-blk disk: id=ID,path=PATH[,readonly=on][,format=raw|qcow2] (repeatable; format detected when not given)",
		TakesFile: true,
	}
}

// parseDisk parses one --disk value of run.
func parseDisk(s string) (vm.DiskConfig, error) {
	var d vm.DiskConfig
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return d, fmt.Errorf("--disk %q: %q is not key=value", s, kv)
		}
		switch k {
		case "id":
			d.ID = v
		case "path":
			d.Path = v
		case "format":
			d.Format = v
		case "readonly":
			switch v {
			case "on", "true", "yes":
				d.ReadOnly = true
			case "off", "false", "no":
			default:
				return d, fmt.Errorf("--disk %q: readonly=%s is not on or off", s, v)
			}
		default:
			return d, fmt.Errorf("--disk %q: unknown key %q (use id, path, readonly, format)", s, k)
		}
	}
	if d.ID == "" || d.Path == "" {
		return d, fmt.Errorf("--disk %q: needs id= and path=", s)
	}
	return d, nil
}

// checkDisks opens and closes every disk image once, so that a missing
// file, an unknown format or a bad backing chain is reported before
// /dev/kvm is touched.
func checkDisks(disks []vm.DiskConfig) error {
	for _, d := range disks {
		img, err := disk.Open(d.Path, disk.OpenOptions{Format: d.Format, ReadOnly: true})
		if err != nil {
			return fmt.Errorf("disk %s: %w", d.ID, err)
		}
		img.Close()
	}
	return nil
}

// diskInfo describes disks for vm.info.
func diskInfo(disks []vm.DiskConfig) []api.DiskConfig {
	var out []api.DiskConfig
	for _, d := range disks {
		out = append(out, api.DiskConfig{Path: d.Path, ReadOnly: d.ReadOnly, ID: d.ID})
	}
	return out
}

// diskOverrideFlag is restore's --disk: point a saved disk at another file.
func diskOverrideFlag() cli.Flag {
	return &cli.StringSliceFlag{
		Name:      "disk",
		Usage:     "use PATH for the saved disk ID, e.g. a copy: ID=PATH (repeatable); it must be the same image",
		TakesFile: true,
	}
}

// parseDiskOverrides parses restore's --disk ID=PATH values.
func parseDiskOverrides(vals []string) (map[string]string, error) {
	m := map[string]string{}
	for _, s := range vals {
		id, path, ok := strings.Cut(s, "=")
		if !ok || id == "" || path == "" {
			return nil, fmt.Errorf("--disk %q: use ID=PATH", s)
		}
		if _, dup := m[id]; dup {
			return nil, fmt.Errorf("--disk: disk %s named twice", id)
		}
		m[id] = path
	}
	return m, nil
}
