// Package outbound builds every HTTP client a node uses to call out: its
// own services, federation peers, model backends, JWKS endpoints. One
// place sets how long connecting, the TLS handshake and the wait for a
// response's headers may take, so that a dependency that accepts a
// connection and never answers fails the call instead of holding it (and
// its caller) for ever. No overall Client.Timeout is set: streamed
// responses (SSE, streamed completions) last as long as the caller's
// context allows.
package outbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/errs"
)

// Defaults, also config's (AGENTOS_OUTBOUND_*): a peer that is down fails
// within DefaultDialTimeout, one that accepts but never completes TLS
// within DefaultTLSHandshakeTimeout, so a forward to a stopped peer fails
// in under 5 s.
const (
	DefaultDialTimeout           = 3 * time.Second
	DefaultTLSHandshakeTimeout   = 4 * time.Second
	DefaultResponseHeaderTimeout = 30 * time.Second
	DefaultIdleConnTimeout       = 90 * time.Second
	// DefaultModelResponseHeaderTimeout is ForModels' ResponseHeader.
	DefaultModelResponseHeaderTimeout = 5 * time.Minute
)

// Timeouts bound the phases of a call before its response starts. A zero
// field takes its Default.
type Timeouts struct {
	Dial           time.Duration // connecting (TCP)
	TLSHandshake   time.Duration // the TLS handshake
	ResponseHeader time.Duration // from the request written to the response's headers
	IdleConn       time.Duration // how long an idle keep-alive connection is kept
}

// FromConfig returns the timeouts for calls between AgentOS services and
// to federation peers.
func FromConfig(c config.Config) Timeouts {
	return Timeouts{Dial: c.OutboundDialTimeout, TLSHandshake: c.OutboundTLSHandshakeTimeout,
		ResponseHeader: c.OutboundResponseHeaderTimeout, IdleConn: c.OutboundIdleConnTimeout}
}

// ForModels returns the timeouts for calls that wait for a model: to
// model backends and to model-policy. A completion that is not streamed
// sends its headers only once the whole answer is written, so their
// response-header bound is the longer OutboundModelResponseHeaderTimeout.
func ForModels(c config.Config) Timeouts {
	t := FromConfig(c)
	t.ResponseHeader = c.OutboundModelResponseHeaderTimeout
	return t
}

// ModelDefaults are the timeouts of ForModels when no configuration is
// at hand (a provider or client built in code).
func ModelDefaults() Timeouts {
	return Timeouts{ResponseHeader: DefaultModelResponseHeaderTimeout}
}

// ModelClient is Client for calls to model backends (and the CLI's calls
// to a node, which may wait on a model): t (ModelDefaults or ForModels)
// and the proxy of HTTPS_PROXY / HTTP_PROXY / NO_PROXY, since backends
// and remote nodes are often reached through one. It keeps more idle connections
// per host (256) than Transport: a busy gateway calls few hosts, a lot.
func ModelClient(t Timeouts) *http.Client {
	tr := Transport(t, nil)
	tr.Proxy = http.ProxyFromEnvironment
	tr.MaxIdleConnsPerHost = 256
	return &http.Client{Transport: tr}
}

func (t Timeouts) withDefaults() Timeouts {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.Dial, DefaultDialTimeout)
	def(&t.TLSHandshake, DefaultTLSHandshakeTimeout)
	def(&t.ResponseHeader, DefaultResponseHeaderTimeout)
	def(&t.IdleConn, DefaultIdleConnTimeout)
	return t
}

// Transport returns a transport bounded by t, using tlsCfg (nil: the
// system roots) for https. It uses no proxy: a caller that should honour
// HTTP(S)_PROXY sets Proxy (model-policy does, for model backends). It
// keeps up to 64 idle connections per host (http.DefaultTransport keeps
// 2, so a busy caller would open and close one per call).
func Transport(t Timeouts, tlsCfg *tls.Config) *http.Transport {
	t = t.withDefaults()
	d := &net.Dialer{Timeout: t.Dial, KeepAlive: 30 * time.Second}
	return &http.Transport{
		DialContext:           d.DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   t.TLSHandshake,
		ResponseHeaderTimeout: t.ResponseHeader,
		IdleConnTimeout:       t.IdleConn,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   64,
	}
}

// Client returns a client over Transport(t, tlsCfg), without an overall
// timeout (see the package comment).
func Client(t Timeouts, tlsCfg *tls.Config) *http.Client {
	return &http.Client{Transport: Transport(t, tlsCfg)}
}

// Error maps a failed exchange with who ("peer stk_b", "agent
// orchestrator"): the caller's own deadline is timeout and its leaving
// canceled (errs.FromContext); anything else, a transport bound that ran
// out (dial, TLS handshake, response headers) included, is
// dependency_unavailable: the dependency, not the request, failed.
func Error(ctx context.Context, who string, err error) *errs.Error {
	if e := errs.FromContext(ctx.Err(), "call to "+who); e != nil {
		e.Err = fmt.Errorf("%w: %w", ctx.Err(), err)
		return e
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errs.Wrap(errs.DependencyUnavailable, err, "%s did not answer in time", who)
	}
	return errs.Wrap(errs.DependencyUnavailable, err, "%s is unreachable", who)
}
