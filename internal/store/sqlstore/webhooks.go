package sqlstore

import (
	"context"
	"time"

	"github.com/nexixai/agentos/internal/ids"
	"github.com/nexixai/agentos/internal/store"
)

// outbox adds, inside the transaction that appends evs to their run, one
// pending delivery per event and webhook target that wants it, due now.
// targets nil: the run's targets are read (a run without any costs one
// indexed lookup per change).
func outbox(ctx context.Context, tx Tx, targets []store.WebhookTarget, evs []store.Event, now time.Time) error {
	if len(evs) == 0 {
		return nil
	}
	if targets == nil {
		var err error
		if targets, err = tx.WebhookTargets(ctx, evs[0].TenantID, evs[0].RunID); err != nil || len(targets) == 0 {
			return err
		}
	}
	var ds []store.WebhookDelivery
	for _, e := range evs {
		for _, t := range targets {
			if !t.Wants(e.Type) {
				continue
			}
			due := now
			ds = append(ds, store.WebhookDelivery{TenantID: e.TenantID, DeliveryID: ids.New("msg_"), RunID: e.RunID,
				Sequence: e.Sequence, EventID: e.EventID, EventType: e.Type, URL: t.URL, EndpointID: t.EndpointID,
				Status: store.DeliveryPending, NextAttemptAt: &due, CreatedAt: now})
		}
	}
	if len(ds) == 0 {
		return nil
	}
	return tx.InsertDeliveries(ctx, ds)
}
