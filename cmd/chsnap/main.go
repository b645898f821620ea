// Command chsnap is a virtual machine monitor built for checkpointing: it
// boots Linux guests on KVM and (in later releases) saves them into one
// archive and restores them in a new process.
//
// Exit status: 0 success, 1 the operation failed, 2 usage error.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// Exit codes, part of chsnap's interface.
const (
	exitOK      = 0
	exitFailed  = 1
	exitUsage   = 2
	programName = "chsnap"
)

// usageError marks an error in how chsnap was called (exit status 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:      programName,
		Usage:     "a KVM virtual machine monitor built for snapshot and restore",
		Writer:    stdout,
		ErrWriter: stderr,
		Description: "chsnap boots Linux guests on KVM. With no --kernel, `chsnap run` boots the bundled\n" +
			"test guest.\n\n" +
			"Exit status: 0 success, 1 the operation failed, 2 usage error.",
		Commands: append([]*cli.Command{runCommand(), restoreCommand(), inspectCommand(), verifyCommand(), cpuCommand()},
			apiCommands()...),
		ExitErrHandler: func(*cli.Context, error) {}, // main maps errors to exit codes
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{err}
		},
		HideHelpCommand: false,
		// --disk values hold commas (id=…,path=…): one flag, one value.
		DisableSliceFlagSeparator: true,
	}
}

// exitCode maps an error from the app to chsnap's exit status.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return exitFailed
}

func run(args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	err := app.Run(interspersed(app, args))
	if err != nil {
		// One line, whatever the error: several refusals (errors.Join) are
		// separated by "; ".
		fmt.Fprintf(stderr, "%s: %s\n", programName, strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; "))
	}
	return exitCode(err)
}

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}
