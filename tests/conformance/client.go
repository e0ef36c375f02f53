package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"strings"
	"testing"
)

// Do sends one request and validates the response against the spec
// (ValidateResponse), returning the response (its Body already read and
// closed) and the body. body may be nil (no body), a []byte or string
// (sent as is) or any other value (sent as JSON). A JSON body gets
// Content-Type: application/json unless headers set one. Transport errors
// stop the test. The request is not validated: tests send bad requests on
// purpose.
func (s *Spec) Do(t testing.TB, client *http.Client, method, url string, headers map[string]string, body any) (*http.Response, []byte) {
	t.Helper()
	if client == nil {
		client = http.DefaultClient
	}
	var (
		rd     io.Reader
		isJSON bool
	)
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("conformance: encode request body: %v", err)
		}
		rd, isJSON = bytes.NewReader(raw), true
	}
	req, err := http.NewRequestWithContext(requestContext(t), method, url, rd)
	if err != nil {
		t.Fatalf("conformance: new request %s %s: %v", method, url, err)
	}
	if isJSON {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("conformance: %s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("conformance: read body of %s %s: %v", method, url, err)
	}
	s.ValidateResponse(t, req, resp, data)
	return resp, data
}

// requestContext is the test's context when it has one (canceled when the
// test ends), else background.
func requestContext(t testing.TB) context.Context {
	if c, ok := t.(interface{ Context() context.Context }); ok {
		return c.Context()
	}
	return context.Background()
}

// Client sends validated requests to one service under test.
type Client struct {
	// Spec validates every response.
	Spec *Spec
	// HTTP sends the requests; nil means http.DefaultClient.
	HTTP *http.Client
	// BaseURL is the service's root, e.g. "http://127.0.0.1:50081".
	BaseURL string
	// Headers are sent on every request (credentials, tenant...).
	Headers map[string]string
}

// Do sends method BaseURL+path with the client's headers overlaid by
// extra (later maps win) and validates the response; see Spec.Do.
func (c *Client) Do(t testing.TB, method, path string, body any, extra ...map[string]string) (*http.Response, []byte) {
	t.Helper()
	h := maps.Clone(c.Headers)
	if h == nil {
		h = map[string]string{}
	}
	for _, m := range extra {
		maps.Copy(h, m)
	}
	return c.Spec.Do(t, c.HTTP, method, strings.TrimSuffix(c.BaseURL, "/")+path, h, body)
}

// JSON decodes body into a map, stopping the test if it is not a JSON object.
func JSON(t testing.TB, body []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("conformance: body is not a JSON object: %v\n%s", err, truncate(body, 2000))
	}
	return m
}
