package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/chsnap/chsnap/fdmap"
	"github.com/chsnap/chsnap/vm"
	"github.com/chsnap/chsnap/vm/api"
)

// version is chsnap's release version, reported by vmm.ping.
const version = "0.1.0-dev"

// controller exposes the VMM's VM to the API server. It may start without
// one (`chsnap restore` with no archive) and get it from vm.restore.
type controller struct {
	// mu guards m and info, and makes pause and resume check-then-act
	// atomic against each other.
	mu   sync.Mutex
	m    *vm.VM
	info api.VMConfigInfo

	// restoreOpt are the options a vm.restore uses (console, KVM device).
	restoreOpt vm.RestoreOptions
	// started receives the VM once there is one to run; shutdown is closed
	// by vmm.shutdown when there is none.
	started  chan *vm.VM
	shutdown chan struct{}
	once     sync.Once
}

func newController(m *vm.VM, info api.VMConfigInfo) *controller {
	c := &controller{m: m, info: info, started: make(chan *vm.VM, 1), shutdown: make(chan struct{})}
	if m != nil {
		c.started <- m
	}
	return c
}

// errNoVM answers requests that need a VM before vm.restore brought one.
var errNoVM = api.StateErrorf("this VMM has no VM yet: restore one with PUT /api/v1/vm.restore")

// vm returns the VM, or errNoVM.
func (c *controller) vm() (*vm.VM, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		return nil, errNoVM
	}
	return c.m, nil
}

func (c *controller) Info() (api.VMInfo, error) {
	m, err := c.vm()
	if err != nil {
		return api.VMInfo{}, err
	}
	state := api.StateRunning
	if m.Paused() {
		state = api.StatePaused
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return api.VMInfo{State: state, Config: c.info, MemoryActualSize: c.info.Memory.Size}, nil
}

func (c *controller) Pause() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		return errNoVM
	}
	if c.m.Paused() {
		return api.StateErrorf("the VM is already paused")
	}
	return c.m.Pause(5 * time.Second)
}

func (c *controller) Resume() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		return errNoVM
	}
	if !c.m.Paused() {
		return api.StateErrorf("the VM is not paused")
	}
	return c.m.Resume()
}

func (c *controller) Snapshot(w io.Writer, opt api.SnapshotOptions) error {
	m, err := c.vm()
	if err != nil {
		return err
	}
	return m.Snapshot(w, vm.SnapshotOptions{LeavePaused: opt.LeavePaused, Progress: opt.Progress})
}

func (c *controller) SnapshotToFile(path string, opt api.SnapshotOptions) error {
	m, err := c.vm()
	if err != nil {
		return err
	}
	return m.SnapshotToFile(path, vm.SnapshotOptions{LeavePaused: opt.LeavePaused, Progress: opt.Progress})
}

func (c *controller) Shutdown() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m != nil {
		c.m.Shutdown()
	} else {
		c.once.Do(func() { close(c.shutdown) })
	}
	return nil
}

// Restore serves vm.restore: it builds the VM from the archive at path and
// hands it to serveAndRun. Like Cloud Hypervisor, the VM stays paused unless
// cfg.Resume. files, the descriptors sent with the request, are split among
// cfg.NetFDs and bound to the archive's nets by vm.Restore, which closes any
// it does not use.
func (c *controller) Restore(path string, cfg api.RestoreConfig, files []*os.File) error {
	set := &fdmap.Set{}
	list := make([]fdmap.NetFDs, len(cfg.NetFDs))
	for i, n := range cfg.NetFDs {
		list[i] = fdmap.NetFDs{ID: n.ID, NumFDs: n.NumFDs}
	}
	if err := set.AddRequest(list, files); err != nil {
		return err
	}
	handed := false
	defer func() {
		if !handed {
			set.Close()
		}
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m != nil {
		return api.StateErrorf("this VMM already has a VM")
	}
	select {
	case <-c.shutdown:
		return api.StateErrorf("this VMM is shutting down")
	default:
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	defer f.Close()
	opt := c.restoreOpt
	opt.Paused = !cfg.Resume
	opt.NetFDs = set
	handed = true
	m, err := vm.Restore(f, opt)
	if err != nil {
		return fmt.Errorf("restore %s: %w", path, err)
	}
	cfgv := m.Config()
	c.m = m
	c.info = api.VMConfigInfo{
		CPUs:    api.CPUsConfig{BootVCPUs: cfgv.CPUs, MaxVCPUs: cfgv.CPUs},
		Memory:  api.MemoryConfig{Size: cfgv.Memory},
		Payload: api.PayloadConfig{Kernel: cfgv.KernelPath, Cmdline: cfgv.Cmdline},
		Disks:   diskInfo(cfgv.Disks),
		Net:     netInfo(cfgv.Nets),
	}
	c.started <- m
	return nil
}

// serveAndRun puts the API socket up at sock, waits for the controller's VM
// (there from the start, or brought by vm.restore), runs it until it ends,
// takes the socket down and releases the VM. It returns nil when the guest
// powered off, rebooted or was shut down through the API.
func serveAndRun(c *cli.Context, ctl *controller, sock string) error {
	l, err := api.Listen(sock)
	if err != nil {
		ctl.mu.Lock()
		if ctl.m != nil {
			ctl.m.Close()
		}
		ctl.mu.Unlock()
		return fmt.Errorf("API socket: %w", err)
	}
	srv := api.NewServer(ctl, api.ServerOptions{Version: version, BuildVersion: version})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	stopServer := func() {
		// Let a vmm.shutdown reply (or a snapshot in flight) finish, briefly.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
		}
		cancel()
		if err := <-served; err != nil {
			fmt.Fprintf(c.App.ErrWriter, "chsnap: API server: %v\n", err)
		}
	}

	var m *vm.VM
	select {
	case m = <-ctl.started:
	case <-ctl.shutdown:
		stopServer()
		return nil
	}
	reason, runErr := m.Run()
	stopServer()
	closeErr := m.Close()
	if runErr != nil {
		return runErr
	}
	if reason == vm.ExitStopped {
		return errors.New("vm stopped by the host")
	}
	return closeErr
}
