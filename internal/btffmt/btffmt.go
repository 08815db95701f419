// Package btffmt renders map keys and values through the map's BTF, so
// that `bpfmon watch` and `bpfmon maps --dump` show {"pid":42,"enabled":true}
// (JSON) or {pid=42,enabled=true} (text) beside 2a00000001000000, where the
// map's creator supplied type information: Layouts (layout.go) render, a
// Cache (cache.go) keeps them per map.
package btffmt

import (
	"errors"

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

// readUint reads up to 8 little-endian bytes.
func readUint(b []byte) uint64 {
	var n uint64
	for i := len(b) - 1; i >= 0 && i < 8; i-- {
		n = n<<8 | uint64(b[i])
	}
	return n
}
