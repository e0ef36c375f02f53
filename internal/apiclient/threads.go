package apiclient

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/nexixai/agentos/internal/store"
)

// CreateThread creates a thread with metadata (nil for none).
func (c *Client) CreateThread(ctx context.Context, metadata map[string]string) (store.Thread, error) {
	body := map[string]any{}
	if metadata != nil {
		body["metadata"] = metadata
	}
	var out struct {
		Thread store.Thread `json:"thread"`
	}
	err := c.Do(ctx, http.MethodPost, c.BaseURL, "/v1/threads", body, &out)
	return out.Thread, err
}

// GetThread returns a thread.
func (c *Client) GetThread(ctx context.Context, threadID string) (store.Thread, error) {
	var out struct {
		Thread store.Thread `json:"thread"`
	}
	err := c.Do(ctx, http.MethodGet, c.BaseURL, "/v1/threads/"+url.PathEscape(threadID), nil, &out)
	return out.Thread, err
}

// ThreadFilter selects threads for ListThreads.
type ThreadFilter struct {
	// Metadata pairs must all match (metadata[<key>]=<value>).
	Metadata map[string]string
	Cursor   string
	Limit    int
}

// ListThreads returns one page of the tenant's threads, newest first, and
// the cursor of the next page ("" on the last).
func (c *Client) ListThreads(ctx context.Context, f ThreadFilter) ([]store.Thread, string, error) {
	q := url.Values{}
	for k, v := range f.Metadata {
		q.Set("metadata["+k+"]", v)
	}
	if f.Cursor != "" {
		q.Set("cursor", f.Cursor)
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	path := "/v1/threads"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out struct {
		Threads    []store.Thread `json:"threads"`
		NextCursor *string        `json:"next_cursor"`
	}
	err := c.Do(ctx, http.MethodGet, c.BaseURL, path, nil, &out)
	return out.Threads, deref(out.NextCursor), err
}

// DeleteThread deletes a thread and its messages.
func (c *Client) DeleteThread(ctx context.Context, threadID string) error {
	return c.Do(ctx, http.MethodDelete, c.BaseURL, "/v1/threads/"+url.PathEscape(threadID), nil, nil)
}

// ListThreadMessages returns one page of a thread's messages, oldest
// first, and the cursor of the next page ("" on the last).
func (c *Client) ListThreadMessages(ctx context.Context, threadID, cursor string, limit int) ([]store.ThreadMessage, string, error) {
	q := url.Values{}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/v1/threads/" + url.PathEscape(threadID) + "/messages"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out struct {
		Messages   []store.ThreadMessage `json:"messages"`
		NextCursor *string               `json:"next_cursor"`
	}
	err := c.Do(ctx, http.MethodGet, c.BaseURL, path, nil, &out)
	return out.Messages, deref(out.NextCursor), err
}

// ThreadMessages returns all of a thread's messages, following pages.
func (c *Client) ThreadMessages(ctx context.Context, threadID string) ([]store.ThreadMessage, error) {
	var all []store.ThreadMessage
	cursor := ""
	for {
		page, next, err := c.ListThreadMessages(ctx, threadID, cursor, 1000)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if next == "" {
			return all, nil
		}
		cursor = next
	}
}

// CreateThreadRun starts a run of agentID on a thread with a text input;
// strategy is the multitask_strategy ("" for the server's default,
// reject); extra adds run-create fields (run_options, idempotency_key...).
func (c *Client) CreateThreadRun(ctx context.Context, threadID, agentID, text, strategy string, extra map[string]any) (store.Run, error) {
	body := map[string]any{"input": map[string]any{"type": "text", "text": text}, "agent_id": agentID}
	if strategy != "" {
		body["multitask_strategy"] = strategy
	}
	for k, v := range extra {
		body[k] = v
	}
	var out struct {
		Run store.Run `json:"run"`
	}
	err := c.Do(ctx, http.MethodPost, c.BaseURL, "/v1/threads/"+url.PathEscape(threadID)+"/runs", body, &out)
	return out.Run, err
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
