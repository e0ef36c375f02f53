package httpx

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBodyDeadlineAnswers408ToASlowBody(t *testing.T) {
	t.Parallel()
	h := BodyDeadline(300 * time.Millisecond)(H(func(w http.ResponseWriter, r *http.Request) error {
		var v map[string]any
		if err := Decode(r, &v); err != nil {
			return err
		}
		JSON(w, r, http.StatusOK, nil)
		return nil
	}))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	// Headers promise 100 bytes; only a few ever come.
	_, err = fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\":")
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(20*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusRequestTimeout, resp.StatusCode, string(body))
	require.Contains(t, string(body), `"field":"body"`)
}

func TestBodyDeadlineDoesNotLimitTheResponse(t *testing.T) {
	t.Parallel()
	h := BodyDeadline(100 * time.Millisecond)(H(func(w http.ResponseWriter, r *http.Request) error {
		if _, err := ReadBody(r); err != nil {
			return err
		}
		w.WriteHeader(http.StatusOK)
		// Stream past the body deadline: the connection stays usable.
		for i := 0; i < 4; i++ {
			_, _ = fmt.Fprintf(w, "chunk %d\n", i)
			_ = http.NewResponseController(w).Flush()
			select {
			case <-r.Context().Done():
				return nil
			case <-time.After(100 * time.Millisecond):
			}
		}
		return nil
	}))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	resp, err := http.Post(srv.URL, "application/json", strings.NewReader(`{"a":1}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	require.Contains(t, string(body), "chunk 3", "the stream outlived the body deadline")
}
