package natsd

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/workerproto"
)

// Auth turns on authentication: only the control plane's key and the
// keys of active registered workers may connect, each worker with
// permissions limited to its own subjects (workerproto). The server's
// custom authenticator checks a connection's nkey signature of the
// server's nonce against the users it holds; it re-reads the registry
// every Refresh and closes the connections of keys no longer there, so
// a revoked worker is cut off within Refresh. (A configuration reload
// would do the same, but was seen to hang on a busy JetStream server.)
type Auth struct {
	// ControlKey is the control plane's public user nkey (the
	// orchestrators, model-policy...): every subject.
	ControlKey string
	// Namespace is the bus namespace (default "agentos").
	Namespace string
	// Workers lists the registry (the store); revoked workers are skipped.
	Workers func(ctx context.Context) ([]store.Worker, error)
	// Refresh is how often the registry is read (default 1 s).
	Refresh time.Duration
}

func (a *Auth) withDefaults() {
	if a.Namespace == "" {
		a.Namespace = "agentos"
	}
	if a.Refresh <= 0 {
		a.Refresh = time.Second
	}
}

// nkeyUsers is the server's user list for the control key and the
// active workers, in a stable order.
func (a *Auth) nkeyUsers(workers []store.Worker) []*server.NkeyUser {
	users := []*server.NkeyUser{{Nkey: a.ControlKey}}
	subj := workerproto.Subjects{NS: a.Namespace}
	sort.Slice(workers, func(i, j int) bool { return workers[i].WorkerID < workers[j].WorkerID })
	for _, w := range workers {
		if w.Status != store.WorkerActive || w.PublicKey == a.ControlKey {
			continue
		}
		p := subj.WorkerPermissions(w.WorkerID, w.Labels, w.Tenants)
		users = append(users, &server.NkeyUser{Nkey: w.PublicKey, Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: p.Publish},
			Subscribe: &server.SubjectPermission{Allow: p.Subscribe},
		}})
	}
	return users
}

// fingerprint tells two user lists apart.
func fingerprint(users []*server.NkeyUser) string {
	var b strings.Builder
	for _, u := range users {
		b.WriteString(u.Nkey)
		if u.Permissions != nil {
			b.WriteString(strings.Join(u.Permissions.Publish.Allow, ","))
			b.WriteString(strings.Join(u.Permissions.Subscribe.Allow, ","))
		}
		b.WriteByte(';')
	}
	return b.String()
}

func (a *Auth) validate() error {
	switch {
	case len(a.ControlKey) != 56 || a.ControlKey[0] != 'U':
		return errors.New("--control-nkey-file: not a NATS user nkey seed")
	case a.Workers == nil:
		return errors.New("auth: the worker registry is required")
	}
	return nil
}

// watchRegistry gives a the registry's users whenever they change,
// until ctx ends. A registry that cannot be read keeps the current users.
func watchRegistry(ctx context.Context, a *authenticator, o Options, current string, logf func(string, ...any)) {
	t := time.NewTicker(o.Auth.Refresh)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		workers, err := o.Auth.Workers(rctx)
		cancel()
		if err != nil {
			if msg := err.Error(); msg != lastErr {
				logf("nats server %s: worker registry unreadable, keeping the current users: %v", o.Name, err)
				lastErr = msg
			}
			continue
		}
		lastErr = ""
		users := o.Auth.nkeyUsers(workers)
		fp := fingerprint(users)
		if fp == current {
			continue
		}
		a.set(users)
		current = fp
		logf("nats server %s: users updated (%d workers)", o.Name, len(users)-1)
	}
}

// initialUsers reads the registry once at start (retrying until ctx ends:
// the store may come up after the bus).
func initialUsers(ctx context.Context, a *Auth, logf func(string, ...any)) ([]*server.NkeyUser, error) {
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		workers, err := a.Workers(rctx)
		cancel()
		if err == nil {
			return a.nkeyUsers(slices.Clone(workers)), nil
		}
		logf("nats server: worker registry unreadable, retrying: %v", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("worker registry: %w", err)
		case <-time.After(wait):
		}
	}
}

// authenticator is the server's CustomClientAuthentication.
type authenticator struct {
	srv atomic.Pointer[server.Server]

	mu    sync.Mutex
	users map[string]*server.Permissions // public key → permissions (nil: every subject)
	conns map[string][]uint64            // public key → its recent connections' ids
}

// maxConnsPerKey bounds the ids remembered per key (a worker that
// reconnects often keeps only its latest ones; older ones are closed).
const maxConnsPerKey = 16

func newAuthenticator(users []*server.NkeyUser) *authenticator {
	a := &authenticator{conns: map[string][]uint64{}}
	a.set(users)
	return a
}

// set replaces the users and closes the connections of keys that left.
func (a *authenticator) set(users []*server.NkeyUser) {
	next := make(map[string]*server.Permissions, len(users))
	for _, u := range users {
		next[u.Nkey] = u.Permissions
	}
	a.mu.Lock()
	a.users = next
	var kick []uint64
	for key, ids := range a.conns {
		if _, ok := next[key]; !ok {
			kick = append(kick, ids...)
			delete(a.conns, key)
		}
	}
	a.mu.Unlock()
	if s := a.srv.Load(); s != nil {
		for _, id := range kick {
			_ = s.DisconnectClientByID(id) // gone already: nothing to do
		}
	}
}

// Check implements server.Authentication: the client proves it holds a
// known key by signing the server's nonce.
func (a *authenticator) Check(c server.ClientAuthentication) bool {
	if c.Kind() != server.CLIENT {
		return false
	}
	o := c.GetOpts()
	a.mu.Lock()
	perms, ok := a.users[o.Nkey]
	a.mu.Unlock()
	if !ok || o.Nkey == "" {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(o.Sig)
	if err != nil {
		if sig, err = base64.StdEncoding.DecodeString(o.Sig); err != nil {
			return false
		}
	}
	pub, err := nkeys.FromPublicKey(o.Nkey)
	if err != nil || pub.Verify(c.GetNonce(), sig) != nil {
		return false
	}
	c.RegisterUser(&server.User{Username: o.Nkey, Permissions: perms})
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, still := a.users[o.Nkey]; !still {
		return false // revoked meanwhile
	}
	ids := append(a.conns[o.Nkey], c.GetID())
	if len(ids) > maxConnsPerKey {
		ids = ids[len(ids)-maxConnsPerKey:]
	}
	a.conns[o.Nkey] = ids
	return true
}
