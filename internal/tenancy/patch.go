package tenancy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/store"
)

// patchable are the tenant fields a PATCH may change.
var patchable = []string{"name", "status", "plan_tier", "default_policy_id", "entitlements", "quotas", "metadata"}

// MergePatch applies a tenant PATCH body to t and returns the result,
// validated. The body is an object with any of name, status, plan_tier,
// default_policy_id, entitlements, quotas and metadata (optionally wrapped
// as {"tenant_patch":{...}} or {"tenant":{...}}). Objects merge field by
// field at every depth (patching quotas.runs.max_concurrent_runs keeps
// every other quota); lists replace. null clears a string field and is
// refused elsewhere. Unknown fields are ignored; tenant_id may be repeated
// but not changed. Errors are invalid_request naming the field; t is never
// modified. UpdatedAt is left to the caller.
func MergePatch(t store.Tenant, patch json.RawMessage) (store.Tenant, error) {
	var top map[string]any
	if err := decodeObject(patch, &top); err != nil {
		return store.Tenant{}, err
	}
	if len(top) == 1 {
		for _, wrap := range []string{"tenant_patch", "tenant"} {
			if inner, ok := top[wrap].(map[string]any); ok {
				top = inner
			}
		}
	}
	if v, ok := top["tenant_id"]; ok {
		if s, isStr := v.(string); !isStr || s != t.TenantID {
			return store.Tenant{}, errs.Field("tenant_id", "cannot be changed (tenant is %q)", t.TenantID)
		}
	}

	curJSON, err := json.Marshal(t)
	if err != nil {
		return store.Tenant{}, errs.Wrap(errs.Internal, err, "encode tenant")
	}
	var cur map[string]any
	if err := json.Unmarshal(curJSON, &cur); err != nil {
		return store.Tenant{}, errs.Wrap(errs.Internal, err, "encode tenant")
	}
	for _, k := range patchable {
		v, ok := top[k]
		if !ok {
			continue
		}
		merged, err := mergeValue(k, cur[k], v)
		if err != nil {
			return store.Tenant{}, err
		}
		cur[k] = merged
	}
	out, err := json.Marshal(cur)
	if err != nil {
		return store.Tenant{}, errs.Wrap(errs.Internal, err, "encode tenant")
	}
	var res store.Tenant
	if err := json.Unmarshal(out, &res); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return store.Tenant{}, errs.Field(httpx.JSONFieldPath(te.Field), "must be %s, got %s", kindOf(te.Type.Kind().String()), te.Value)
		}
		return store.Tenant{}, errs.Field("body", "invalid tenant patch: %v", err)
	}
	res.TenantID, res.CreatedAt, res.UpdatedAt = t.TenantID, t.CreatedAt, t.UpdatedAt
	if err := ValidateTenant(res); err != nil {
		return store.Tenant{}, err
	}
	return res, nil
}

// mergeValue merges patch value v onto current value cur at path field.
// Keys unknown to cur are ignored.
func mergeValue(field string, cur, v any) (any, error) {
	if v == nil {
		if _, isStr := cur.(string); isStr {
			return "", nil
		}
		return nil, errs.Field(field, "must not be null")
	}
	curObj, curIsObj := cur.(map[string]any)
	if !curIsObj {
		if cur == nil {
			// A nil list in the current tenant: a list is expected.
			if _, ok := v.([]any); !ok {
				return nil, errs.Field(field, "must be an array")
			}
		}
		return v, nil // scalars and lists replace; type errors surface on decode
	}
	patchObj, ok := v.(map[string]any)
	if !ok {
		return nil, errs.Field(field, "must be an object")
	}
	out := make(map[string]any, len(curObj))
	for k, cv := range curObj {
		out[k] = cv
	}
	keys := make([]string, 0, len(patchObj))
	for k := range patchObj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cv, known := curObj[k]
		if !known {
			continue
		}
		m, err := mergeValue(field+"."+k, cv, patchObj[k])
		if err != nil {
			return nil, err
		}
		out[k] = m
	}
	return out, nil
}

// decodeObject decodes a JSON object body into dst.
func decodeObject(b []byte, dst *map[string]any) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return errs.Field("body", "request body is empty; a JSON object is required")
	}
	if b[0] != '{' {
		return errs.Field("body", "must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(dst); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return errs.Field("body", "malformed JSON at offset %d: %v", se.Offset, se)
		}
		return errs.Field("body", "malformed JSON: %v", err)
	}
	if dec.More() {
		return errs.Field("body", "trailing data after the JSON object")
	}
	return nil
}

func kindOf(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	case "bool":
		return "a boolean"
	case "slice", "array":
		return "an array"
	case "map", "struct", "ptr":
		return "an object"
	}
	return fmt.Sprintf("a %s", goKind)
}
