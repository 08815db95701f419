package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"

	"github.com/bpfmon/bpfmon/internal/btffmt"
	"github.com/bpfmon/bpfmon/internal/features"
	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/scanner"
)

func runMaps(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("maps", flag.ContinueOnError)
	format := fs.String("format", "table", "output format: table, or json (one map per line)")
	dump := fs.Bool("dump", false, "also print the contents of the selected maps (hex keys and values)")
	dumpMax := fs.Int("dump-max", 100, "with --dump, at most `N` elements per map (0: all)")
	var ids, pids uintList
	var names stringList
	fs.Var(&ids, "id", "only these map `IDS` (comma-separated or repeated)")
	fs.Var(&names, "name", "only maps with these `NAMES` (names are chosen by map creators: not an identity)")
	fs.Var(&pids, "pid", "only maps held by these process `IDS`")
	fs.Usage = usageFunc(fs, `Usage: bpfmon maps [flags]

Lists every BPF map on this host: id, name, type, sizes, flags, memory, the
programs that use it, the processes that hold an fd to it (and whether that
fd can write), the paths where it is pinned, and whether user space could
write it now.`)
	if code, stop := parse(fs, args, stdout, stderr); stop {
		return code
	}
	if *format != "table" && *format != "json" {
		fmt.Fprintf(stderr, "bpfmon maps: unknown --format %q: want table or json\n", *format)
		return exitUsage
	}
	if *dumpMax < 0 {
		fmt.Fprintf(stderr, "bpfmon maps: invalid --dump-max %d: want 0 (all) or more\n", *dumpMax)
		return exitUsage
	}
	if err := features.CheckTracing(); err != nil {
		fmt.Fprintf(stderr, "bpfmon maps: %v\n", err)
		return exitError
	}
	var hiddenProgs []inventory.HiddenProg
	maps, problems, err := inventory.Collect(inventory.Options{IDs: ids, Names: names, PIDs: pids, Attachments: true, HiddenProgs: &hiddenProgs})
	if err != nil {
		fmt.Fprintf(stderr, "bpfmon maps: %v\n", err)
		return exitError
	}
	for _, p := range problems {
		fmt.Fprintf(stderr, "bpfmon maps: warning: %v\n", p)
	}
	warnHiddenProgs(stderr, hiddenProgs)

	var contents map[uint32][]element
	if *dump {
		contents = dumpMaps(maps, *dumpMax, stderr)
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		for i := range maps {
			line := struct {
				inventory.Map
				Contents []element `json:"contents,omitempty"`
			}{maps[i], contents[maps[i].ID]}
			if err := enc.Encode(&line); err != nil {
				fmt.Fprintf(stderr, "bpfmon maps: %v\n", err)
				return exitError
			}
		}
		return exitOK
	}
	writeMapsTable(stdout, maps, contents)
	return exitOK
}

// warnHiddenProgs says, on stderr in either format (the JSON lines are
// maps), which programs bpf(2)'s listing misses while the bpf_prog
// iterator has them.
func warnHiddenProgs(w io.Writer, progs []inventory.HiddenProg) {
	for _, p := range progs {
		fmt.Fprintf(w, "bpfmon maps: HIDDEN program %d %s (%s) missing from bpf(2)'s listing: missed by %s, seen by %s\n",
			p.ID, plain(p.Name), p.Type, strings.Join(p.Hidden.MissedBy, ","), strings.Join(p.Hidden.SeenBy, ","))
	}
}

// element is one key and value of a dumped map, in hex, and rendered
// through the map's BTF when it has some.
type element struct {
	Key      string `json:"key"`
	Value    string `json:"value"`
	KeyBTF   string `json:"key_btf,omitempty"`
	ValueBTF string `json:"value_btf,omitempty"`

	key, value []byte // the bytes, for rendering through BTF
}

var errDumpLimit = errors.New("dump limit reached")

func dumpMaps(maps []inventory.Map, limit int, stderr io.Writer) map[uint32][]element {
	out := map[uint32][]element{}
	r, err := scanner.NewReader(nil)
	if err != nil {
		fmt.Fprintf(stderr, "bpfmon maps: --dump: %v\n", err)
		return out
	}
	hidden := map[uint32]*inventory.HiddenView{}
	for _, m := range maps {
		if m.Hidden != nil {
			hidden[m.ID] = m.Hidden
		}
	}
	// A hidden map is read the way the cross-view check reached it.
	r.Reopen = func(id, flags uint32) (int, error) { return hidden[id].Open(id, flags) }
	for _, m := range maps {
		info, err := r.Read(m.ID, func(k, v []byte) error {
			if limit > 0 && len(out[m.ID]) >= limit {
				return errDumpLimit
			}
			out[m.ID] = append(out[m.ID], element{Key: hex.EncodeToString(k), Value: hex.EncodeToString(v),
				key: append([]byte(nil), k...), value: append([]byte(nil), v...)})
			return nil
		})
		// Render through the map's BTF, when it has some, from the ids the
		// read reported.
		if key, value, terr := btffmt.Types(info.BTFID, info.BTFKeyTypeID, info.BTFValueTypeID); terr == nil {
			for i := range out[m.ID] {
				e := &out[m.ID][i]
				if key != nil {
					e.KeyBTF = btffmt.Format(key, e.key)
				}
				if value != nil {
					e.ValueBTF = btffmt.Format(value, e.value)
				}
			}
		}
		var ns *scanner.NotScannableError
		switch {
		case errors.Is(err, errDumpLimit):
			fmt.Fprintf(stderr, "bpfmon maps: map %d: showing the first %d elements (--dump-max)\n", m.ID, limit)
		case errors.As(err, &ns):
			fmt.Fprintf(stderr, "bpfmon maps: map %d: contents not readable: %s\n", m.ID, ns.Reason)
		case err != nil:
			fmt.Fprintf(stderr, "bpfmon maps: map %d: %v\n", m.ID, err)
		}
	}
	return out
}

// writeMapsTable prints one line per map, then its holders and pins
// indented below it. Every string a process chose is quoted when it is not
// plain, so no name or path can forge a line.
func writeMapsTable(w io.Writer, maps []inventory.Map, contents map[uint32][]element) {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tNAME\tKEY\tVALUE\tMAX\tFLAGS\tMEMORY\tPROGRAMS\tHOLDERS\tPINS\tWRITABLE")
	for _, m := range maps {
		flags := strings.Join(m.FlagNames, ",")
		if flags == "" {
			flags = "-"
		}
		var progs []string
		for _, p := range m.Programs {
			progs = append(progs, strconv.FormatUint(uint64(p.ID), 10)+":"+plain(p.Name))
		}
		id := strconv.FormatUint(uint64(m.ID), 10)
		if m.Hidden != nil {
			id += "(hidden)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%d\t%s\t%d\t%d\t%v\n", id, m.Type, plain(m.Name), m.KeySize, m.ValueSize,
			m.MaxEntries, flags, m.MemoryBytes, orDash(strings.Join(progs, ",")), len(m.Holders), len(m.Pins), m.UserWritable)
	}
	tw.Flush()
	for _, m := range maps {
		attached := slices.ContainsFunc(m.Programs, func(p inventory.Program) bool { return len(p.Attachments) > 0 })
		if len(m.Holders) == 0 && len(m.Pins) == 0 && len(contents[m.ID]) == 0 && m.Hidden == nil && !attached {
			continue
		}
		fmt.Fprintf(w, "\nmap %d %s:\n", m.ID, plain(m.Name))
		if h := m.Hidden; h != nil {
			fmt.Fprintf(w, "  HIDDEN from bpf(2)'s listing: missed by %s, seen by %s; read via %s\n",
				strings.Join(h.MissedBy, ","), strings.Join(h.SeenBy, ","), orDash(plain(h.Via)))
		}
		for _, h := range m.Holders {
			mode := "read-only"
			if h.Writable {
				mode = "read-write"
			}
			fmt.Fprintf(w, "  held by pid %d comm=%s exe=%s fd %d (%s)\n", h.PID, plain(h.Comm), plain(h.Exe), h.FD, mode)
		}
		for _, p := range m.Pins {
			fmt.Fprintf(w, "  pinned at %s\n", plain(p))
		}
		for _, p := range m.Programs {
			for _, a := range p.Attachments {
				fmt.Fprintf(w, "  program %d %s attached: %s\n", p.ID, plain(p.Name), printable(a.Point))
			}
		}
		for _, e := range contents[m.ID] {
			fmt.Fprintf(w, "  key %s value %s", e.Key, e.Value)
			if e.KeyBTF != "" || e.ValueBTF != "" {
				fmt.Fprintf(w, "  (%s = %s)", orDash(printable(e.KeyBTF)), orDash(printable(e.ValueBTF)))
			}
			fmt.Fprintln(w)
		}
	}
}

// plain returns s as is when it is printable and has no space or quote,
// else Go-quoted: control characters, newlines and escapes cannot reach the
// terminal.
func plain(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || r == ' ' || r == '"' || r == '\\' || r > unicode.MaxASCII {
			return strconv.QuoteToASCII(s)
		}
	}
	return s
}

// printable escapes what BTF-formatted strings may carry from map data.
func printable(s string) string {
	q := strconv.QuoteToASCII(s)
	return q[1 : len(q)-1]
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
