package stdwebhook_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/stdwebhook"
)

// The example of the Standard Webhooks specification: a verifier written
// from the spec accepts what Sign produces.
func TestSignSpecVector(t *testing.T) {
	t.Parallel()
	sig, err := stdwebhook.Sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
		[]byte(`{"test": 2432232314}`))
	require.NoError(t, err)
	require.Equal(t, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", sig)
}

func TestVerify(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	body := []byte(`{"type":"agentos.run.completed"}`)
	oldSecret, newSecret := stdwebhook.NewSecret(), stdwebhook.NewSecret()
	h := http.Header{}
	require.NoError(t, stdwebhook.SetHeaders(h, "msg_1", now, body, newSecret, oldSecret))
	require.NoError(t, stdwebhook.Verify(h, body, newSecret, now, 5*time.Minute))
	require.NoError(t, stdwebhook.Verify(h, body, oldSecret, now.Add(time.Minute), 5*time.Minute), "either signature verifies")
	for name, check := range map[string]error{
		"other secret":   stdwebhook.Verify(h, body, stdwebhook.NewSecret(), now, 5*time.Minute),
		"changed body":   stdwebhook.Verify(h, []byte(`{}`), newSecret, now, 5*time.Minute),
		"too late":       stdwebhook.Verify(h, body, newSecret, now.Add(6*time.Minute), 5*time.Minute),
		"missing header": stdwebhook.Verify(http.Header{}, body, newSecret, now, 5*time.Minute),
	} {
		require.Truef(t, errors.Is(check, stdwebhook.ErrInvalid), "%s: %v", name, check)
	}
	require.Error(t, stdwebhook.SetHeaders(http.Header{}, "msg_1", now, body))
}
