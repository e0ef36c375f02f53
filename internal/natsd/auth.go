package natsd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/workerproto"
)

// Auth turns on authentication: only the control plane's key and the
// keys of active registered workers may connect, each worker with
// permissions limited to its own subjects (workerproto). The server
// re-reads the registry every Refresh and reloads its users when it
// changed; a reload closes the connections of users it no longer has,
// so a revoked worker is cut off within Refresh.
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
		p := subj.WorkerPermissions(w.WorkerID, w.Labels)
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

// watchRegistry reloads s's users whenever the registry changes, until
// ctx ends. A registry that cannot be read keeps the current users.
func watchRegistry(ctx context.Context, s *server.Server, o Options, current string, logf func(string, ...any)) {
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
		next, err := o.ServerOptions()
		if err != nil {
			logf("nats server %s: %v", o.Name, err)
			continue
		}
		next.Nkeys = users
		if err := s.ReloadOptions(next); err != nil {
			logf("nats server %s: reload users: %v", o.Name, err)
			continue
		}
		current = fp
		logf("nats server %s: users reloaded (%d workers)", o.Name, len(users)-1)
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
