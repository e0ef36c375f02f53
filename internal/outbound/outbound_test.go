package outbound

import (
	"context"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/errs"
)

// silent is a listener that accepts connections and never writes a byte.
func silent(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var held []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	return ln.Addr().String()
}

func get(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return Error(ctx, "test dependency", err)
	}
	resp.Body.Close()
	return nil
}

// A dependency that accepts and never answers fails the call with
// dependency_unavailable once a configured bound runs out: the response
// headers over http, the TLS handshake over https.
func TestSilentDependencyIsUnavailable(t *testing.T) {
	t.Parallel()
	addr := silent(t)
	short := 200 * time.Millisecond
	for name, tc := range map[string]struct {
		url string
		t   Timeouts
	}{
		"response headers": {"http://" + addr + "/", Timeouts{ResponseHeader: short, TLSHandshake: time.Hour}},
		"TLS handshake":    {"https://" + addr + "/", Timeouts{TLSHandshake: short, ResponseHeader: time.Hour}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			err := get(t.Context(), Client(tc.t, nil), tc.url)
			require.Equal(t, errs.DependencyUnavailable, errs.CodeOf(err), "err: %v", err)
			require.Contains(t, err.Error(), "test dependency did not answer in time")
		})
	}
}

// The caller's own deadline is timeout and its leaving canceled, even
// when the transport's bounds are far off.
func TestCallerContextWins(t *testing.T) {
	t.Parallel()
	addr := silent(t)
	c := Client(Timeouts{ResponseHeader: time.Hour}, nil)

	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	err := get(ctx, c, "http://"+addr+"/")
	require.Equal(t, errs.Timeout, errs.CodeOf(err), "err: %v", err)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	ctx, cancel = context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	err = get(ctx, c, "http://"+addr+"/")
	require.Equal(t, errs.Canceled, errs.CodeOf(err), "err: %v", err)
	require.ErrorIs(t, err, context.Canceled)
	require.False(t, errs.CodeOf(err).Retryable())
}

// Refused connections are unavailable too, at once.
func TestRefusedIsUnavailable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	err = get(t.Context(), Client(Timeouts{}, nil), "http://"+addr+"/")
	require.Equal(t, errs.DependencyUnavailable, errs.CodeOf(err), "err: %v", err)
	require.Contains(t, err.Error(), "test dependency is unreachable")
}

// The transport carries the configured bounds; zero fields the defaults.
func TestTransportFromConfig(t *testing.T) {
	t.Parallel()
	c := config.Config{Mode: config.ModeDev, OutboundDialTimeout: time.Second, OutboundResponseHeaderTimeout: 7 * time.Second}
	tr := Transport(FromConfig(c), nil)
	require.Equal(t, 7*time.Second, tr.ResponseHeaderTimeout)
	require.Equal(t, DefaultTLSHandshakeTimeout, tr.TLSHandshakeTimeout)
	require.Equal(t, DefaultIdleConnTimeout, tr.IdleConnTimeout)
	require.Nil(t, tr.Proxy)

	require.NoError(t, c.Finish())
	m := ModelClient(ForModels(c)).Transport.(*http.Transport)
	require.Equal(t, c.OutboundModelResponseHeaderTimeout, m.ResponseHeaderTimeout)
	require.NotNil(t, m.Proxy, "model backends honour HTTPS_PROXY")
	require.Equal(t, DefaultModelResponseHeaderTimeout, ModelDefaults().ResponseHeader)
}
