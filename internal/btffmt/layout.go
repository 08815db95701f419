package btffmt

import (
	"math"
	"strconv"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf/btf"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/jsonstr"
)

// A Layout renders the bytes of one type, for `watch` events: the type
// walked once, when a map's types are first needed (Compile), into what
// rendering needs, so that an event costs a walk of the bytes and nothing
// else. It implements event.Renderer: immutable, safe for concurrent use,
// and rendering allocates nothing.
//
// Whatever the BTF and the bytes, rendering never panics and its result is
// one valid JSON value (AppendJSON) or one line of safe text (AppendText):
// at most MaxRendered bytes and a few closing brackets, cut short and
// marked so beyond that.
type Layout struct {
	root  *node
	bytes int // estimated memory held (MaxLayoutBytes)
}

// MaxRendered bounds what one rendering appends (the closing brackets of a
// cut rendering excepted, at most maxDepth of them).
const MaxRendered = 4096

// maxNodes bounds the nodes a Layout may hold: a hostile BTF (a struct of
// 65,535 members, each a struct) has no Layout.
const maxNodes = 1024

// MaxLayoutBytes bounds the memory a Layout may hold: names are not
// nodes, and a struct of 65,535 members or an enum of as many values,
// each named with hundreds of bytes, would hold tens of MiB. Past it the
// type has no Layout: its bytes are rendered as hex.
const MaxLayoutBytes = 64 << 10

// Estimated memory of a node, a member and an enum value beyond their
// names.
const (
	nodeBytes   = 96
	memberBytes = 128
	enumBytes   = 48
)

type kind uint8

const (
	kindHex    kind = iota // bytes with no better reading: "0x..."
	kindUint               // integers, little-endian, up to 8 bytes
	kindInt                // signed
	kindBool               //
	kindChar               // one char: a one-character string
	kindEnum               // a name where a value has one
	kindPtr                // an address, in hex
	kindFloat              // 4 or 8 bytes
	kindString             // an array of char: the string, trailing NULs trimmed
	kindArray              // elements of elem
	kindStruct             // members (struct, union, datasec)
)

type node struct {
	kind    kind
	size    int
	signed  bool // kindEnum
	enum    []enumValue
	elem    *node // kindArray
	n       int   // kindArray: elements
	members []member
	// deep: the type is nested past maxDepth, so its bytes are shown in
	// hex, and a rendering that reaches it is cut (RenderedCut).
	deep bool
}

type enumValue struct {
	value      uint64
	json, text string // the name, as a JSON string and for text
}

type member struct {
	jsonKey string // `"name":`
	textKey string // `name=`
	node    *node  // nil: not renderable (JSON null, text ?)
	off     int    // bytes
	// A bitfield: bits wide, from bit bitOff of the member's bytes
	// (off..off+size).
	bits, bitOff int
}

// Compile makes the Layout of t, or nil when t cannot be rendered at all
// (no size, too many members to walk).
func Compile(t btf.Type) *Layout {
	if t == nil {
		return nil
	}
	c := compiler{memo: map[btf.Type]*node{}, open: map[btf.Type]bool{}}
	n := c.node(t, 0)
	if n == nil || c.nodes > maxNodes || c.bytes > MaxLayoutBytes {
		return nil
	}
	return &Layout{root: n, bytes: c.bytes}
}

type compiler struct {
	memo  map[btf.Type]*node // types compiled, shared where a type recurs
	open  map[btf.Type]bool  // types being compiled: one inside itself is not renderable
	nodes int
	bytes int // estimated memory of the nodes so far
}

func (c *compiler) node(t btf.Type, depth int) *node {
	t = btf.UnderlyingType(t)
	if n, ok := c.memo[t]; ok {
		return n
	}
	if c.open[t] {
		return nil // the kernel refuses such BTF; bpfmon does not rely on it
	}
	c.nodes++
	c.bytes += nodeBytes
	if c.nodes > maxNodes || c.bytes > MaxLayoutBytes {
		return nil
	}
	size, err := btf.Sizeof(t)
	if err != nil || size <= 0 || size > math.MaxInt32 {
		return nil
	}
	n := &node{kind: kindHex, size: size}
	if depth > maxDepth {
		n.deep = true
		return n
	}
	c.open[t] = true
	defer func() { c.open[t] = false; c.memo[t] = n }()
	switch v := t.(type) {
	case *btf.Int:
		switch {
		case size > 8:
		case v.Encoding == btf.Bool:
			n.kind = kindBool
		case v.Encoding == btf.Char && size == 1:
			n.kind = kindChar
		case v.Encoding == btf.Signed:
			n.kind = kindInt
		default:
			n.kind = kindUint
		}
	case *btf.Enum:
		if size <= 8 {
			n.kind, n.signed = kindEnum, v.Signed
			for _, val := range v.Values {
				if c.bytes += enumBytes + 2*(len(val.Name)+8); c.bytes > MaxLayoutBytes {
					return nil
				}
				n.enum = append(n.enum, enumValue{value: val.Value, json: string(jsonstr.Append(nil, val.Name)), text: textName(val.Name)})
			}
		}
	case *btf.Pointer:
		if size <= 8 {
			n.kind = kindPtr
		}
	case *btf.Float:
		if size == 4 || size == 8 {
			n.kind = kindFloat
		}
	case *btf.Array:
		elem := c.node(v.Type, depth+1)
		if elem == nil || elem.size == 0 || int(v.Nelems)*elem.size != size {
			return n
		}
		if elem.kind == kindChar {
			n.kind = kindString
			return n
		}
		n.kind, n.elem, n.n = kindArray, elem, int(v.Nelems)
	case *btf.Struct:
		c.members(n, v.Members, depth)
	case *btf.Union:
		c.members(n, v.Members, depth)
	case *btf.Datasec:
		n.kind = kindStruct
		for _, vs := range v.Vars {
			m := member{off: int(vs.Offset)}
			name := "_"
			var vt btf.Type = vs.Type
			if vr, ok := vs.Type.(*btf.Var); ok {
				name, vt = vr.Name, vr.Type
			}
			if c.bytes += memberBytes + 2*(len(name)+8); c.bytes > MaxLayoutBytes {
				return nil
			}
			m.jsonKey, m.textKey = string(jsonstr.Append(nil, name))+":", textName(name)+"="
			if mn := c.node(vt, depth+1); mn != nil && mn.size == int(vs.Size) && uint64(vs.Offset)+uint64(vs.Size) <= uint64(size) {
				m.node = mn
			}
			n.members = append(n.members, m)
		}
	}
	return n
}

func (c *compiler) members(n *node, members []btf.Member, depth int) {
	n.kind = kindStruct
	for _, bm := range members {
		name := bm.Name
		if name == "" {
			name = "_"
		}
		if c.bytes += memberBytes + 2*(len(name)+8); c.bytes > MaxLayoutBytes {
			return
		}
		m := member{jsonKey: string(jsonstr.Append(nil, name)) + ":", textKey: textName(name) + "="}
		mn := c.node(bm.Type, depth+1)
		off := uint64(bm.Offset)
		switch {
		case mn == nil:
		case bm.BitfieldSize == 0:
			if off%8 == 0 && off/8+uint64(mn.size) <= uint64(n.size) {
				m.node, m.off = mn, int(off/8)
			}
		default:
			// A bitfield: at most 64 bits of an integer or enum, read
			// from the bytes that hold them.
			bits := uint64(bm.BitfieldSize)
			first, shift := off/8, off%8
			width := (shift + bits + 7) / 8
			if bits <= 64 && width <= 8 && first+width <= uint64(n.size) && (mn.kind == kindUint || mn.kind == kindInt || mn.kind == kindBool || mn.kind == kindEnum) {
				m.node, m.off, m.bits, m.bitOff = mn, int(first), int(bits), int(shift)
			}
		}
		n.members = append(n.members, m)
	}
}

// textName is a name as the text format writes it: bare when it is an
// identifier, else quoted.
func textName(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return strconv.Quote(s)
		}
	}
	if s == "" {
		return `""`
	}
	return s
}

// Bytes is the estimated memory the Layout holds, at most MaxLayoutBytes.
func (l *Layout) Bytes() int {
	if l == nil {
		return 0
	}
	return l.bytes
}

// Size is the size of the bytes the Layout renders.
func (l *Layout) Size() int {
	if l == nil {
		return 0
	}
	return l.root.size
}

// AppendJSON appends b as one JSON value (event.Renderer).
func (l *Layout) AppendJSON(dst, b []byte) ([]byte, event.Rendered) {
	return l.render(dst, b, true)
}

// AppendText appends b for people (event.Renderer).
func (l *Layout) AppendText(dst, b []byte) ([]byte, event.Rendered) {
	return l.render(dst, b, false)
}

func (l *Layout) render(dst, b []byte, json bool) ([]byte, event.Rendered) {
	if l == nil || l.root == nil || len(b) != l.root.size {
		return dst, event.RenderFailed
	}
	r := renderer{dst: dst, limit: len(dst) + MaxRendered, json: json}
	r.value(l.root, b)
	if r.cut {
		return r.dst, event.RenderedCut
	}
	return r.dst, event.RenderedWhole
}

type renderer struct {
	dst   []byte
	limit int // len(dst) beyond which nothing more is begun
	json  bool
	cut   bool
}

// full reports whether the limit is reached, marking the rendering cut.
func (r *renderer) full() bool {
	if len(r.dst) >= r.limit {
		r.cut = true
	}
	return r.cut
}

// value renders b, which is n.size bytes.
func (r *renderer) value(n *node, b []byte) {
	switch n.kind {
	case kindString:
		s := strings.TrimRight(unsafe.String(unsafe.SliceData(b), len(b)), "\x00")
		room := max(r.limit-len(r.dst), 0)
		var cut bool
		if r.json {
			r.dst, cut = jsonstr.AppendLimited(r.dst, s, room)
		} else {
			r.dst, cut = appendQuoteLimited(r.dst, s, room)
		}
		r.cut = r.cut || cut
	case kindArray:
		r.dst = append(r.dst, '[')
		for i := 0; i < n.n; i++ {
			if r.full() {
				r.ellipsis(i > 0)
				break
			}
			if i > 0 {
				r.dst = append(r.dst, ',')
			}
			r.value(n.elem, b[i*n.elem.size:(i+1)*n.elem.size])
		}
		r.dst = append(r.dst, ']')
	case kindStruct:
		r.dst = append(r.dst, '{')
		for i := range n.members {
			if r.full() {
				r.ellipsis(i > 0)
				break
			}
			m := &n.members[i]
			if i > 0 {
				r.dst = append(r.dst, ',')
			}
			if r.json {
				r.dst = append(r.dst, m.jsonKey...)
			} else {
				r.dst = append(r.dst, m.textKey...)
			}
			switch {
			case m.node == nil:
				if r.json {
					r.dst = append(r.dst, "null"...)
				} else {
					r.dst = append(r.dst, '?')
				}
			case m.bits > 0:
				v := readUint(b[m.off:m.off+(m.bitOff+m.bits+7)/8]) >> m.bitOff
				if m.bits < 64 {
					v &= 1<<m.bits - 1
					if m.node.kind == kindInt && v&(1<<(m.bits-1)) != 0 {
						v |= ^uint64(0) << m.bits // sign-extend
					}
				}
				r.scalar(m.node, v, 8)
			default:
				r.value(m.node, b[m.off:m.off+m.node.size])
			}
		}
		r.dst = append(r.dst, '}')
	case kindHex:
		if n.deep {
			r.cut = true // the type said more than is shown
		}
		if r.json {
			r.dst = append(r.dst, '"')
		}
		r.dst = append(r.dst, "0x"...)
		if room := (r.limit - len(r.dst)) / 2; len(b) > room {
			b = b[:max(room, 0)]
			r.cut = true
		}
		for _, c := range b {
			r.dst = append(r.dst, hexDigits[c>>4], hexDigits[c&0xf])
		}
		if r.cut && !r.json {
			r.dst = append(r.dst, "…"...)
		}
		if r.json {
			r.dst = append(r.dst, '"')
		}
	default:
		r.scalar(n, readUint(b), len(b))
	}
}

// ellipsis marks, in text, where a cut rendering stopped.
func (r *renderer) ellipsis(comma bool) {
	if r.json {
		return
	}
	if comma {
		r.dst = append(r.dst, ',')
	}
	r.dst = append(r.dst, "…"...)
}

// scalar renders v, the value of an integer-like node of size bytes (8 for
// a sign-extended bitfield).
func (r *renderer) scalar(n *node, v uint64, size int) {
	switch n.kind {
	case kindUint:
		r.dst = strconv.AppendUint(r.dst, v, 10)
	case kindInt:
		r.dst = strconv.AppendInt(r.dst, signExtend(v, size), 10)
	case kindBool:
		r.dst = strconv.AppendBool(r.dst, v != 0)
	case kindChar:
		if r.json {
			c := byte(v)
			r.dst = jsonstr.Append(r.dst, unsafe.String(&c, 1))
		} else {
			r.dst = strconv.AppendQuoteRune(r.dst, rune(byte(v)))
		}
	case kindEnum:
		for i := range n.enum {
			e := &n.enum[i]
			if e.value == v || n.signed && e.value == uint64(signExtend(v, size)) {
				if r.json {
					r.dst = append(r.dst, e.json...)
				} else {
					r.dst = append(r.dst, e.text...)
				}
				return
			}
		}
		if n.signed {
			r.dst = strconv.AppendInt(r.dst, signExtend(v, size), 10)
		} else {
			r.dst = strconv.AppendUint(r.dst, v, 10)
		}
	case kindPtr:
		if r.json {
			r.dst = append(r.dst, '"')
		}
		r.dst = append(r.dst, "0x"...)
		r.dst = strconv.AppendUint(r.dst, v, 16)
		if r.json {
			r.dst = append(r.dst, '"')
		}
	case kindFloat:
		var f float64
		bits := 64
		if size == 4 {
			f, bits = float64(math.Float32frombits(uint32(v))), 32
		} else {
			f = math.Float64frombits(v)
		}
		switch {
		case math.IsNaN(f) || math.IsInf(f, 0):
			// Not JSON numbers.
			if r.json {
				r.dst = append(r.dst, '"')
			}
			r.dst = strconv.AppendFloat(r.dst, f, 'g', -1, bits)
			if r.json {
				r.dst = append(r.dst, '"')
			}
		default:
			r.dst = strconv.AppendFloat(r.dst, f, 'g', -1, bits)
		}
	}
}

func signExtend(v uint64, size int) int64 {
	if size >= 8 {
		return int64(v)
	}
	shift := 64 - 8*uint(size)
	return int64(v<<shift) >> shift
}

const hexDigits = "0123456789abcdef"

// appendQuoteLimited is strconv.AppendQuote of at most the prefix of s
// whose quoting fits in max bytes, and whether s was cut ("…" then
// follows the closing quote).
func appendQuoteLimited(dst []byte, s string, max int) ([]byte, bool) {
	if len(s)*4+2 <= max { // \xNN is the longest quoting of a byte
		return strconv.AppendQuote(dst, s), false
	}
	start := len(dst)
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		size := 1
		for i+size < len(s) && s[i+size]&0xc0 == 0x80 && size < 4 {
			size++
		}
		mark := len(dst)
		q := strconv.AppendQuote(dst, s[i:i+size])
		dst = append(dst[:mark], q[mark+1:len(q)-1]...)
		if len(dst)-start+1 > max {
			return append(append(dst[:mark], '"'), "…"...), true
		}
		i += size
	}
	return append(dst, '"'), false
}
