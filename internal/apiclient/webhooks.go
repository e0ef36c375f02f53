package apiclient

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/nexixai/agentos/internal/store"
)

// ListWebhookDeliveries lists a run's webhook deliveries with their
// attempts (GET /v1/runs/{run_id}/webhook-deliveries).
func (c *Client) ListWebhookDeliveries(ctx context.Context, runID string) ([]store.WebhookDelivery, error) {
	var out struct {
		Deliveries []store.WebhookDelivery `json:"deliveries"`
	}
	err := c.Do(ctx, http.MethodGet, c.BaseURL, "/v1/runs/"+url.PathEscape(runID)+"/webhook-deliveries", nil, &out)
	return out.Deliveries, err
}

// WebhookSecret is the tenant's signing secret as the API shows it.
type WebhookSecret struct {
	Secret             string     `json:"secret"`
	CreatedAt          time.Time  `json:"created_at"`
	PreviousValidUntil *time.Time `json:"previous_valid_until"`
}

// GetWebhookSecret returns the tenant's signing secret, made on first use
// (tenant_admin).
func (c *Client) GetWebhookSecret(ctx context.Context) (WebhookSecret, error) {
	var out struct {
		Secret WebhookSecret `json:"webhook_secret"`
	}
	err := c.Do(ctx, http.MethodGet, c.BaseURL, "/v1/webhooks/secret", nil, &out)
	return out.Secret, err
}

// RotateWebhookSecret replaces the signing secret; the previous one still
// signs (as a second signature) for 24 hours.
func (c *Client) RotateWebhookSecret(ctx context.Context) (WebhookSecret, error) {
	var out struct {
		Secret WebhookSecret `json:"webhook_secret"`
	}
	err := c.Do(ctx, http.MethodPost, c.BaseURL, "/v1/webhooks/secret:rotate", nil, &out)
	return out.Secret, err
}

// PutWebhookEndpoint registers or replaces a tenant default endpoint:
// events "terminal" or "all" (tenant_admin).
func (c *Client) PutWebhookEndpoint(ctx context.Context, endpointID, rawURL, events string) (store.WebhookEndpoint, error) {
	body := map[string]any{"url": rawURL}
	if events != "" {
		body["events"] = []string{events}
	}
	var out struct {
		Endpoint store.WebhookEndpoint `json:"endpoint"`
	}
	err := c.Do(ctx, http.MethodPut, c.BaseURL, "/v1/webhooks/endpoints/"+url.PathEscape(endpointID), body, &out)
	return out.Endpoint, err
}

// ListWebhookEndpoints lists the tenant's default endpoints.
func (c *Client) ListWebhookEndpoints(ctx context.Context) ([]store.WebhookEndpoint, error) {
	var out struct {
		Endpoints []store.WebhookEndpoint `json:"endpoints"`
	}
	err := c.Do(ctx, http.MethodGet, c.BaseURL, "/v1/webhooks/endpoints", nil, &out)
	return out.Endpoints, err
}

// DeleteWebhookEndpoint removes a default endpoint.
func (c *Client) DeleteWebhookEndpoint(ctx context.Context, endpointID string) error {
	return c.Do(ctx, http.MethodDelete, c.BaseURL, "/v1/webhooks/endpoints/"+url.PathEscape(endpointID), nil, nil)
}
