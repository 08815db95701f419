package kernelwrite

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
)

// kallsyms is a snapshot of the kernel's text symbols: where the core
// kernel's text lies (a return address there is no BPF program's), which
// symbol holds an address outside it (a BPF trampoline, say), and the
// names kprobes can be placed on.
type kallsyms struct {
	textStart, textEnd uint64 // _stext, _etext
	syms               []ksym // text symbols, by address
	byName             map[string]uint64
	variants           map[string]string // fn -> a compiler-renamed copy of it
}

type ksym struct {
	addr uint64
	name string
	mod  string // "bpf" for BPF images, a module's name, "" for the core kernel
}

func readKallsyms() (*kallsyms, error) {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseKallsyms(f)
}

var textStartSym, textEndSym = []byte("_stext"), []byte("_etext")

// parseKallsyms reads /proc/kallsyms lines: "ADDR TYPE NAME [MODULE]".
func parseKallsyms(r io.Reader) (*kallsyms, error) {
	k := &kallsyms{byName: map[string]uint64{}, variants: map[string]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// "ADDR TYPE NAME" or "ADDR TYPE NAME\t[MODULE]"; most lines are
		// not text symbols, and are skipped before anything is allocated.
		line := sc.Bytes()
		sp := bytes.IndexByte(line, ' ')
		if sp < 0 || len(line) < sp+4 || line[sp+2] != ' ' {
			continue
		}
		typ, rest := line[sp+1], line[sp+3:]
		// The text's bounds are read whatever their type: arm64 lists
		// _etext as data.
		text := typ == 't' || typ == 'T'
		if !text && !bytes.Equal(rest, textStartSym) && !bytes.Equal(rest, textEndSym) {
			continue
		}
		addr, err := strconv.ParseUint(string(line[:sp]), 16, 64)
		if err != nil || addr == 0 {
			continue
		}
		mod := ""
		if tab := bytes.IndexAny(rest, "\t "); tab >= 0 {
			mod = string(bytes.Trim(bytes.TrimSpace(rest[tab:]), "[]"))
			rest = rest[:tab]
		}
		name := string(rest)
		switch name {
		case "_stext":
			k.textStart = addr
		case "_etext":
			k.textEnd = addr
		}
		if !text {
			continue
		}
		k.syms = append(k.syms, ksym{addr, name, mod})
		if mod == "" {
			k.byName[name] = addr
			if bytes.IndexByte(rest, '.') >= 0 {
				if m := variantRE.FindStringSubmatch(name); m != nil {
					k.variants[m[1]] = name
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if k.textStart == 0 || k.textEnd <= k.textStart {
		return nil, fmt.Errorf("/proc/kallsyms has no _stext/_etext with addresses (kernel.kptr_restrict?)")
	}
	sort.Slice(k.syms, func(i, j int) bool { return k.syms[i].addr < k.syms[j].addr })
	return k, nil
}

// inCore reports whether addr is in the core kernel's text.
func (k *kallsyms) inCore(addr uint64) bool {
	return addr >= k.textStart && addr < k.textEnd
}

// at returns the symbol holding addr: the last at or below it.
func (k *kallsyms) at(addr uint64) (ksym, bool) {
	i := sort.Search(len(k.syms), func(i int) bool { return k.syms[i].addr > addr })
	if i == 0 {
		return ksym{}, false
	}
	return k.syms[i-1], true
}

// span returns where function name's code lies: from its address to the
// next symbol's.
func (k *kallsyms) span(name string) (span, bool) {
	a, ok := k.byName[name]
	if !ok {
		return span{}, false
	}
	i := sort.Search(len(k.syms), func(i int) bool { return k.syms[i].addr > a })
	if i == len(k.syms) {
		return span{}, false
	}
	return span{a, k.syms[i].addr}, true
}

func (k *kallsyms) addr(name string) (uint64, bool) {
	a, ok := k.byName[name]
	return a, ok
}

var variantRE = regexp.MustCompile(`^(.+)\.(isra|constprop|part|cold|lto_priv)\.\d+$`)

// variant returns a compiler-renamed copy of fn (fn.isra.0,
// fn.constprop.0, ...) when kallsyms has one, "" otherwise.
func (k *kallsyms) variant(fn string) string { return k.variants[fn] }
