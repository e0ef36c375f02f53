package jcs

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestNumbersRFC8785AppendixB: every sample of RFC 8785 Appendix B (IEEE
// 754 bit pattern → canonical text).
func TestNumbersRFC8785AppendixB(t *testing.T) {
	cases := []struct {
		bits uint64
		want string
	}{
		{0x0000000000000000, "0"},
		{0x8000000000000000, "0"},
		{0x0000000000000001, "5e-324"},
		{0x8000000000000001, "-5e-324"},
		{0x7fefffffffffffff, "1.7976931348623157e+308"},
		{0xffefffffffffffff, "-1.7976931348623157e+308"},
		{0x4340000000000000, "9007199254740992"},
		{0xc340000000000000, "-9007199254740992"},
		{0x4430000000000000, "295147905179352830000"},
		{0x44b52d02c7e14af5, "9.999999999999997e+22"},
		{0x44b52d02c7e14af6, "1e+23"},
		{0x44b52d02c7e14af7, "1.0000000000000001e+23"},
		{0x444b1ae4d6e2ef4e, "999999999999999700000"},
		{0x444b1ae4d6e2ef4f, "999999999999999900000"},
		{0x444b1ae4d6e2ef50, "1e+21"},
		{0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"},
		{0x3eb0c6f7a0b5ed8d, "0.000001"},
		{0x41b3de4355555553, "333333333.3333332"},
		{0x41b3de4355555554, "333333333.33333325"},
		{0x41b3de4355555555, "333333333.3333333"},
		{0x41b3de4355555556, "333333333.3333334"},
		{0x41b3de4355555557, "333333333.33333343"},
		{0xbecbf647612f3696, "-0.0000033333333333333333"},
		{0x43143ff3c1cb0959, "1424953923781206.2"},
	}
	for _, c := range cases {
		f := math.Float64frombits(c.bits)
		// From Go's own spelling of the number.
		raw, err := json.Marshal(f)
		require.NoError(t, err)
		got, err := Transform(raw)
		require.NoError(t, err)
		require.Equal(t, c.want, string(got), "%#016x via Transform", c.bits)
	}
}

// TestRFC8785Examples: the worked examples of §3.2.2 (mixed value) and
// §3.2.3 (member sorting by UTF-16 code units).
func TestRFC8785Examples(t *testing.T) {
	cases := map[string]struct{ in, want string }{
		"3.2.2 values": {
			in: `{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}`,
			want: `{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`,
		},
		"3.2.3 sorting": {
			in: `{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}`,
			want: "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"ö\":\"Latin Small Letter O With Diaeresis\",\"€\":\"Euro Sign\",\"😀\":\"Emoji: Grinning Face\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}",
		},
		"nested and escapes": {
			in:   "{\"b\":[1.0,{\"z\":\"<&>\u2028\",\"a\":\"\\u001f\\b\\t\\f\"}],\"a\":-0.0}",
			want: "{\"a\":0,\"b\":[1,{\"a\":\"\\u001f\\b\\t\\f\",\"z\":\"<&>\u2028\"}]}",
		},
	}
	for name, c := range cases {
		got, err := Transform([]byte(c.in))
		require.NoError(t, err, name)
		require.Equal(t, c.want, string(got), name)
		again, err := Transform(got)
		require.NoError(t, err, name)
		require.Equal(t, string(got), string(again), "%s: canonical text is a fixed point", name)
	}
}

// TestMarshalIgnoresGoFieldOrder: a struct and the map decoded from it
// canonicalize to the same bytes (the defect that broke audit chains).
func TestMarshalIgnoresGoFieldOrder(t *testing.T) {
	type usage struct {
		Output int     `json:"output_tokens"`
		Input  int     `json:"input_tokens"`
		Cost   float64 `json:"cost_usd"`
	}
	a, err := Marshal(map[string]any{"usage": usage{Output: 2, Input: 1, Cost: 0.1}})
	require.NoError(t, err)
	b, err := Marshal(map[string]any{"usage": map[string]any{"input_tokens": 1.0, "cost_usd": 0.1, "output_tokens": json.Number("2.0")}})
	require.NoError(t, err)
	require.Equal(t, string(a), string(b))
	require.Equal(t, `{"usage":{"cost_usd":0.1,"input_tokens":1,"output_tokens":2}}`, string(a))
}

func TestTransformRefusesNonIJSON(t *testing.T) {
	for name, in := range map[string]string{
		"duplicate name":        `{"a":1,"a":2}`,
		"nested duplicate":      `[{"x":{"b":1,"b":1}}]`,
		"number out of range":   `1e400`,
		"NaN":                   `NaN`,
		"lone high surrogate":   `"\ud800x"`,
		"lone low surrogate":    `"\udc00"`,
		"invalid UTF-8":         "\"\xff\"",
		"trailing data":         `{} {}`,
		"not JSON":              `{a:1}`,
		"truncated":             `[1,`,
		"high then non-low esc": `"\ud800\u0041"`,
	} {
		_, err := Transform([]byte(in))
		require.Error(t, err, name)
	}
	// Same names in different objects, and a valid surrogate pair, are fine.
	got, err := Transform([]byte(`[{"a":1},{"a":2},"\ud83d\ude00\\u"]`))
	require.NoError(t, err)
	require.Equal(t, `[{"a":1},{"a":2},"😀\\u"]`, string(got))
}

func TestTransformWithout(t *testing.T) {
	got, err := TransformWithout([]byte(`{"z":1, "hash":"x", "d":{"hash":"kept"}, "a":[1.0]}`), "hash")
	require.NoError(t, err)
	require.Equal(t, `{"a":[1],"d":{"hash":"kept"},"z":1}`, string(got))
	got, err = TransformWithout([]byte(`{"h\u0061sh":1,"b":2,"a":1}`), "hash")
	require.NoError(t, err)
	require.Equal(t, `{"a":1,"b":2}`, string(got))
	for _, in := range []string{`[1]`, `{"a":1,"a":2}`, `{"a":1} {}`, `{"a":`, `{"x":-1e400}`} {
		_, err := TransformWithout([]byte(in), "hash")
		require.Error(t, err, in)
	}
}

// FuzzTransform: whatever Transform accepts, its output is valid JSON with
// the same meaning, and a fixed point.
func FuzzTransform(f *testing.F) {
	for _, s := range []string{`{"b":1,"a":[true,null,"x"]}`, `1e21`, `-0.0000033`, `"\u20ac\ud83d\ude00"`, `{"a":{"a":{}}}`, `[1.5e-7,2e+300]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := Transform(in)
		if err != nil {
			return
		}
		again, err := Transform(out)
		if err != nil {
			t.Fatalf("canonical output %q refused: %v", out, err)
		}
		if string(again) != string(out) {
			t.Fatalf("not a fixed point: %q -> %q", out, again)
		}
		var a, b any
		if json.Unmarshal(in, &a) != nil || json.Unmarshal(out, &b) != nil {
			t.Fatalf("output %q of %q does not decode", out, in)
		}
		require.Equal(t, a, b)
	})
}
