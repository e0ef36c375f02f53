package tools

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
)

// The input schema of a tool is a small subset of JSON Schema, enough to
// describe a tool to a model and to reject wrong input before the tool runs:
// type (one name or a list), properties, required, items,
// additionalProperties (boolean or schema), enum, minLength, maxLength,
// minimum and maximum. Other keywords (description, title, default,
// examples, ...) are accepted and ignored.

// schema is a compiled input schema.
type schema struct {
	types                []string
	properties           map[string]*schema
	required             []string
	items                *schema
	additional           *schema // nil: anything allowed
	noAdditional         bool    // additionalProperties: false
	enum                 []string
	minLength, maxLength int // -1: unset
	minimum, maximum     *float64
}

var jsonTypes = []string{"object", "array", "string", "number", "integer", "boolean", "null"}

// rawSchema is the wire form of a schema.
type rawSchema struct {
	Type                 json.RawMessage            `json:"type"`
	Properties           map[string]json.RawMessage `json:"properties"`
	Required             []string                   `json:"required"`
	Items                json.RawMessage            `json:"items"`
	AdditionalProperties json.RawMessage            `json:"additionalProperties"`
	Enum                 []json.RawMessage          `json:"enum"`
	MinLength            *int                       `json:"minLength"`
	MaxLength            *int                       `json:"maxLength"`
	Minimum              *float64                   `json:"minimum"`
	Maximum              *float64                   `json:"maximum"`
}

// maxSchemaDepth bounds nesting so a hostile schema cannot exhaust the stack.
const maxSchemaDepth = 32

func compileSchema(raw json.RawMessage, depth int) (*schema, error) {
	if depth > maxSchemaDepth {
		return nil, errors.New("schema nests too deeply")
	}
	var r rawSchema
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("not a JSON schema object: %v", err)
	}
	if err := noTrailing(raw, dec); err != nil {
		return nil, err
	}
	s := &schema{minLength: -1, maxLength: -1, minimum: r.Minimum, maximum: r.Maximum, required: r.Required}
	if len(r.Type) > 0 && string(r.Type) != "null" {
		var one string
		if err := json.Unmarshal(r.Type, &one); err == nil {
			s.types = []string{one}
		} else if err := json.Unmarshal(r.Type, &s.types); err != nil {
			return nil, errors.New("type must be a string or a list of strings")
		}
		for _, t := range s.types {
			if !slices.Contains(jsonTypes, t) {
				return nil, fmt.Errorf("unknown type %q", t)
			}
		}
	}
	if len(r.Properties) > 0 {
		s.properties = make(map[string]*schema, len(r.Properties))
		for name, p := range r.Properties {
			ps, err := compileSchema(p, depth+1)
			if err != nil {
				return nil, fmt.Errorf("properties.%s: %v", name, err)
			}
			s.properties[name] = ps
		}
	}
	if len(r.Items) > 0 && string(r.Items) != "null" {
		is, err := compileSchema(r.Items, depth+1)
		if err != nil {
			return nil, fmt.Errorf("items: %v", err)
		}
		s.items = is
	}
	switch ap := strings.TrimSpace(string(r.AdditionalProperties)); ap {
	case "", "null", "true":
	case "false":
		s.noAdditional = true
	default:
		as, err := compileSchema(r.AdditionalProperties, depth+1)
		if err != nil {
			return nil, fmt.Errorf("additionalProperties: %v", err)
		}
		s.additional = as
	}
	for _, e := range r.Enum {
		var v any
		if err := unmarshalNumber(e, &v); err != nil {
			return nil, fmt.Errorf("enum: %v", err)
		}
		s.enum = append(s.enum, canonical(v))
	}
	if r.MinLength != nil {
		if *r.MinLength < 0 {
			return nil, errors.New("minLength must not be negative")
		}
		s.minLength = *r.MinLength
	}
	if r.MaxLength != nil {
		if *r.MaxLength < 0 {
			return nil, errors.New("maxLength must not be negative")
		}
		s.maxLength = *r.MaxLength
	}
	for _, name := range r.Required {
		if name == "" {
			return nil, errors.New("required lists an empty name")
		}
	}
	return s, nil
}

// CheckSchema reports whether raw is a well-formed input schema whose top
// level is {"type":"object", ...}. Its error names the offending keyword.
func CheckSchema(raw json.RawMessage) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		return errors.New("is required")
	}
	s, err := compileSchema(raw, 0)
	if err != nil {
		return err
	}
	if len(s.types) != 1 || s.types[0] != "object" {
		return errors.New(`top level must be {"type":"object"}`)
	}
	return nil
}

// ValidateInput checks input against the input schema schemaRaw. Empty
// input and JSON null count as {}. A violation is an invalid_request error
// naming the field (e.g. "url", "headers.Accept", "items[2]"); a malformed
// schema is an internal_error (a bug in the tool, not in the input).
func ValidateInput(schemaRaw, input json.RawMessage) error {
	s, err := compileSchema(schemaRaw, 0)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "tool input schema is malformed")
	}
	v, err := parseInput(input)
	if err != nil {
		return err
	}
	return s.validate("", v)
}

// DecodeInput validates input against schemaRaw (ValidateInput) and then
// decodes it into dst. Unknown fields are ignored (CONTRACT §2).
func DecodeInput(schemaRaw, input json.RawMessage, dst any) error {
	if err := ValidateInput(schemaRaw, input); err != nil {
		return err
	}
	if isEmptyInput(input) {
		input = json.RawMessage("{}")
	}
	if err := json.Unmarshal(input, dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return errs.Field(httpx.JSONFieldPath(te.Field), "must be %s, got %s", article(te.Type.Kind().String()), te.Value)
		}
		return errs.Field("input", "is not valid: %v", err)
	}
	return nil
}

func isEmptyInput(input json.RawMessage) bool {
	t := bytes.TrimSpace(input)
	return len(t) == 0 || string(t) == "null"
}

func parseInput(input json.RawMessage) (any, error) {
	if isEmptyInput(input) {
		return map[string]any{}, nil
	}
	var v any
	if err := unmarshalNumber(input, &v); err != nil {
		return nil, errs.Field("input", "is not valid JSON: %v", err)
	}
	return v, nil
}

func unmarshalNumber(data []byte, v *any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	return noTrailing(data, dec)
}

func noTrailing(data []byte, dec *json.Decoder) error {
	if len(bytes.TrimSpace(data[dec.InputOffset():])) > 0 {
		return errors.New("trailing data after JSON value")
	}
	return nil
}

func canonical(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func typeOf(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number:
		if isInteger(x) {
			return "integer"
		}
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return "unknown"
}

func isInteger(n json.Number) bool {
	f, err := strconv.ParseFloat(string(n), 64)
	return err == nil && !math.IsInf(f, 0) && f == math.Trunc(f)
}

func article(t string) string {
	switch t {
	case "object", "array", "integer":
		return "an " + t
	}
	return "a " + t
}

func fieldName(path string) string {
	if path == "" {
		return "input"
	}
	return path
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func (s *schema) validate(path string, v any) error {
	if len(s.types) > 0 {
		got := typeOf(v)
		ok := slices.Contains(s.types, got) || (got == "integer" && slices.Contains(s.types, "number"))
		if !ok {
			want := make([]string, len(s.types))
			for i, t := range s.types {
				want[i] = article(t)
			}
			return errs.Field(fieldName(path), "must be %s, got %s", strings.Join(want, " or "), got)
		}
	}
	if len(s.enum) > 0 && !slices.Contains(s.enum, canonical(v)) {
		return errs.Field(fieldName(path), "must be one of %s", strings.Join(s.enum, ", "))
	}
	switch x := v.(type) {
	case string:
		n := utf8.RuneCountInString(x)
		if s.minLength >= 0 && n < s.minLength {
			if s.minLength == 1 {
				return errs.Field(fieldName(path), "must not be empty")
			}
			return errs.Field(fieldName(path), "must be at least %d characters", s.minLength)
		}
		if s.maxLength >= 0 && n > s.maxLength {
			return errs.Field(fieldName(path), "must be at most %d characters", s.maxLength)
		}
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return errs.Field(fieldName(path), "is not a representable number")
		}
		if s.minimum != nil && f < *s.minimum {
			return errs.Field(fieldName(path), "must be at least %v", *s.minimum)
		}
		if s.maximum != nil && f > *s.maximum {
			return errs.Field(fieldName(path), "must be at most %v", *s.maximum)
		}
	case []any:
		if s.items != nil {
			for i, e := range x {
				if err := s.items.validate(fmt.Sprintf("%s[%d]", fieldName(path), i), e); err != nil {
					return err
				}
			}
		}
	case map[string]any:
		for _, name := range s.required {
			if _, ok := x[name]; !ok {
				return errs.Field(join(path, name), "is required")
			}
		}
		// Check properties in a stable order so the reported field is
		// deterministic.
		names := make([]string, 0, len(x))
		for name := range x {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			ps, ok := s.properties[name]
			switch {
			case ok:
			case s.noAdditional:
				return errs.Field(join(path, name), "is not a known field")
			case s.additional != nil:
				ps = s.additional
			default:
				continue
			}
			if err := ps.validate(join(path, name), x[name]); err != nil {
				return err
			}
		}
	}
	return nil
}
