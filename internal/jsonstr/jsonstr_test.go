package jsonstr

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestAppendLimited(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
		cut  bool
	}{
		{"abc", 3, `"abc"`, false},
		{"abcd", 3, `"abc"`, true},
		{"a\x00b", 7, `"a\u0000"`, true},
		{"a\x00b", 8, `"a\u0000b"`, false},
		{"é世", 4, `"é"`, true},
		{"", 0, `""`, false},
		{"\xff", 5, `""`, true},
	} {
		got, cut := AppendLimited([]byte("x"), tc.in, tc.max)
		if string(got) != "x"+tc.want || cut != tc.cut {
			t.Errorf("AppendLimited(%q, %d) = %s, %v; want x%s, %v", tc.in, tc.max, got, cut, tc.want, tc.cut)
		}
		if !json.Valid(got[1:]) || len(got)-3 > tc.max {
			t.Errorf("AppendLimited(%q, %d) = %s: invalid or too long", tc.in, tc.max, got)
		}
		if full := string(Append(nil, tc.in)); !tc.cut && full != tc.want || tc.cut && !strings.HasPrefix(full, strings.TrimSuffix(tc.want, `"`)) {
			t.Errorf("AppendLimited(%q) = %s is not a prefix of Append's %s", tc.in, tc.want, full)
		}
	}
}
