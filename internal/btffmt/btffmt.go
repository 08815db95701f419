// Package btffmt renders map keys and values through the map's BTF, so
// that `bpfmon maps --dump` shows {pid: 42, enabled: true} rather than
// 2a00000001, where the map's creator supplied type information.
package btffmt

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/cilium/ebpf/btf"
)

// ErrNoBTF says the map carries no type information.
var ErrNoBTF = errors.New("map has no BTF")

// Types returns a map's key and value types from its BTF object id and
// type ids (as in struct bpf_map_info). Either may be nil when the map has
// BTF for only one of them.
func Types(btfID, keyTypeID, valueTypeID uint32) (key, value btf.Type, err error) {
	return types(btfID, keyTypeID, valueTypeID, 0)
}

// maxDepth bounds recursion through nested types.
const maxDepth = 16

// Format renders b as a value of type t. Bytes it cannot interpret, or
// that do not match the type's size, are shown in hex: it never fails.
func Format(t btf.Type, b []byte) string {
	var sb strings.Builder
	format(&sb, t, b, 0)
	return sb.String()
}

func format(sb *strings.Builder, t btf.Type, b []byte, depth int) {
	t = btf.UnderlyingType(t)
	size, err := btf.Sizeof(t)
	if err != nil || size != len(b) || depth > maxDepth {
		sb.WriteString("0x")
		sb.WriteString(fmt.Sprintf("%x", b))
		return
	}
	switch v := t.(type) {
	case *btf.Int:
		formatInt(sb, v, b)
	case *btf.Enum:
		n := readUint(b)
		for _, val := range v.Values {
			if val.Value == n {
				sb.WriteString(val.Name)
				return
			}
		}
		sb.WriteString(strconv.FormatUint(n, 10))
	case *btf.Pointer:
		sb.WriteString("0x" + strconv.FormatUint(readUint(b), 16))
	case *btf.Array:
		es, err := btf.Sizeof(v.Type)
		if err != nil || es == 0 {
			sb.WriteString(fmt.Sprintf("0x%x", b))
			return
		}
		if i, ok := btf.UnderlyingType(v.Type).(*btf.Int); ok && i.Encoding == btf.Char {
			sb.WriteString(strconv.Quote(strings.TrimRight(string(b), "\x00")))
			return
		}
		sb.WriteByte('[')
		for i := 0; i+es <= len(b); i += es {
			if i > 0 {
				sb.WriteString(", ")
			}
			format(sb, v.Type, b[i:i+es], depth+1)
		}
		sb.WriteByte(']')
	case *btf.Struct:
		formatMembers(sb, v.Members, b, depth)
	case *btf.Union:
		formatMembers(sb, v.Members, b, depth)
	default:
		sb.WriteString(fmt.Sprintf("0x%x", b))
	}
}

func formatMembers(sb *strings.Builder, members []btf.Member, b []byte, depth int) {
	sb.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			sb.WriteString(", ")
		}
		name := m.Name
		if name == "" {
			name = "_"
		}
		sb.WriteString(name)
		sb.WriteString(": ")
		off := int(m.Offset.Bytes())
		ms, err := btf.Sizeof(m.Type)
		if err != nil || m.BitfieldSize != 0 || m.Offset%8 != 0 || off+ms > len(b) {
			sb.WriteString("?")
			continue
		}
		format(sb, m.Type, b[off:off+ms], depth+1)
	}
	sb.WriteByte('}')
}

func formatInt(sb *strings.Builder, v *btf.Int, b []byte) {
	switch {
	case v.Encoding == btf.Bool:
		sb.WriteString(strconv.FormatBool(readUint(b) != 0))
	case v.Encoding == btf.Char && len(b) == 1:
		sb.WriteString(strconv.QuoteRune(rune(b[0])))
	case v.Encoding == btf.Signed:
		n := readUint(b)
		shift := 64 - 8*uint(len(b))
		sb.WriteString(strconv.FormatInt(int64(n<<shift)>>shift, 10))
	default:
		sb.WriteString(strconv.FormatUint(readUint(b), 10))
	}
}

// readUint reads up to 8 little-endian bytes.
func readUint(b []byte) uint64 {
	var n uint64
	for i := len(b) - 1; i >= 0 && i < 8; i-- {
		n = n<<8 | uint64(b[i])
	}
	return n
}
