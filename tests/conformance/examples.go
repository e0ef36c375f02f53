package conformance

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"gopkg.in/yaml.v3"
)

// ExampleIndexFile is the name of the file mapping examples to schemas.
const ExampleIndexFile = "index.yaml"

// ExampleEntry maps one example file to the schema it illustrates. Exactly
// one of Request, Status or Schema selects the schema (README.md).
type ExampleEntry struct {
	File        string `yaml:"file"`
	Path        string `yaml:"path"`
	Method      string `yaml:"method"`
	Request     bool   `yaml:"request"`
	Status      int    `yaml:"status"`
	ContentType string `yaml:"content_type"`
	Schema      string `yaml:"schema"`
}

// ExampleIndex is the content of examples/index.yaml.
type ExampleIndex struct {
	Examples []ExampleEntry `yaml:"examples"`
}

// LoadExampleIndex reads dir/index.yaml, refusing unknown keys.
func LoadExampleIndex(dir string) (*ExampleIndex, error) {
	b, err := os.ReadFile(filepath.Join(dir, ExampleIndexFile))
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var idx ExampleIndex
	if err := dec.Decode(&idx); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ExampleIndexFile), err)
	}
	return &idx, nil
}

// CheckExamples validates every example file in dir against the schema its
// index.yaml entry names, and fails when a file is not mapped, a mapped
// file is missing or mapped twice, or an entry names something the spec
// does not document. The error lists every problem.
func (s *Spec) CheckExamples(dir string) error {
	idx, err := LoadExampleIndex(dir)
	if err != nil {
		return err
	}
	var problems []string
	mapped := map[string]bool{}
	for i, e := range idx.Examples {
		label := fmt.Sprintf("entry %d (%s)", i+1, e.File)
		if e.File == "" {
			problems = append(problems, label+": no file")
			continue
		}
		if mapped[e.File] {
			problems = append(problems, label+": file mapped twice")
		}
		mapped[e.File] = true
		if err := s.checkExample(dir, e); err != nil {
			problems = append(problems, label+": "+err.Error())
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, de := range entries {
		name := de.Name()
		if de.IsDir() || name == ExampleIndexFile || name == "README.md" || strings.HasPrefix(name, ".") {
			continue
		}
		if !mapped[name] {
			problems = append(problems, fmt.Sprintf("%s: not mapped in %s", name, ExampleIndexFile))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return fmt.Errorf("examples in %s:\n  %s", dir, strings.Join(problems, "\n  "))
	}
	return nil
}

// ValidateExamples is CheckExamples reporting failures with t.Errorf.
func (s *Spec) ValidateExamples(t testing.TB, dir string) {
	t.Helper()
	if err := s.CheckExamples(dir); err != nil {
		t.Errorf("conformance (%s): %v", s.Service, err)
	}
}

// checkExample validates one mapped file.
func (s *Spec) checkExample(dir string, e ExampleEntry) error {
	data, err := os.ReadFile(filepath.Join(dir, e.File))
	if err != nil {
		return err
	}
	selectors := 0
	if e.Request {
		selectors++
	}
	if e.Status != 0 {
		selectors++
	}
	if e.Schema != "" {
		selectors++
	}
	if selectors != 1 {
		return errors.New("exactly one of request: true, status: N or schema: Name is required")
	}
	ct := e.ContentType
	if ct == "" {
		ct = "application/json"
	}

	if e.Schema != "" {
		ref, ok := s.Doc.Components.Schemas[e.Schema]
		if !ok || ref.Value == nil {
			return fmt.Errorf("no component schema %q", e.Schema)
		}
		return visitExample(ref.Value, data, openapi3.VisitAsResponse())
	}

	if e.Path == "" || e.Method == "" {
		return errors.New("path and method are required")
	}
	item := s.Doc.Paths.Value(e.Path)
	if item == nil {
		return fmt.Errorf("path %q is not in the spec", e.Path)
	}
	op := item.GetOperation(strings.ToUpper(e.Method))
	if op == nil {
		return fmt.Errorf("%s %s is not in the spec", e.Method, e.Path)
	}
	var content openapi3.Content
	visit := openapi3.VisitAsResponse()
	where := fmt.Sprintf("%s %s", strings.ToUpper(e.Method), e.Path)
	if e.Request {
		if op.RequestBody == nil || op.RequestBody.Value == nil {
			return fmt.Errorf("%s has no request body", where)
		}
		content = op.RequestBody.Value.Content
		visit = openapi3.VisitAsRequest()
		where += " request"
	} else {
		ref := op.Responses.Status(e.Status)
		if ref == nil || ref.Value == nil {
			return fmt.Errorf("%s has no %d response", where, e.Status)
		}
		content = ref.Value.Content
		where += fmt.Sprintf(" %d", e.Status)
	}
	mt := content.Get(ct)
	if mt == nil {
		return fmt.Errorf("%s has no content type %s", where, ct)
	}
	base, _, _ := mime.ParseMediaType(ct)
	switch {
	case base == "text/event-stream" && sseDataSchemaName(mt) != "":
		return s.CheckSSEData(data, sseDataSchemaName(mt))
	case base == "text/event-stream":
		req, _ := http.NewRequest(http.MethodGet, "http://example.invalid/", nil)
		_, err := s.CheckSSE(req, data)
		return err
	case base == "application/json" || strings.HasSuffix(base, "+json"):
		if mt.Schema == nil || mt.Schema.Value == nil {
			return fmt.Errorf("%s %s has no schema", where, ct)
		}
		if err := visitExample(mt.Schema.Value, data, visit); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		return nil
	default:
		if mt.Schema != nil && mt.Schema.Value != nil {
			if err := mt.Schema.Value.VisitJSON(string(data), visit); err != nil {
				return fmt.Errorf("%s: %s", where, readableError(err))
			}
		}
		return nil
	}
}

func visitExample(schema *openapi3.Schema, data []byte, visit openapi3.SchemaValidationOption) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("not valid JSON: %w", err)
	}
	if err := schema.VisitJSON(v, openapi3.MultiErrors(), visit); err != nil {
		return errors.New(readableError(err))
	}
	return nil
}
