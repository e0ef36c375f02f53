package httpx

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
)

func TestDecodeError(t *testing.T) {
	t.Parallel()
	h := http.Header{}
	h.Set("Retry-After", "3")
	e := DecodeError(429, h, []byte(`{"error":{"code":"quota_exceeded","message":"over","details":{"limit":10}},"correlation_id":"c"}`))
	require.Equal(t, errs.QuotaExceeded, e.Code)
	require.Equal(t, "over", e.Message)
	require.Equal(t, map[string]any{"limit": float64(10)}, e.Details)
	require.Equal(t, 3*time.Second, e.RetryAfter)

	e = DecodeErrorFrom("peer stk_b", 502, http.Header{}, []byte("<html>bad gateway</html>"))
	require.Equal(t, errs.DependencyUnavailable, e.Code)
	require.Equal(t, "peer stk_b answered HTTP 502", e.Message)
	require.NotNil(t, e.Details)
	require.Zero(t, e.RetryAfter)

	for _, ra := range []string{"-1", "soon", "1.5"} {
		h.Set("Retry-After", ra)
		e = DecodeError(404, h, []byte(`{"error":{"code":""}}`))
		require.Equal(t, errs.NotFound, e.Code, "an envelope without a code is no envelope")
		require.Equal(t, "the server answered HTTP 404", e.Message)
		require.Zero(t, e.RetryAfter, ra)
	}
}

func FuzzDecodeError(f *testing.F) {
	f.Add(500, "", []byte(`{"error":{"code":"internal_error","message":"x","details":null}}`))
	f.Add(429, "7", []byte(`not json`))
	f.Fuzz(func(t *testing.T, status int, retryAfter string, body []byte) {
		h := http.Header{}
		h.Set("Retry-After", retryAfter)
		e := DecodeError(status, h, body)
		require.NotEmpty(t, e.Code)
		require.NotNil(t, e.Details)
		require.GreaterOrEqual(t, e.RetryAfter, time.Duration(0))
	})
}
