package apiclient

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/nexixai/agentos/internal/store"
)

// ScheduleRequest is the body of POST /v1/schedules: Cron or Every, and
// Input as a plain string or {"type":"text","text":...}.
type ScheduleRequest struct {
	AgentID       string `json:"agent_id"`
	Cron          string `json:"cron,omitempty"`
	Every         string `json:"every,omitempty"`
	Timezone      string `json:"timezone,omitempty"`
	Input         any    `json:"input"`
	ThreadID      string `json:"thread_id,omitempty"`
	MisfirePolicy string `json:"misfire_policy,omitempty"`
	CatchUpMax    int    `json:"catch_up_max,omitempty"`
}

type scheduleBody struct {
	Schedule store.Schedule `json:"schedule"`
}

// CreateSchedule creates a schedule (POST /v1/schedules).
func (c *Client) CreateSchedule(ctx context.Context, req ScheduleRequest) (store.Schedule, error) {
	var out scheduleBody
	err := c.Do(ctx, http.MethodPost, c.BaseURL, "/v1/schedules", req, &out)
	return out.Schedule, err
}

// GetSchedule returns a schedule.
func (c *Client) GetSchedule(ctx context.Context, id string) (store.Schedule, error) {
	var out scheduleBody
	err := c.Do(ctx, http.MethodGet, c.BaseURL, "/v1/schedules/"+url.PathEscape(id), nil, &out)
	return out.Schedule, err
}

// ListSchedules returns one page of the tenant's schedules by id and the
// cursor of the next ("" on the last).
func (c *Client) ListSchedules(ctx context.Context, cursor string, limit int) ([]store.Schedule, string, error) {
	q := url.Values{}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/v1/schedules"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out struct {
		Schedules  []store.Schedule `json:"schedules"`
		NextCursor *string          `json:"next_cursor"`
	}
	err := c.Do(ctx, http.MethodGet, c.BaseURL, path, nil, &out)
	next := ""
	if out.NextCursor != nil {
		next = *out.NextCursor
	}
	return out.Schedules, next, err
}

// PauseSchedule stops a schedule's ticks (POST /v1/schedules/{id}:pause).
func (c *Client) PauseSchedule(ctx context.Context, id string) (store.Schedule, error) {
	var out scheduleBody
	err := c.Do(ctx, http.MethodPost, c.BaseURL, "/v1/schedules/"+url.PathEscape(id)+":pause", nil, &out)
	return out.Schedule, err
}

// ResumeSchedule restarts a paused schedule from its next tick.
func (c *Client) ResumeSchedule(ctx context.Context, id string) (store.Schedule, error) {
	var out scheduleBody
	err := c.Do(ctx, http.MethodPost, c.BaseURL, "/v1/schedules/"+url.PathEscape(id)+":resume", nil, &out)
	return out.Schedule, err
}

// DeleteSchedule deletes a schedule.
func (c *Client) DeleteSchedule(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, c.BaseURL, "/v1/schedules/"+url.PathEscape(id), nil, nil)
}
