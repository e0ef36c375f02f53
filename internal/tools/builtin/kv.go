package builtin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"unicode"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/tools"
)

// Tool ids of the key/value tools.
const (
	KVPutID = "tool.kv.put"
	KVGetID = "tool.kv.get"
)

// Limits of the key/value tools.
const (
	// DefaultNamespace is used when the input names none.
	DefaultNamespace = "default"
	// MaxKeyLen is the longest key, in characters.
	MaxKeyLen = 256
	// MaxNamespaceLen is the longest namespace, in characters.
	MaxNamespaceLen = 64
	// MaxValueBytes is the largest single value (compact JSON).
	MaxValueBytes = 1 << 20
)

// KV is the storage the key/value tools use; store.KVStore satisfies it.
type KV interface {
	// KVPut stores value under (tenant, namespace, key). If maxBytes > 0
	// and the tenant's total stored bytes after the put would exceed it,
	// nothing is written and an errs quota_exceeded error is returned.
	KVPut(ctx context.Context, tenantID, namespace, key string, value []byte, maxBytes int64) error
	// KVGet returns errs.ErrNotFound if absent.
	KVGet(ctx context.Context, tenantID, namespace, key string) ([]byte, error)
}

var kvPutSchema = json.RawMessage(`{
  "type": "object",
  "properties": {
    "key":       {"type": "string", "minLength": 1, "maxLength": 256, "description": "Key to store the value under."},
    "value":     {"description": "Any JSON value to store."},
    "namespace": {"type": "string", "minLength": 1, "maxLength": 64, "description": "Namespace of the key (default \"default\")."}
  },
  "required": ["key", "value"]
}`)

var kvGetSchema = json.RawMessage(`{
  "type": "object",
  "properties": {
    "key":       {"type": "string", "minLength": 1, "maxLength": 256, "description": "Key to read."},
    "namespace": {"type": "string", "minLength": 1, "maxLength": 64, "description": "Namespace of the key (default \"default\")."}
  },
  "required": ["key"]
}`)

type kvPut struct {
	st    KV
	quota func(ctx context.Context, tenantID string) (int64, error)
}

// KVPut returns tool.kv.put: {"key", "value" (any JSON), "namespace"?} →
// {"key", "namespace", "bytes"}. The value is stored as compact JSON in the
// calling tenant's memory; quota returns the tenant's max_memory_bytes
// (0 or a nil quota: unlimited) and a put past it is quota_exceeded.
func KVPut(st KV, quota func(ctx context.Context, tenantID string) (int64, error)) tools.Tool {
	return &kvPut{st: st, quota: quota}
}

func (*kvPut) Spec() tools.Spec {
	return tools.Spec{
		ToolID:      KVPutID,
		Name:        "kv_put",
		Description: "Stores a JSON value under a key in the tenant's key/value memory, replacing any previous value.",
		InputSchema: kvPutSchema,
		Idempotent:  true,
	}
}

func (k *kvPut) Invoke(ctx context.Context, c tools.Call) (json.RawMessage, error) {
	if err := tools.ContextError(ctx, KVPutID); err != nil {
		return nil, err
	}
	var in struct {
		Key       string          `json:"key"`
		Value     json.RawMessage `json:"value"`
		Namespace string          `json:"namespace"`
	}
	if err := tools.DecodeInput(kvPutSchema, c.Input, &in); err != nil {
		return nil, err
	}
	ns, err := checkKey(in.Key, in.Namespace)
	if err != nil {
		return nil, err
	}
	var value bytes.Buffer
	if err := json.Compact(&value, in.Value); err != nil {
		return nil, errs.Field("value", "is not valid JSON")
	}
	if value.Len() > MaxValueBytes {
		return nil, errs.Field("value", "is %d bytes, larger than the limit of %d", value.Len(), MaxValueBytes)
	}
	tenant, err := callTenant(c)
	if err != nil {
		return nil, err
	}
	var maxBytes int64
	if k.quota != nil {
		if maxBytes, err = k.quota(ctx, tenant); err != nil {
			return nil, kvError(ctx, KVPutID, err)
		}
	}
	if err := k.st.KVPut(ctx, tenant, ns, in.Key, value.Bytes(), maxBytes); err != nil {
		if errors.Is(err, errs.ErrQuotaExceeded) {
			e := errs.As(err)
			if e.Message == "" {
				e = errs.Wrap(errs.QuotaExceeded, err, "max_memory_bytes: storing %d bytes would exceed the tenant's memory quota of %d bytes",
					value.Len(), maxBytes).WithDetails(map[string]any{"limit": maxBytes, "quota": "max_memory_bytes"})
			}
			return nil, e
		}
		return nil, kvError(ctx, KVPutID, err)
	}
	return marshal(KVPutID, map[string]any{"key": in.Key, "namespace": ns, "bytes": value.Len()})
}

type kvGet struct{ st KV }

// KVGet returns tool.kv.get: {"key", "namespace"?} → {"key", "namespace",
// "value", "found"}; a missing key is found:false with a null value.
func KVGet(st KV) tools.Tool { return &kvGet{st: st} }

func (*kvGet) Spec() tools.Spec {
	return tools.Spec{
		ToolID:      KVGetID,
		Name:        "kv_get",
		Description: "Reads the JSON value stored under a key in the tenant's key/value memory.",
		InputSchema: kvGetSchema,
		Idempotent:  true,
	}
}

func (k *kvGet) Invoke(ctx context.Context, c tools.Call) (json.RawMessage, error) {
	if err := tools.ContextError(ctx, KVGetID); err != nil {
		return nil, err
	}
	var in struct {
		Key       string `json:"key"`
		Namespace string `json:"namespace"`
	}
	if err := tools.DecodeInput(kvGetSchema, c.Input, &in); err != nil {
		return nil, err
	}
	ns, err := checkKey(in.Key, in.Namespace)
	if err != nil {
		return nil, err
	}
	tenant, err := callTenant(c)
	if err != nil {
		return nil, err
	}
	out := struct {
		Key       string          `json:"key"`
		Namespace string          `json:"namespace"`
		Value     json.RawMessage `json:"value"`
		Found     bool            `json:"found"`
	}{Key: in.Key, Namespace: ns, Value: json.RawMessage("null")}
	v, err := k.st.KVGet(ctx, tenant, ns, in.Key)
	switch {
	case errors.Is(err, errs.ErrNotFound):
	case err != nil:
		return nil, kvError(ctx, KVGetID, err)
	case json.Valid(v):
		out.Value, out.Found = v, true
	default:
		// Written by something other than tool.kv.put: hand it back as text.
		s, _ := json.Marshal(strings.ToValidUTF8(string(v), "\uFFFD"))
		out.Value, out.Found = s, true
	}
	return marshal(KVGetID, out)
}

// checkKey validates key and namespace and returns the namespace to use.
func checkKey(key, ns string) (string, error) {
	if err := checkName("key", key, MaxKeyLen); err != nil {
		return "", err
	}
	if ns == "" {
		return DefaultNamespace, nil
	}
	return ns, checkName("namespace", ns, MaxNamespaceLen)
}

func checkName(field, s string, maxLen int) error {
	n := 0
	for _, r := range s {
		n++
		if r == unicode.ReplacementChar || unicode.IsControl(r) {
			return errs.Field(field, "must be valid text without control characters")
		}
	}
	switch {
	case n == 0:
		return errs.Field(field, "must not be empty")
	case n > maxLen:
		return errs.Field(field, "must be at most %d characters", maxLen)
	}
	return nil
}

// callTenant returns the tenant the call runs in.
func callTenant(c tools.Call) (string, error) {
	switch {
	case c.TenantID == "":
		return "", errs.E(errs.Forbidden, "tenant_id: the tool call has no tenant")
	case c.Auth.TenantID != "" && c.Auth.TenantID != c.TenantID && !c.Auth.HasRole(auth.RolePlatformAdmin):
		return "", errs.E(errs.Forbidden, "tenant_id: the caller does not belong to tenant %q", c.TenantID)
	}
	return c.TenantID, nil
}

// kvError maps a storage error: a done ctx becomes timeout/canceled, the
// rest keep their code (internal_error when they carry none).
func kvError(ctx context.Context, toolID string, err error) error {
	if cerr := tools.ContextError(ctx, toolID); cerr != nil {
		return cerr
	}
	return errs.As(err)
}
