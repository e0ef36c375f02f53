package apiclient

import (
	"context"
	"net/url"

	"github.com/nexixai/agentos/internal/memory"
)

// MemoryPut stores value under (namespace, key) in the tenant's searchable
// memory (PUT /v1/memory/{namespace}/{key}) and returns its bytes.
func (c *Client) MemoryPut(ctx context.Context, namespace, key string, value any) (memory.Entry, error) {
	var out memory.Entry
	err := c.Do(ctx, "PUT", c.BaseURL, memoryPath(namespace, key), map[string]any{"value": value}, &out)
	return out, err
}

// MemoryGet reads an entry (GET /v1/memory/{namespace}/{key}).
func (c *Client) MemoryGet(ctx context.Context, namespace, key string) (memory.Entry, error) {
	var out memory.Entry
	err := c.Do(ctx, "GET", c.BaseURL, memoryPath(namespace, key), nil, &out)
	return out, err
}

// MemoryDelete removes an entry (DELETE /v1/memory/{namespace}/{key}).
func (c *Client) MemoryDelete(ctx context.Context, namespace, key string) error {
	return c.Do(ctx, "DELETE", c.BaseURL, memoryPath(namespace, key), nil, nil)
}

// MemorySearch ranks a namespace's entries (POST /v1/memory/{namespace}:search).
func (c *Client) MemorySearch(ctx context.Context, namespace string, q memory.Query) ([]memory.Result, error) {
	var out struct {
		Results []memory.Result `json:"results"`
	}
	err := c.Do(ctx, "POST", c.BaseURL, "/v1/memory/"+url.PathEscape(namespace)+":search", q, &out)
	return out.Results, err
}

func memoryPath(namespace, key string) string {
	return "/v1/memory/" + url.PathEscape(namespace) + "/" + url.PathEscape(key)
}
