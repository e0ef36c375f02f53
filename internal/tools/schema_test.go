package tools_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/tools"
)

const testSchema = `{
  "type": "object",
  "properties": {
    "text":    {"type": "string", "minLength": 1, "maxLength": 5, "description": "ignored keyword"},
    "count":   {"type": "integer", "minimum": 0, "maximum": 10},
    "ratio":   {"type": "number"},
    "flag":    {"type": "boolean"},
    "mode":    {"type": "string", "enum": ["a", "b"]},
    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
    "tags":    {"type": "array", "items": {"type": "string"}},
    "any":     {},
    "maybe":   {"type": ["string", "null"]},
    "strict":  {"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": false}
  },
  "required": ["text"]
}`

func TestValidateInput(t *testing.T) {
	t.Parallel()
	ok := []string{
		`{"text":"hi"}`,
		`{"text":"héllo"}`,
		`{"text":"hi","count":3,"ratio":1.5,"flag":true,"mode":"b","headers":{"A":"x"},"tags":["a"],"any":[1,{}],"maybe":null,"strict":{"x":"y"}}`,
		`{"text":"hi","ratio":2,"count":1e1}`,
		`{"text":"hi","unknown":{"ignored":true}}`,
	}
	for _, in := range ok {
		require.NoError(t, tools.ValidateInput(json.RawMessage(testSchema), json.RawMessage(in)), in)
	}
	bad := map[string]string{
		`{}`:                               "text",
		``:                                 "text",
		`null`:                             "text",
		`[]`:                               "input",
		`"str"`:                            "input",
		`{"text":1}`:                       "text",
		`{"text":""}`:                      "text",
		`{"text":"toolong"}`:               "text",
		`{"text":"hi","count":1.5}`:        "count",
		`{"text":"hi","count":-1}`:         "count",
		`{"text":"hi","count":11}`:         "count",
		`{"text":"hi","ratio":"1"}`:        "ratio",
		`{"text":"hi","flag":"true"}`:      "flag",
		`{"text":"hi","mode":"c"}`:         "mode",
		`{"text":"hi","headers":{"A":1}}`:  "headers.A",
		`{"text":"hi","tags":["a",2]}`:     "tags[1]",
		`{"text":"hi","maybe":3}`:          "maybe",
		`{"text":"hi","strict":{"y":"z"}}`: "strict.y",
		`{"text":"hi"`:                     "input",
		`{"text":"hi"} {}`:                 "input",
		`{"text":"hi"}]`:                   "input",
	}
	for in, field := range bad {
		err := tools.ValidateInput(json.RawMessage(testSchema), json.RawMessage(in))
		require.ErrorIs(t, err, errs.ErrInvalid, in)
		require.Equal(t, field, errs.As(err).Details["field"], in)
	}
}

func TestValidateInputMalformedSchemaIsInternal(t *testing.T) {
	t.Parallel()
	err := tools.ValidateInput(json.RawMessage(`{"type":1}`), json.RawMessage(`{}`))
	require.Equal(t, errs.Internal, errs.CodeOf(err))
}

func TestDecodeInput(t *testing.T) {
	t.Parallel()
	var dst struct {
		Text  string `json:"text"`
		Count int    `json:"count"`
	}
	require.NoError(t, tools.DecodeInput(json.RawMessage(testSchema), json.RawMessage(`{"text":"hi","count":2}`), &dst))
	require.Equal(t, "hi", dst.Text)
	require.Equal(t, 2, dst.Count)

	// A type the schema allows but the destination cannot hold still names the field.
	var narrow struct {
		Count uint8 `json:"count"`
	}
	err := tools.DecodeInput(json.RawMessage(`{"type":"object","properties":{"count":{"type":"integer"}}}`),
		json.RawMessage(`{"count":1000}`), &narrow)
	require.ErrorIs(t, err, errs.ErrInvalid)
	require.Equal(t, "count", errs.As(err).Details["field"])
}

func FuzzValidateInput(f *testing.F) {
	f.Add(testSchema, `{"text":"hi","tags":["a"]}`)
	f.Add(`{"type":"object","properties":{"a":{"type":["integer","null"],"enum":[1,null]}}}`, `{"a":1}`)
	f.Add(`{"type":"object","additionalProperties":{"type":"array","items":{"type":"object"}}}`, `{"x":[{}]}`)
	f.Fuzz(func(t *testing.T, schema, input string) {
		err := tools.ValidateInput(json.RawMessage(schema), json.RawMessage(input))
		if err == nil {
			return
		}
		var e *errs.Error
		require.ErrorAs(t, err, &e)
		if tools.CheckSchema(json.RawMessage(schema)) == nil {
			require.Equal(t, errs.InvalidRequest, e.Code, "a valid schema only rejects input: %v", err)
			require.NotEmpty(t, e.Details["field"])
		}
	})
}
