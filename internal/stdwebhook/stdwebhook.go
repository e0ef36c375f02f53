// Package stdwebhook signs and verifies webhook deliveries by the Standard
// Webhooks scheme (standardwebhooks.com): headers
//
//	webhook-id: msg_...          (the same for every retry of a message)
//	webhook-timestamp: <unix seconds of this attempt>
//	webhook-signature: v1,<base64 HMAC-SHA256> [v1,<...> ...]
//
// where the HMAC is keyed with the base64-decoded part of the secret after
// "whsec_" and computed over "<id>.<timestamp>.<body>". Several signatures
// (space-separated) are sent while a rotated-out secret is still valid; a
// receiver accepts the message when any of them matches its secret.
//
// This is not the scheme of webhook tools (internal/tools/webhook), which
// keep their own X-AgentOS-Signature for compatibility.
package stdwebhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts every secret.
const SecretPrefix = "whsec_"

// NewSecret returns a new random secret: "whsec_" + base64 of 32 bytes.
func NewSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return SecretPrefix + base64.StdEncoding.EncodeToString(b)
}

func key(secret string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, SecretPrefix))
	if err != nil || len(k) == 0 {
		return nil, errors.New("webhook secret is not whsec_ followed by base64")
	}
	return k, nil
}

// Sign returns "v1,<base64 signature>" of body for message id at ts.
func Sign(secret, id string, ts int64, body []byte) (string, error) {
	k, err := key(secret)
	if err != nil {
		return "", err
	}
	m := hmac.New(sha256.New, k)
	fmt.Fprintf(m, "%s.%d.", id, ts)
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil)), nil
}

// SetHeaders sets the three headers on h, with one signature per secret
// (empty secrets skipped).
func SetHeaders(h http.Header, id string, ts time.Time, body []byte, secrets ...string) error {
	var sigs []string
	for _, s := range secrets {
		if s == "" {
			continue
		}
		sig, err := Sign(s, id, ts.Unix(), body)
		if err != nil {
			return err
		}
		sigs = append(sigs, sig)
	}
	if len(sigs) == 0 {
		return errors.New("no webhook secret to sign with")
	}
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, strings.Join(sigs, " "))
	return nil
}

// ErrInvalid is returned by Verify for a message that does not verify.
var ErrInvalid = errors.New("webhook signature does not verify")

// Verify checks a received message's headers against secret: a v1
// signature must match (constant-time) and the timestamp must be within
// tolerance of now, so a captured message cannot be replayed later.
func Verify(h http.Header, body []byte, secret string, now time.Time, tolerance time.Duration) error {
	id, tsText, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || tsText == "" || sigs == "" {
		return fmt.Errorf("%w: missing %s, %s or %s", ErrInvalid, HeaderID, HeaderTimestamp, HeaderSignature)
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: bad timestamp %q", ErrInvalid, tsText)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: timestamp %d is %s away from now", ErrInvalid, ts, d.Round(time.Second))
	}
	want, err := Sign(secret, id, ts, body)
	if err != nil {
		return err
	}
	for _, s := range strings.Fields(sigs) {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return ErrInvalid
}
