package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/chsnap/chsnap/kvmstate"
	"github.com/chsnap/chsnap/vm"
)

// cpusFlag is --cpus, shared by the commands that shape a guest CPU.
func cpusFlag() cli.Flag {
	return &cli.StringFlag{
		Name:  "cpus",
		Usage: fmt.Sprintf("vCPUs: N, or boot=N[,topology=THREADS:CORES:DIES:PACKAGES] (1 to %d; default topology: one package of N cores)", vm.MaxCPUs),
		Value: "1",
	}
}

func cpuCommand() *cli.Command {
	return &cli.Command{
		Name:      "cpu",
		Usage:     "print the CPU model a guest would get on this host",
		ArgsUsage: " ",
		Description: "Reads what this host's KVM supports (KVM_GET_SUPPORTED_CPUID) and shapes it as\n" +
			"`chsnap run` would for the given --cpus: vendor and model, topology and APIC ids,\n" +
			"caches as the guest decodes them, and the main feature flags. Needs /dev/kvm.\n\n" +
			"Example:\n   chsnap cpu --cpus boot=8,topology=2:2:1:2 --json",
		Flags: []cli.Flag{
			cpusFlag(),
			&cli.BoolFlag{Name: "json", Usage: "print JSON, with vCPU 0's full CPUID"},
			&cli.StringFlag{Name: "kvm-device", Usage: "KVM device node", Value: "/dev/kvm", Hidden: true},
		},
		Action:       cpuAction,
		OnUsageError: commandUsageError,
	}
}

func cpuAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("cpu takes no arguments (got %q)", c.Args().First())
	}
	topo, err := vm.ParseCPUs(c.String("cpus"))
	if err != nil {
		return usagef("--cpus: %w", err)
	}
	sys, err := kvmstate.Open(c.String("kvm-device"))
	if err != nil {
		return fmt.Errorf("cpu: %w", err)
	}
	defer sys.Close()
	supported, err := sys.SupportedCPUID()
	if err != nil {
		return fmt.Errorf("cpu: read supported CPUID: %w", err)
	}
	m := vm.DescribeCPU(supported, topo)
	if c.Bool("json") {
		b, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			return fmt.Errorf("cpu: %w", err)
		}
		_, err = fmt.Fprintf(c.App.Writer, "%s\n", b)
		return err
	}
	return printCPUModel(c.App.Writer, m)
}

// printCPUModel writes the model as a few aligned lines.
func printCPUModel(w io.Writer, m vm.CPUModel) error {
	ids := make([]string, len(m.APICIDs))
	for i, id := range m.APICIDs {
		ids[i] = fmt.Sprint(id)
	}
	caches := make([]string, len(m.Caches))
	for i, c := range m.Caches {
		caches[i] = c.String()
	}
	if len(caches) == 0 {
		caches = []string{"none reported"}
	}
	t := m.Topology
	brand := m.Brand
	if brand == "" {
		brand = "-"
	}
	_, err := fmt.Fprintf(w, "vendor    %s\nbrand     %s\nmodel     family %d model %d (%#x) stepping %d\n"+
		"topology  %d vCPUs: %d thread(s) x %d core(s) x %d die(s) x %d package(s) (%s)\n"+
		"apic ids  %s\ncaches    %s\naddress   %d physical bits\nfeatures  %s\n",
		m.Vendor, brand, m.Family, m.Model, m.Model, m.Stepping,
		t.CPUs(), t.Threads, t.Cores, t.Dies, t.Packages, t,
		strings.Join(ids, ","), strings.Join(caches, " "), m.PhysAddrBits, strings.Join(m.Features, " "))
	return err
}
