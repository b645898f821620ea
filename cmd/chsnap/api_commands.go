package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/chsnap/chsnap/vm"
	"github.com/chsnap/chsnap/vm/api"
)

// apiCallTimeout bounds the short API calls (not save, which takes as long
// as the archive does).
const apiCallTimeout = time.Minute

// apiSocketFlags are the flags that choose a VM's API socket. run and
// restore use them to listen, the client commands to connect.
func apiSocketFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{
			Name:      "api-socket",
			Usage:     "path of the VM's API socket (default: $XDG_RUNTIME_DIR/chsnap/NAME.sock, or /run/chsnap/NAME.sock without XDG_RUNTIME_DIR)",
			TakesFile: true,
		},
		&cli.StringFlag{
			Name:  "name",
			Usage: "name of the VM, which picks its default API socket (letters, digits, '-', '_', '.')",
			Value: api.DefaultName,
		},
	}
}

// apiSocketPath returns the socket that --api-socket or --name selects.
// The two flags exclude each other; errors are usage errors.
func apiSocketPath(c *cli.Context) (string, error) {
	if c.IsSet("api-socket") && c.IsSet("name") {
		return "", usagef("--api-socket and --name exclude each other: give one")
	}
	if p := c.String("api-socket"); c.IsSet("api-socket") {
		if p == "" {
			return "", usagef("--api-socket: empty path")
		}
		return p, nil
	}
	name := c.String("name")
	if err := api.ValidateName(name); err != nil {
		return "", usagef("--name: %w", err)
	}
	return api.DefaultSocketPath(name), nil
}

// apiCommands are the commands that drive a running VM through its API
// socket: pause, resume, info, shutdown and save.
func apiCommands() []*cli.Command {
	simple := func(name, usage, desc string, call func(context.Context, *api.Client) error) *cli.Command {
		return &cli.Command{
			Name:         name,
			Usage:        usage,
			ArgsUsage:    " ",
			Description:  desc,
			Flags:        apiSocketFlags(),
			OnUsageError: commandUsageError,
			Action: func(c *cli.Context) error {
				if c.NArg() > 0 {
					return usagef("%s takes no arguments (got %q)", name, c.Args().First())
				}
				client, err := apiClient(c)
				if err != nil {
					return err
				}
				ctx, cancel := context.WithTimeout(c.Context, apiCallTimeout)
				defer cancel()
				return call(ctx, client)
			},
		}
	}
	return []*cli.Command{
		simple("pause", "pause a running VM (its vCPUs stop; devices keep their state)",
			"Example:\n   chsnap pause --name web",
			func(ctx context.Context, cl *api.Client) error { return cl.Pause(ctx) }),
		simple("resume", "resume a paused VM",
			"Example:\n   chsnap resume --name web",
			func(ctx context.Context, cl *api.Client) error { return cl.Resume(ctx) }),
		{
			Name:         "info",
			Usage:        "print a VM's state and configuration as JSON on stdout",
			ArgsUsage:    " ",
			Description:  "The JSON is Cloud Hypervisor's VmInfo shape.\n\nExample:\n   chsnap info --name web | jq -r .state",
			Flags:        apiSocketFlags(),
			OnUsageError: commandUsageError,
			Action:       infoAction,
		},
		simple("shutdown", "stop a VM; its chsnap process exits with status 0",
			"Example:\n   chsnap shutdown --api-socket /tmp/vm.sock",
			func(ctx context.Context, cl *api.Client) error { return cl.Shutdown(ctx) }),
		saveCommand(),
	}
}

// commandUsageError makes a command's flag parsing error a usage error
// (exit 2, one line on stderr) instead of help text on stdout.
func commandUsageError(_ *cli.Context, err error, _ bool) error {
	return usageError{err}
}

func apiClient(c *cli.Context) (*api.Client, error) {
	p, err := apiSocketPath(c)
	if err != nil {
		return nil, err
	}
	return api.NewClient(p), nil
}

func infoAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("info takes no arguments (got %q)", c.Args().First())
	}
	client, err := apiClient(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Context, apiCallTimeout)
	defer cancel()
	info, err := client.Info(ctx)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return fmt.Errorf("vm.info: encode: %w", err)
	}
	_, err = fmt.Fprintf(c.App.Writer, "%s\n", b)
	return err
}

func saveCommand() *cli.Command {
	return &cli.Command{
		Name:      "save",
		Usage:     "save a running VM into one archive (pause, write, resume)",
		ArgsUsage: "FILE|-",
		Description: "Streams the archive from the VM's chsnap process and writes it to FILE, or to\n" +
			"stdout for -. FILE is written as a temporary file beside it, fsynced and renamed\n" +
			"over FILE (mode 0600: the archive holds guest memory), so a failed or interrupted\n" +
			"save leaves an earlier archive intact. A progress line is drawn on stderr when it\n" +
			"is a terminal.\n\n" +
			"Example:\n   chsnap save --name web web.snap\n   chsnap save --leave-paused - | ssh host 'cat > vm.snap'",
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "leave-paused", Usage: "keep the VM paused after the save instead of resuming it"},
		}, apiSocketFlags()...),
		OnUsageError: commandUsageError,
		Action:       saveAction,
	}
}

func saveAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("save takes one argument, FILE or - (got %d)", c.NArg())
	}
	dest := c.Args().First()
	if dest == "" {
		return usagef("save: empty FILE")
	}
	client, err := apiClient(c)
	if err != nil {
		return err
	}
	stdout := c.App.Writer
	if dest == "-" && isTerminal(stdout) {
		return usagef("save -: refusing to write the archive to a terminal; redirect stdout or give a FILE")
	}
	if dest != "-" {
		if fi, err := os.Stat(dest); err == nil && fi.IsDir() {
			return usagef("save %s: is a directory; give the archive's file name", dest)
		}
	}

	// SIGINT and SIGTERM cancel the stream; the temporary file goes with it.
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()

	label := "saving " + dest
	if dest == "-" {
		label = "saving to stdout"
	}
	prog := newProgress(c.App.ErrWriter, label)
	prog.Add(0) // show the line while the VM pauses, before the first byte
	opt := api.StreamOptions{
		LeavePaused: c.Bool("leave-paused"),
		OnStart: func(mem uint64) {
			// Compressed archive bytes do not track RAM bytes, so the RAM
			// size is context, not a total for a percentage.
			if mem > 0 {
				prog.SetNote("guest RAM " + vm.FormatSize(mem))
			}
		},
	}
	var n int64
	if dest == "-" {
		n, err = client.SnapshotStreamTo(ctx, prog.Writer(stdout), opt)
		if err != nil {
			prog.Finish("")
			return fmt.Errorf("save to stdout: %w (what was written is not a valid archive)", err)
		}
	} else {
		n, err = saveToFile(ctx, client, dest, prog, opt)
		if err != nil {
			prog.Finish("")
			return err
		}
	}
	el := prog.Elapsed()
	prog.Finish(fmt.Sprintf("saved %s: %s in %s", dest, vm.FormatSize(uint64(n)), el.Round(10*time.Millisecond)))
	return nil
}

// saveToFile streams an archive into a temporary file beside path, then
// fsyncs it, renames it over path and fsyncs the directory. On any error
// the temporary file is removed and path is untouched.
func saveToFile(ctx context.Context, client *api.Client, path string, prog *progress, opt api.StreamOptions) (n int64, err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return 0, fmt.Errorf("save %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	n, err = client.SnapshotStreamTo(ctx, prog.Writer(f), opt)
	if err != nil {
		if ctx.Err() != nil {
			return n, fmt.Errorf("save %s: interrupted; any earlier archive is left as it was", path)
		}
		return n, fmt.Errorf("save %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return n, fmt.Errorf("save %s: fsync: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return n, fmt.Errorf("save %s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return n, fmt.Errorf("save %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		// The archive is complete and in place; only its durability
		// across a power cut is in doubt.
		return n, fmt.Errorf("save %s: fsync directory %s: %w", path, dir, err)
	}
	return n, nil
}

// syncDir fsyncs a directory so that a rename in it survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}
