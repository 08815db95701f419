// Package jsonstr writes JSON strings that are valid, and safe to print,
// whatever bytes they hold. It is the one escaping that every JSON bpfmon
// writes goes through: the event writers (internal/output) and the values
// rendered by type (internal/btffmt).
package jsonstr

import "unicode/utf8"

const hexDigits = "0123456789abcdef"

// Append appends s as a JSON string that is valid, and safe to
// print, whatever bytes s holds:
//
//   - '"' and '\' are backslash-escaped;
//   - bytes below 0x20 and DEL (0x7f) become \n, \r, \t or \u00XX;
//   - C1 controls (U+0080..U+009F, which some terminals obey like ESC
//     sequences) and U+2028/U+2029 (line breaks to JavaScript) become \uXXXX;
//   - each byte that is not part of valid UTF-8 becomes \ufffd, the
//     replacement character, as encoding/json does. The original byte is
//     lost; the alternative, \u00XX, would be indistinguishable from the
//     valid character U+00XX and so would let a process forge names.
//
// Everything else, including all other non-ASCII text, is copied as is.
func Append(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r < 0xa0, r == '\u2028', r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u',
				hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// AppendLimited is Append, stopping before the escaped string would exceed
// max bytes (quotes not counted) and reporting whether it stopped early.
// A rune is never split: the string written is a valid JSON string, a
// prefix of what Append writes.
func AppendLimited(dst []byte, s string, max int) ([]byte, bool) {
	dst = append(dst, '"')
	start := len(dst)
	for i := 0; i < len(s); {
		_, size := utf8.DecodeRuneInString(s[i:])
		mark := len(dst)
		dst = Append(dst, s[i:i+size])
		// Append quoted the rune: drop its quotes.
		esc := dst[mark+1 : len(dst)-1]
		dst = append(dst[:mark], esc...)
		if len(dst)-start > max {
			return append(dst[:mark], '"'), true
		}
		i += size
	}
	return append(dst, '"'), false
}
