package conformance

import (
	"io"
	"net/http"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// CheckMethodNotAllowed sends method to a path the spec documents only for
// other methods and checks the answer: 405 method_not_allowed with an
// Allow header equal to allow, and a body valid against the spec's
// ErrorEnvelope (no operation documents a method that does not exist, so
// the schema is checked directly).
func (s *Spec) CheckMethodNotAllowed(t testing.TB, client *http.Client, method, url, allow string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("%s %s: status %d, want 405\n%s", method, url, resp.StatusCode, body)
	}
	if got := resp.Header.Get("Allow"); got != allow {
		t.Fatalf("%s %s: Allow %q, want %q", method, url, got, allow)
	}
	ref, ok := s.Doc.Components.Schemas["ErrorEnvelope"]
	if !ok || ref.Value == nil {
		t.Fatalf("%s: no ErrorEnvelope schema", s.Service)
	}
	if err := visitExample(ref.Value, body, openapi3.VisitAsResponse()); err != nil {
		t.Fatalf("%s %s: %v\n%s", method, url, err, body)
	}
	if code := JSON(t, body)["error"].(map[string]any)["code"]; code != "method_not_allowed" {
		t.Fatalf("%s %s: code %v, want method_not_allowed", method, url, code)
	}
}
