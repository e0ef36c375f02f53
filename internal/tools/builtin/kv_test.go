package builtin_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlite"
	"github.com/nexixai/agentos/internal/tools"
	"github.com/nexixai/agentos/internal/tools/builtin"
	"github.com/nexixai/agentos/internal/tools/toolstest"
)

// memKV is an in-memory builtin.KV that accounts usage like the SQLite
// store: store.KVEntrySize per entry, quota_exceeded past maxBytes.
type memKV struct {
	mu   sync.Mutex
	data map[[3]string][]byte
}

func newMemKV() *memKV { return &memKV{data: map[[3]string][]byte{}} }

func (m *memKV) KVPut(ctx context.Context, tenantID, namespace, key string, value []byte, maxBytes int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k := [3]string{tenantID, namespace, key}
	size := store.KVEntrySize(namespace, key, value)
	if maxBytes > 0 {
		var used, old int64
		for kk, v := range m.data {
			if kk[0] == tenantID {
				used += store.KVEntrySize(kk[1], kk[2], v)
			}
		}
		if v, ok := m.data[k]; ok {
			old = store.KVEntrySize(namespace, key, v)
		}
		if used-old+size > maxBytes {
			// Like a store that returns the bare sentinel.
			return errs.ErrQuotaExceeded
		}
	}
	m.data[k] = append([]byte(nil), value...)
	return nil
}

func (m *memKV) KVGet(ctx context.Context, tenantID, namespace, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.data[[3]string{tenantID, namespace, key}]
	if !ok {
		return nil, errs.ErrNotFound
	}
	return v, nil
}

// kvBackends are the KV implementations the tests run against.
var kvBackends = map[string]func(t *testing.T) builtin.KV{
	"mem": func(*testing.T) builtin.KV { return newMemKV() },
	"sqlite": func(t *testing.T) builtin.KV {
		db, err := sqlite.Open(context.Background(), ":memory:")
		require.NoError(t, err)
		t.Cleanup(func() { _ = db.Close() })
		return db
	},
}

func quotaOf(n int64) func(context.Context, string) (int64, error) {
	return func(context.Context, string) (int64, error) { return n, nil }
}

func call(tenant, input string) tools.Call { return toolstest.Call(tenant, json.RawMessage(input)) }

func TestKVConformance(t *testing.T) {
	t.Parallel()
	for name, newKV := range kvBackends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			t.Run("put", func(t *testing.T) {
				t.Parallel()
				toolstest.Run(t, func(t *testing.T) tools.Tool { return builtin.KVPut(newKV(t), quotaOf(100)) },
					toolstest.Case{Name: "object", Input: json.RawMessage(`{"key":"k1","value":{"a": [1, 2]}}`),
						Check: func(t *testing.T, out json.RawMessage) {
							require.JSONEq(t, `{"key":"k1","namespace":"default","bytes":11}`, string(out))
						}},
					toolstest.Case{Name: "namespace and string", Input: json.RawMessage(`{"key":"k","value":"v","namespace":"notes"}`),
						Check: func(t *testing.T, out json.RawMessage) {
							require.JSONEq(t, `{"key":"k","namespace":"notes","bytes":3}`, string(out))
						}},
					toolstest.Case{Name: "null value", Input: json.RawMessage(`{"key":"k","value":null}`)},
					toolstest.Case{Name: "missing value", Input: json.RawMessage(`{"key":"k"}`), WantCode: errs.InvalidRequest, WantField: "value"},
					toolstest.Case{Name: "empty key", Input: json.RawMessage(`{"key":"","value":1}`), WantCode: errs.InvalidRequest, WantField: "key"},
					toolstest.Case{Name: "long key", Input: json.RawMessage(`{"key":"` + strings.Repeat("k", 257) + `","value":1}`), WantCode: errs.InvalidRequest, WantField: "key"},
					toolstest.Case{Name: "control key", Input: json.RawMessage(`{"key":"a\nb","value":1}`), WantCode: errs.InvalidRequest, WantField: "key"},
					toolstest.Case{Name: "empty namespace", Input: json.RawMessage(`{"key":"k","value":1,"namespace":""}`), WantCode: errs.InvalidRequest, WantField: "namespace"},
					toolstest.Case{Name: "over quota", Input: json.RawMessage(`{"key":"big","value":"` + strings.Repeat("x", 200) + `"}`), WantCode: errs.QuotaExceeded},
				)
			})
			t.Run("get", func(t *testing.T) {
				t.Parallel()
				toolstest.Run(t, func(t *testing.T) tools.Tool {
					kv := newKV(t)
					require.NoError(t, kv.KVPut(context.Background(), toolstest.DefaultTenant, "default", "seeded", []byte(`{"a":1}`), 0))
					return builtin.KVGet(kv)
				},
					toolstest.Case{Name: "found", Input: json.RawMessage(`{"key":"seeded"}`), Check: func(t *testing.T, out json.RawMessage) {
						require.JSONEq(t, `{"key":"seeded","namespace":"default","value":{"a":1},"found":true}`, string(out))
					}},
					toolstest.Case{Name: "missing", Input: json.RawMessage(`{"key":"nope"}`), Check: func(t *testing.T, out json.RawMessage) {
						require.JSONEq(t, `{"key":"nope","namespace":"default","value":null,"found":false}`, string(out))
					}},
					toolstest.Case{Name: "other tenant", TenantID: "tnt_other", Input: json.RawMessage(`{"key":"seeded"}`), Check: func(t *testing.T, out json.RawMessage) {
						require.JSONEq(t, `{"key":"seeded","namespace":"default","value":null,"found":false}`, string(out))
					}},
					toolstest.Case{Name: "other namespace", Input: json.RawMessage(`{"key":"seeded","namespace":"x"}`), Check: func(t *testing.T, out json.RawMessage) {
						require.Contains(t, string(out), `"found":false`)
					}},
					toolstest.Case{Name: "key type", Input: json.RawMessage(`{"key":7}`), WantCode: errs.InvalidRequest, WantField: "key"},
				)
			})
		})
	}
}

func TestKVRoundTripAndQuota(t *testing.T) {
	t.Parallel()
	for name, newKV := range kvBackends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			kv := newKV(t)
			// Entries count namespace, key, value (as JSON) and a fixed overhead.
			a := store.KVEntrySize("default", "a", []byte(`"0123456789"`))
			b := store.KVEntrySize("default", "b", []byte(`"`+strings.Repeat("x", 24)+`"`))
			put, get := builtin.KVPut(kv, quotaOf(a+b)), builtin.KVGet(kv)

			out, err := put.Invoke(ctx, call("tnt_a", `{"key":"a","value":"0123456789"}`))
			require.NoError(t, err)
			require.JSONEq(t, `{"key":"a","namespace":"default","bytes":12}`, string(out))
			out, err = get.Invoke(ctx, call("tnt_a", `{"key":"a"}`))
			require.NoError(t, err)
			require.JSONEq(t, `{"key":"a","namespace":"default","value":"0123456789","found":true}`, string(out))

			// a + b fits exactly.
			_, err = put.Invoke(ctx, call("tnt_a", `{"key":"b","value":"`+strings.Repeat("x", 24)+`"}`))
			require.NoError(t, err)
			// One more byte does not, and writes nothing.
			_, err = put.Invoke(ctx, call("tnt_a", `{"key":"c","value":1}`))
			require.ErrorIs(t, err, errs.ErrQuotaExceeded)
			require.NotEmpty(t, errs.As(err).Message)
			out, err = get.Invoke(ctx, call("tnt_a", `{"key":"c"}`))
			require.NoError(t, err)
			require.Contains(t, string(out), `"found":false`)

			// Replacing a value counts the old one out.
			_, err = put.Invoke(ctx, call("tnt_a", `{"key":"a","value":"9876543210"}`))
			require.NoError(t, err)
			// Another tenant has its own quota.
			_, err = put.Invoke(ctx, call("tnt_b", `{"key":"c","value":1}`))
			require.NoError(t, err)
			// The whitespace of the value does not matter.
			out, err = put.Invoke(ctx, call("tnt_b", `{"key":"d","value": { "x" : [ 1 , 2 ] } }`))
			require.NoError(t, err)
			require.JSONEq(t, `{"key":"d","namespace":"default","bytes":11}`, string(out))
			out, err = get.Invoke(ctx, call("tnt_b", `{"key":"d"}`))
			require.NoError(t, err)
			require.JSONEq(t, `{"key":"d","namespace":"default","value":{"x":[1,2]},"found":true}`, string(out))
		})
	}
}

func TestKVErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	_, err := builtin.KVPut(newMemKV(), nil).Invoke(ctx, tools.Call{Input: json.RawMessage(`{"key":"k","value":1}`)})
	require.ErrorIs(t, err, errs.ErrForbidden, "a call without tenant is refused")

	c := call("tnt_a", `{"key":"k"}`)
	c.Auth.TenantID = "tnt_b"
	_, err = builtin.KVGet(newMemKV()).Invoke(ctx, c)
	require.ErrorIs(t, err, errs.ErrForbidden, "a caller of another tenant is refused")

	failing := func(context.Context, string) (int64, error) {
		return 0, errs.E(errs.DependencyUnavailable, "store down")
	}
	_, err = builtin.KVPut(newMemKV(), failing).Invoke(ctx, call("tnt_a", `{"key":"k","value":1}`))
	require.Equal(t, errs.DependencyUnavailable, errs.CodeOf(err))

	_, err = builtin.KVGet(brokenKV{}).Invoke(ctx, call("tnt_a", `{"key":"k"}`))
	var e *errs.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, errs.Internal, e.Code)
	require.NotContains(t, e.Message, "secret detail")

	_, err = builtin.KVPut(newMemKV(), nil).Invoke(ctx, call("tnt_a", `{"key":"k","value":"`+strings.Repeat("x", builtin.MaxValueBytes)+`"}`))
	require.ErrorIs(t, err, errs.ErrInvalid)
	require.Equal(t, "value", errs.As(err).Details["field"])
}

// brokenKV fails every call with a plain error.
type brokenKV struct{}

func (brokenKV) KVPut(context.Context, string, string, string, []byte, int64) error {
	return errors.New("secret detail")
}

func (brokenKV) KVGet(context.Context, string, string, string) ([]byte, error) {
	return nil, errors.New("secret detail")
}
