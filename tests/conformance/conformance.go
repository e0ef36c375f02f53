// Package conformance checks AgentOS services against their OpenAPI
// documents (docs/api/<service>/openapi.yaml): live responses, SSE streams
// and the example files shipped next to each spec.
//
// The harness is ordinary code so that every _test.go file in this package
// can use it. Each Check* function returns an error describing every
// mismatch; the matching Validate* function reports that error through
// t.Errorf. README.md in this directory documents the conventions a spec
// and its examples must follow.
package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// Spec is a loaded, validated OpenAPI document of one service.
type Spec struct {
	// Service is the service name (the folder under docs/api), or the
	// file's base name when loaded with LoadSpecFile.
	Service string
	// Path is the absolute path of the openapi.yaml file.
	Path string
	// Doc is the parsed document.
	Doc *openapi3.T

	router routers.Router
}

// RepoRoot returns the repository root: the nearest directory at or above
// the working directory that holds go.mod. It fails the test if none does.
func RepoRoot(t testing.TB) string {
	t.Helper()
	root, err := findRepoRoot()
	if err != nil {
		t.Fatalf("conformance: %v", err)
	}
	return root
}

func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod found above the working directory")
		}
		dir = parent
	}
}

// SpecPath returns the path of a service's OpenAPI document under the repo root.
func SpecPath(root, service string) string {
	return filepath.Join(root, "docs", "api", service, "openapi.yaml")
}

// LoadSpec loads and validates docs/api/<service>/openapi.yaml of the
// repository holding the working directory. It stops the test on failure.
func LoadSpec(t testing.TB, service string) *Spec {
	t.Helper()
	s, err := LoadSpecFile(SpecPath(RepoRoot(t), service))
	if err != nil {
		t.Fatalf("conformance: %v", err)
	}
	s.Service = service
	return s
}

// LoadSpecFile loads an OpenAPI 3.0 document from path, validates it and
// prepares a router for it. Relative external references (examples) are
// resolved against the file's directory.
func LoadSpecFile(path string) (*Spec, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	loader := openapi3.NewLoader()
	loader.IsExternalRefsAllowed = true
	doc, err := loader.LoadFromFile(abs)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", abs, err)
	}
	if err := doc.Validate(loader.Context, openapi3.DisableExamplesValidation()); err != nil {
		return nil, fmt.Errorf("invalid OpenAPI document %s: %w", abs, err)
	}
	router, err := newRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("router for %s: %w", abs, err)
	}
	name := filepath.Base(filepath.Dir(abs))
	return &Spec{Service: name, Path: abs, Doc: doc, router: router}, nil
}

// newRouter builds a router that matches request paths only: the document's
// servers (fixed hosts and ports) are replaced so that test servers on any
// loopback port match. gorilla/mux tries paths in kin-openapi's matching
// order, which puts /v1/runs/{run_id}:cancel before /v1/runs/{run_id}.
func newRouter(doc *openapi3.T) (routers.Router, error) {
	cp := *doc
	cp.Servers = openapi3.Servers{{URL: "/"}}
	return gorillamux.NewRouter(&cp)
}

// route finds the documented operation for req.
func (s *Spec) route(req *http.Request) (*routers.Route, map[string]string, error) {
	// Match on the path alone: the router must not care about the host.
	r := req.Clone(context.Background())
	u := *req.URL
	u.Scheme, u.Host = "", ""
	r.URL = &u
	r.Host = ""
	route, params, err := s.router.FindRoute(r)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: no such operation in %s: %w", req.Method, req.URL.Path, s.Service, err)
	}
	// The route carries the router's copy of the document; point it back at ours.
	route.Spec = s.Doc
	return route, params, nil
}

// schemaErrorOptions make kin-openapi's schema errors short: the JSON
// pointer of the offending value and the reason, no schema dump.
func schemaErrorOptions() *openapi3filter.Options {
	o := &openapi3filter.Options{
		IncludeResponseStatus: true,
		MultiError:            true,
		AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc,
	}
	o.WithCustomSchemaErrorFunc(schemaErrorMessage)
	return o
}

func schemaErrorMessage(err *openapi3.SchemaError) string {
	reason := err.Reason
	if reason == "" {
		reason = fmt.Sprintf("fails %q", err.SchemaField)
		if err.SchemaField == "not" && err.Schema != nil && err.Schema.Not != nil && err.Schema.Not.Value != nil {
			reason = "must not match the \"not\" schema"
			if d := err.Schema.Not.Value.Description; d != "" {
				reason = "must not match: " + d
			}
		}
	}
	msg := "at /" + strings.Join(err.JSONPointer(), "/") + ": " + reason
	if v := scalarString(err.Value); v != "" {
		msg += " (got " + v + ")"
	}
	if err.Origin == nil || errors.Is(err.Origin, openapi3.ErrOneOfConflict) {
		return msg
	}
	// oneOf/anyOf failures carry each alternative's errors, with pointers
	// relative to the value above.
	var me openapi3.MultiError
	if errors.As(err.Origin, &me) {
		label := "alternative"
		if err.SchemaField == "allOf" {
			label = "part"
		}
		parts := make([]string, 0, len(me))
		for i, e := range me {
			parts = append(parts, fmt.Sprintf("%s %d: %s", label, i+1, readableError(e)))
		}
		return msg + " [" + strings.Join(parts, " | ") + "]"
	}
	return msg + " [" + readableError(err.Origin) + "]"
}

// scalarString renders a scalar JSON value for an error message, "" for
// objects, arrays and nil.
func scalarString(v any) string {
	switch x := v.(type) {
	case string:
		if len(x) > 80 {
			x = x[:80] + "..."
		}
		return strconv.Quote(x)
	case float64, bool, json.Number, int, int64:
		return fmt.Sprint(x)
	}
	return ""
}

// CheckResponse checks one response against the spec: the request must
// match a documented operation, the status must be documented for it, the
// documented headers must be present and valid, the content type must be
// documented and the body must match its schema. text/event-stream bodies
// are checked frame by frame (see CheckSSE). body is the full response
// body; resp.Body is not read.
func (s *Spec) CheckResponse(req *http.Request, resp *http.Response, body []byte) error {
	route, params, err := s.route(req)
	if err != nil {
		return err
	}
	where := fmt.Sprintf("%s %s → %d", req.Method, route.Path, resp.StatusCode)
	if route.Operation.Responses.Status(resp.StatusCode) == nil && route.Operation.Responses.Default() == nil {
		return fmt.Errorf("%s: status %d is not documented for this operation (documented: %s)",
			where, resp.StatusCode, strings.Join(documentedStatuses(route.Operation), ", "))
	}
	var problems []string
	// Status and headers: kin-openapi, body excluded so that a header
	// problem does not hide a body problem.
	opts := schemaErrorOptions()
	opts.ExcludeResponseBody = true
	input := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: req, PathParams: params, Route: route, Options: opts,
		},
		Status:  resp.StatusCode,
		Header:  resp.Header,
		Body:    io.NopCloser(bytes.NewReader(body)),
		Options: opts,
	}
	if err := openapi3filter.ValidateResponse(context.Background(), input); err != nil {
		problems = append(problems, readableError(err))
	}
	if err := s.checkBody(req, route.Operation, resp, body); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s: %s\nbody: %s", where, strings.Join(problems, "\n  "), truncate(body, 2000))
	}
	return nil
}

// checkBody checks the body against the schema documented for the
// response's status and content type.
func (s *Spec) checkBody(req *http.Request, op *openapi3.Operation, resp *http.Response, body []byte) error {
	content := responseContent(op, resp.StatusCode)
	if len(content) == 0 {
		if len(body) > 0 {
			return fmt.Errorf("a body is sent but none is documented")
		}
		return nil
	}
	ctHeader := resp.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ctHeader)
	if err != nil {
		return fmt.Errorf("content type %q: %v", ctHeader, err)
	}
	media := content.Get(ctHeader)
	if media == nil {
		return fmt.Errorf("content type %q is not documented (documented: %s)", ctHeader, strings.Join(slices.Sorted(maps.Keys(content)), ", "))
	}
	switch {
	case mt == "text/event-stream" && sseDataSchemaName(media) != "":
		return s.CheckSSEData(body, sseDataSchemaName(media))
	case mt == "text/event-stream":
		_, err := s.CheckSSE(req, body)
		return err
	case media.Schema == nil || media.Schema.Value == nil:
		return nil
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			return fmt.Errorf("body is not JSON: %v", err)
		}
		if err := media.Schema.Value.VisitJSON(v, openapi3.MultiErrors(), openapi3.VisitAsResponse()); err != nil {
			return fmt.Errorf("body does not match the schema: %s", readableError(err))
		}
		return nil
	case strings.HasPrefix(mt, "text/"):
		if err := media.Schema.Value.VisitJSON(string(body), openapi3.VisitAsResponse()); err != nil {
			return fmt.Errorf("body does not match the schema: %s", readableError(err))
		}
		return nil
	}
	return nil
}

// ValidateResponse is CheckResponse reporting failures with t.Errorf.
func (s *Spec) ValidateResponse(t testing.TB, req *http.Request, resp *http.Response, body []byte) {
	t.Helper()
	if err := s.CheckResponse(req, resp, body); err != nil {
		t.Errorf("conformance (%s): %v", s.Service, err)
	}
}

// CheckRequest checks a request (path and query parameters, headers and
// the JSON body) against its documented operation. Security requirements
// are not checked: credentials are the server's business.
func (s *Spec) CheckRequest(req *http.Request, body []byte) error {
	route, params, err := s.route(req)
	if err != nil {
		return err
	}
	r := req.Clone(context.Background())
	r.Body = io.NopCloser(bytes.NewReader(body))
	input := &openapi3filter.RequestValidationInput{
		Request: r, PathParams: params, Route: route, Options: schemaErrorOptions(),
	}
	if err := openapi3filter.ValidateRequest(context.Background(), input); err != nil {
		return fmt.Errorf("%s %s request: %s", req.Method, route.Path, readableError(err))
	}
	return nil
}

func responseContent(op *openapi3.Operation, status int) openapi3.Content {
	ref := op.Responses.Status(status)
	if ref == nil {
		ref = op.Responses.Default()
	}
	if ref == nil || ref.Value == nil {
		return nil
	}
	return ref.Value.Content
}

func documentedStatuses(op *openapi3.Operation) []string {
	var out []string
	for code := range op.Responses.Map() {
		out = append(out, code)
	}
	slices.Sort(out)
	return out
}

// readableError flattens kin-openapi's nested errors into one line per problem.
func readableError(err error) string {
	switch e := err.(type) {
	case openapi3.MultiError:
		parts := make([]string, 0, len(e))
		for _, sub := range e {
			parts = append(parts, readableError(sub))
		}
		return strings.Join(parts, "; ")
	case *openapi3filter.ResponseError:
		if e.Err != nil {
			return e.Reason + ": " + readableError(e.Err)
		}
		return e.Reason
	case *openapi3filter.RequestError:
		if e.Err != nil {
			prefix := e.Reason
			if e.Parameter != nil {
				prefix = fmt.Sprintf("parameter %q in %s", e.Parameter.Name, e.Parameter.In)
			} else if e.RequestBody != nil {
				prefix = "request body"
			}
			if prefix == "" {
				return readableError(e.Err)
			}
			return prefix + ": " + readableError(e.Err)
		}
		return e.Error()
	case *openapi3.SchemaError:
		return schemaErrorMessage(e)
	}
	var se *openapi3.SchemaError
	if errors.As(err, &se) {
		return schemaErrorMessage(se)
	}
	return err.Error()
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "...(truncated)"
}
