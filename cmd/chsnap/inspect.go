package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/chsnap/chsnap/formats"
	"github.com/chsnap/chsnap/vm"
)

// inspectReport is what `chsnap inspect --json` prints.
type inspectReport struct {
	Archive   string           `json:"archive"`
	Format    string           `json:"format"`
	Size      int64            `json:"size"`
	CPUs      int              `json:"cpus"`
	Memory    uint64           `json:"memory"`
	Cmdline   string           `json:"cmdline"`
	Kernel    string           `json:"kernel,omitempty"`
	Devices   []string         `json:"devices"`
	Resources json.RawMessage  `json:"host_resources"`
	Memchunks int              `json:"memory_chunks_stored"`
	MemBytes  uint64           `json:"memory_bytes_stored"`
	Ratio     float64          `json:"memory_to_archive_ratio"`
	Sections  []sectionSummary `json:"sections"`
}

type sectionSummary struct {
	Kind  string `json:"kind"`
	Count int    `json:"count"`
	Bytes uint64 `json:"bytes"`
}

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "describe a snapshot archive: sections, sizes, vCPUs, devices, memory, compression",
		ArgsUsage: "ARCHIVE",
		Description: "Reads the archive as `chsnap verify` does (every checksum, every state\n" +
			"section decoded strictly, guest memory decompressed) and prints a summary;\n" +
			"--json prints it as JSON on stdout. An archive verify refuses is refused here\n" +
			"too: what could be read is still printed, and the exit status is non-zero.\n\n" +
			"Example:\n   chsnap inspect vm.snap --json | jq .memory",
		Flags:        []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON on stdout"}},
		OnUsageError: commandUsageError,
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("inspect takes one archive path")
			}
			name := c.Args().First()
			if name == "-" {
				return usagef("inspect takes a file; for a stream use `chsnap verify -`")
			}
			rep, err := inspect(name)
			if rep != nil {
				if c.Bool("json") {
					enc := json.NewEncoder(c.App.Writer)
					enc.SetIndent("", "  ")
					if jerr := enc.Encode(rep); jerr != nil && err == nil {
						err = jerr
					}
				} else {
					printInspect(c, rep)
				}
			}
			return err
		},
	}
}

// inspect reads the archive through the decoder verify uses
// (vm.VerifyArchive) and reports what it read; on error the report, if
// any, covers what was read before the damage.
func inspect(name string) (*inspectReport, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	ar, verr := vm.VerifyArchive(f)
	if verr != nil {
		verr = fmt.Errorf("archive %s: %w", name, verr)
	}
	if ar == nil {
		return nil, verr
	}
	rep := &inspectReport{
		Archive: name, Format: ar.Summary.Version, Size: fi.Size(),
		CPUs: ar.CPUs, Memory: ar.Memory, Cmdline: ar.Cmdline, Kernel: ar.Kernel, Devices: ar.Devices,
	}
	if rep.Resources, err = json.Marshal(ar.Hosts); err != nil {
		return nil, fmt.Errorf("archive %s: host resources: %w", name, err)
	}
	for _, k := range ar.Summary.Kinds {
		rep.Sections = append(rep.Sections, sectionSummary{Kind: k.Name, Count: k.Count, Bytes: k.Bytes})
		if k.Kind == formats.KindMemoryChunk {
			rep.Memchunks, rep.MemBytes = k.Count, k.Bytes
		}
	}
	if rep.Size > 0 {
		rep.Ratio = float64(rep.Memory) / float64(rep.Size)
	}
	return rep, verr
}

func printInspect(c *cli.Context, r *inspectReport) {
	w := c.App.Writer
	fmt.Fprintf(w, "archive:   %s (format %s, %d bytes)\n", r.Archive, r.Format, r.Size)
	if r.CPUs == 0 { // the config section was not read: only the sections are known
		printSections(w, r)
		return
	}
	fmt.Fprintf(w, "vCPUs:     %d\n", r.CPUs)
	fmt.Fprintf(w, "memory:    %s; %d chunks stored, %d bytes compressed; memory/archive %.2f:1\n",
		vm.FormatSize(r.Memory), r.Memchunks, r.MemBytes, r.Ratio)
	fmt.Fprintf(w, "devices:   %v\n", r.Devices)
	fmt.Fprintf(w, "resources: %s\n", string(r.Resources))
	if r.Kernel != "" {
		fmt.Fprintf(w, "kernel:    %s\n", r.Kernel)
	}
	fmt.Fprintf(w, "cmdline:   %s\n", r.Cmdline)
	printSections(w, r)
}

// printSections prints the table of sections by kind.
func printSections(w io.Writer, r *inspectReport) {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SECTION\tCOUNT\tBYTES")
	for _, s := range r.Sections {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", s.Kind, s.Count, s.Bytes)
	}
	tw.Flush()
}

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "check every checksum and every piece of state in a snapshot archive (no KVM needed)",
		ArgsUsage: "ARCHIVE|-",
		Description: "Reads the whole archive as a restore would: every section checksum, the table\n" +
			"and trailer, every state section decoded and checked, and guest memory\n" +
			"decompressed with every chunk's hash compared. Exits 0 only if all of it holds.\n\n" +
			"Example:\n   chsnap verify vm.snap",
		Flags:        []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the result as JSON on stdout"}},
		OnUsageError: commandUsageError,
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("verify takes one archive path (or - for standard input)")
			}
			name := c.Args().First()
			in := os.Stdin
			if name != "-" {
				f, err := os.Open(name)
				if err != nil {
					return fmt.Errorf("archive: %w", err)
				}
				defer f.Close()
				in = f
			} else if isTerminal(os.Stdin) {
				return usagef("verify -: standard input is a terminal, not an archive")
			}
			prog := newProgress(c.App.ErrWriter, "verifying "+name)
			if fi, err := in.Stat(); err == nil && fi.Mode().IsRegular() {
				prog.SetTotal(uint64(fi.Size()))
			}
			cr := &countingReader{r: in, p: prog}
			rep, err := vm.VerifyArchive(cr)
			prog.Finish("")
			if err != nil {
				return fmt.Errorf("archive %s: %w", name, err)
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			fmt.Fprintf(c.App.Writer, "%s: ok: %d vCPUs, %s memory (%d chunks stored, %d all-zero), every checksum verified\n",
				name, rep.CPUs, vm.FormatSize(rep.Memory), rep.Memstat.Chunks-rep.Memstat.ZeroChunks, rep.Memstat.ZeroChunks)
			return nil
		},
	}
}
