// Package jcs implements the JSON Canonicalization Scheme of RFC 8785: one
// byte sequence for every JSON value, so that a hash over those bytes does
// not depend on who encoded the value (key order, number spelling, string
// escapes, whitespace).
//
// Transform parses JSON text and writes it canonically:
//   - object members sorted by their names' UTF-16 code units (RFC 8785
//     §3.2.3), no whitespace;
//   - numbers as IEEE 754 doubles serialized the ECMAScript way (§3.2.2.3):
//     shortest round-trip digits, plain notation for 1e-6 <= |x| < 1e21,
//     exponent notation ("1e+21", "1e-7") otherwise, -0 as 0;
//   - strings with only '"', '\\' and the control characters escaped, the
//     latter as \b \t \n \f \r or \u00xx (§3.2.2.2); everything else is
//     written as UTF-8.
//
// Input that I-JSON (RFC 7493) forbids is refused: invalid UTF-8, duplicate
// member names, numbers outside the range of a double, lone surrogates.
package jcs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Transform returns the canonical form of the JSON text in. It fails on
// input that is not one valid I-JSON value.
func Transform(in []byte) ([]byte, error) {
	if !utf8.Valid(in) {
		return nil, errors.New("jcs: input is not valid UTF-8")
	}
	if !json.Valid(in) { // also refuses trailing data, which a Decoder leaves unread
		return nil, errors.New("jcs: input is not one valid JSON value")
	}
	dec := json.NewDecoder(bytes.NewReader(in))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("jcs: %w", err)
	}
	// encoding/json keeps the last of duplicate names and turns a lone
	// surrogate escape into U+FFFD; I-JSON forbids both.
	if err := checkDuplicates(in); err != nil {
		return nil, err
	}
	if err := checkSurrogates(in); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := encode(&b, v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Marshal encodes v with encoding/json and returns the canonical form.
func Marshal(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("jcs: %w", err)
	}
	return Transform(raw)
}

func encode(b *bytes.Buffer, v any) error {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return fmt.Errorf("jcs: number %s is outside the range of a double", x)
		}
		b.WriteString(FormatNumber(f))
	case string:
		return encodeString(b, x)
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := encode(b, e); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, compareUTF16)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := encodeString(b, k); err != nil {
				return err
			}
			b.WriteByte(':')
			if err := encode(b, x[k]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	default:
		return fmt.Errorf("jcs: unexpected value of type %T", v)
	}
	return nil
}

// compareUTF16 orders strings by their UTF-16 code units, as RFC 8785
// requires (it differs from byte order for characters above U+FFFF versus
// U+E000..U+FFFF).
func compareUTF16(a, b string) int {
	ua, ub := utf16.Encode([]rune(a)), utf16.Encode([]rune(b))
	return slices.Compare(ua, ub)
}

const hexDigits = "0123456789abcdef"

func encodeString(b *bytes.Buffer, s string) error {
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r < 0x20:
			switch r {
			case '\b':
				b.WriteString(`\b`)
			case '\t':
				b.WriteString(`\t`)
			case '\n':
				b.WriteString(`\n`)
			case '\f':
				b.WriteString(`\f`)
			case '\r':
				b.WriteString(`\r`)
			default:
				b.WriteString(`\u00`)
				b.WriteByte(hexDigits[r>>4])
				b.WriteByte(hexDigits[r&0xf])
			}
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return nil
}

// FormatNumber serializes f as ECMAScript's Number.prototype.toString does
// (ECMA-262 §7.1.12.1, which RFC 8785 §3.2.2.3 adopts). f must be finite.
func FormatNumber(f float64) string {
	if f == 0 {
		return "0" // also -0
	}
	neg := f < 0
	if neg {
		f = -f
	}
	// Shortest digits that round-trip, as d.ddddde±x.
	e := strconv.FormatFloat(f, 'e', -1, 64)
	mant, expStr, _ := strings.Cut(e, "e")
	digits := strings.Replace(mant, ".", "", 1)
	exp, _ := strconv.Atoi(expStr)
	k := len(digits) // number of significant digits
	n := exp + 1     // position of the decimal point relative to the digits
	var s string
	switch {
	case k <= n && n <= 21:
		s = digits + strings.Repeat("0", n-k)
	case 0 < n && n <= 21:
		s = digits[:n] + "." + digits[n:]
	case -6 < n && n <= 0:
		s = "0." + strings.Repeat("0", -n) + digits
	default:
		sign := "+"
		if n-1 < 0 {
			sign = "-"
		}
		ex := n - 1
		if ex < 0 {
			ex = -ex
		}
		if k == 1 {
			s = digits + "e" + sign + strconv.Itoa(ex)
		} else {
			s = digits[:1] + "." + digits[1:] + "e" + sign + strconv.Itoa(ex)
		}
	}
	if neg {
		return "-" + s
	}
	return s
}

// checkDuplicates walks the token stream and refuses an object with two
// members of the same name.
func checkDuplicates(in []byte) error {
	dec := json.NewDecoder(bytes.NewReader(in))
	dec.UseNumber()
	type frame struct {
		obj    bool
		expKey bool
		names  map[string]bool
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // end of input (errors were reported by Decode)
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.obj && top.expKey {
			if name, ok := tok.(string); ok {
				if top.names[name] {
					return fmt.Errorf("jcs: duplicate member name %q", name)
				}
				top.names[name] = true
				top.expKey = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{obj: true, expKey: true, names: map[string]bool{}})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		// A complete value ended: the enclosing object expects a name next.
		if len(stack) > 0 && stack[len(stack)-1].obj {
			stack[len(stack)-1].expKey = true
		}
	}
}

// checkSurrogates refuses a \uXXXX escape of a surrogate that is not part
// of a high+low pair. in is valid JSON, so a backslash only occurs inside a
// string and always starts an escape.
func checkSurrogates(in []byte) error {
	esc := func(i int) (rune, bool) {
		if i+6 > len(in) || in[i] != '\\' || in[i+1] != 'u' {
			return 0, false
		}
		v, err := strconv.ParseUint(string(in[i+2:i+6]), 16, 16)
		return rune(v), err == nil
	}
	for i := 0; i < len(in); i++ {
		if in[i] != '\\' {
			continue
		}
		r, ok := esc(i)
		if !ok {
			i++ // a two-character escape such as \\ or \"
			continue
		}
		switch {
		case utf16.IsSurrogate(r) && r < 0xDC00:
			lo, ok := esc(i + 6)
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return fmt.Errorf("jcs: lone high surrogate \\u%04x", r)
			}
			i += 11
		case utf16.IsSurrogate(r):
			return fmt.Errorf("jcs: lone low surrogate \\u%04x", r)
		default:
			i += 5
		}
	}
	return nil
}
