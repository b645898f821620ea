package main

import (
	"encoding/json"
	"fmt"
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
		Description: "Reads the archive's section table (checking the trailer, the table and the\n" +
			"sections it reads) and prints a summary; --json prints it as JSON on stdout.\n" +
			"It does not decompress memory: `chsnap verify` checks everything.\n\n" +
			"Example:\n   chsnap inspect vm.snap --json | jq .memory",
		Flags:        []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON on stdout"}},
		OnUsageError: commandUsageError,
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("inspect takes one archive path")
			}
			name := c.Args().First()
			if name == "-" {
				return usagef("inspect needs a file it can seek in; for a stream use `chsnap verify -`")
			}
			rep, err := inspect(name)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			printInspect(c, rep)
			return nil
		},
	}
}

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
	major, minor, table, err := formats.ReadTable(f, fi.Size())
	if err != nil {
		return nil, fmt.Errorf("archive %s: %w", name, err)
	}
	rep := &inspectReport{Archive: name, Format: fmt.Sprintf("%d.%d", major, minor), Size: fi.Size()}
	byKind := map[formats.SectionKind]*sectionSummary{}
	var order []formats.SectionKind
	for _, s := range table {
		k := byKind[s.Kind]
		if k == nil {
			k = &sectionSummary{Kind: s.Kind.String()}
			byKind[s.Kind] = k
			order = append(order, s.Kind)
		}
		k.Count++
		k.Bytes += s.Length
		switch s.Kind {
		case formats.KindConfig, formats.KindHostResource, formats.KindDevice:
			sec, err := formats.ReadSectionAt(f, s)
			if err != nil {
				return nil, fmt.Errorf("archive %s: %w", name, err)
			}
			if err := describeSection(rep, sec); err != nil {
				return nil, fmt.Errorf("archive %s: %s section %d: %w", name, s.Kind, s.ID, err)
			}
		case formats.KindMemoryChunk:
			rep.Memchunks++
			rep.MemBytes += s.Length
		}
	}
	for _, k := range order {
		rep.Sections = append(rep.Sections, *byKind[k])
	}
	if rep.Size > 0 {
		rep.Ratio = float64(rep.Memory) / float64(rep.Size)
	}
	return rep, nil
}

// describeSection copies what inspect shows from one JSON section.
func describeSection(rep *inspectReport, sec formats.Section) error {
	switch sec.Kind {
	case formats.KindConfig:
		var cfg struct {
			CPUs    int    `json:"cpus"`
			Memory  uint64 `json:"memory"`
			Cmdline string `json:"cmdline"`
			Kernel  string `json:"kernel"`
		}
		if err := json.Unmarshal(sec.Payload, &cfg); err != nil {
			return err
		}
		rep.CPUs, rep.Memory, rep.Cmdline, rep.Kernel = cfg.CPUs, cfg.Memory, cfg.Cmdline, cfg.Kernel
	case formats.KindHostResource:
		var res struct {
			Resources json.RawMessage `json:"resources"`
		}
		if err := json.Unmarshal(sec.Payload, &res); err != nil {
			return err
		}
		rep.Resources = res.Resources
	case formats.KindDevice:
		var d struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(sec.Payload, &d); err != nil {
			return err
		}
		rep.Devices = append(rep.Devices, d.ID)
	}
	return nil
}

func printInspect(c *cli.Context, r *inspectReport) {
	w := c.App.Writer
	fmt.Fprintf(w, "archive:   %s (format %s, %d bytes)\n", r.Archive, r.Format, r.Size)
	fmt.Fprintf(w, "vCPUs:     %d\n", r.CPUs)
	fmt.Fprintf(w, "memory:    %s; %d chunks stored, %d bytes compressed; memory/archive %.2f:1\n",
		vm.FormatSize(r.Memory), r.Memchunks, r.MemBytes, r.Ratio)
	fmt.Fprintf(w, "devices:   %v\n", r.Devices)
	fmt.Fprintf(w, "resources: %s\n", string(r.Resources))
	if r.Kernel != "" {
		fmt.Fprintf(w, "kernel:    %s\n", r.Kernel)
	}
	fmt.Fprintf(w, "cmdline:   %s\n", r.Cmdline)
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
