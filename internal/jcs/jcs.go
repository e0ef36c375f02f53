// Package jcs produces the JSON Canonicalization Scheme of RFC 8785: one
// byte sequence for every JSON value, so that a hash over those bytes does
// not depend on who encoded the value (key order, number spelling, string
// escapes, whitespace).
//
// The canonicalization itself is the standard library's
// (encoding/json/jsontext Value.Canonicalize, RFC 8785: members sorted by
// UTF-16 code units, numbers as IEEE 754 doubles in ECMAScript form,
// minimal string escapes, no whitespace); this package fixes the options,
// refuses what I-JSON (RFC 7493) forbids (invalid UTF-8, lone surrogates,
// duplicate member names, numbers beyond a double, which Canonicalize would
// clamp) and adds what the audit
// chain needs: dropping a top-level member before canonicalizing. Its tests
// hold the result to the RFC's own examples.
package jcs

import (
	"bytes"
	"encoding/json"
	"encoding/json/jsontext"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Transform returns the canonical form of the JSON text in. It fails on
// input that is not one valid I-JSON value.
func Transform(in []byte) ([]byte, error) {
	v := jsontext.Value(bytes.Clone(in))
	// The defaults refuse invalid UTF-8, lone surrogate escapes and
	// duplicate names.
	if err := v.Canonicalize(); err != nil {
		return nil, fmt.Errorf("jcs: %w", err)
	}
	// Canonicalize clamps a number beyond a double to the largest double;
	// I-JSON refuses it. Only then does that literal appear, so the exact
	// (slower) check runs only when it does.
	if bytes.Contains(v, []byte(maxDouble)) {
		if err := checkNumberRange(in); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// maxDouble is math.MaxFloat64 as Canonicalize writes it (without sign).
const maxDouble = "1.7976931348623157e+308"

// checkNumberRange refuses a number literal whose magnitude is beyond the
// largest double.
func checkNumberRange(in []byte) error {
	dec := jsontext.NewDecoder(bytes.NewReader(in))
	for {
		tok, err := dec.ReadToken()
		if err != nil {
			return nil // end of input (syntax was checked by Canonicalize)
		}
		if tok.Kind() != '0' {
			continue
		}
		lit := tok.String()
		if f, err := strconv.ParseFloat(lit, 64); err != nil && math.IsInf(f, 0) {
			return fmt.Errorf("jcs: number %s is outside the range of a double", lit)
		}
	}
}

// Marshal encodes v with encoding/json and returns the canonical form.
func Marshal(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("jcs: %w", err)
	}
	return Transform(raw)
}

// TransformWithout is Transform of a JSON object without its top-level
// member named name (absent is fine; nested members of that name stay).
func TransformWithout(obj []byte, name string) ([]byte, error) {
	// One pass over the top level, copying the other members' raw bytes;
	// Transform then checks and canonicalizes everything (duplicate names
	// included, so the pass need not track them).
	dec := jsontext.NewDecoder(bytes.NewReader(obj), jsontext.AllowDuplicateNames(true))
	tok, err := dec.ReadToken()
	if err != nil {
		return nil, fmt.Errorf("jcs: %w", err)
	}
	if tok.Kind() != '{' {
		return nil, errors.New("jcs: not a JSON object")
	}
	out := make([]byte, 0, len(obj))
	out = append(out, '{')
	for dec.PeekKind() != '}' {
		k, err := dec.ReadValue() // the quoted name
		if err != nil {
			return nil, fmt.Errorf("jcs: %w", err)
		}
		drop := string(k) == `"`+name+`"`
		if !drop && bytes.IndexByte(k, '\\') >= 0 { // an escaped spelling of the name
			u, err := jsontext.AppendUnquote(nil, k)
			if err != nil {
				return nil, fmt.Errorf("jcs: %w", err)
			}
			drop = string(u) == name
		}
		if !drop {
			if len(out) > 1 {
				out = append(out, ',')
			}
			out = append(append(out, k...), ':')
		}
		v, err := dec.ReadValue()
		if err != nil {
			return nil, fmt.Errorf("jcs: %w", err)
		}
		if !drop {
			out = append(out, v...)
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, fmt.Errorf("jcs: %w", err)
	}
	if _, err := dec.ReadToken(); err == nil {
		return nil, errors.New("jcs: trailing data after the JSON object")
	}
	return Transform(append(out, '}'))
}
