package sqlstore

import (
	"encoding/json"

	"github.com/nexixai/agentos/internal/store"
)

// EncodeWorker validates w and encodes its JSON columns (labels, tenants).
func EncodeWorker(w store.Worker) (labels, tenants string, err error) {
	if err := w.Validate(); err != nil {
		return "", "", err
	}
	if w.Labels == nil {
		w.Labels = map[string]string{}
	}
	if w.Tenants == nil {
		w.Tenants = []string{}
	}
	l, err := json.Marshal(w.Labels)
	if err != nil {
		return "", "", err
	}
	t, err := json.Marshal(w.Tenants)
	return string(l), string(t), err
}

// DecodeWorker decodes a worker's JSON columns into w.
func DecodeWorker(w *store.Worker, labels, tenants []byte) error {
	if err := FromJSON(labels, &w.Labels); err != nil {
		return err
	}
	if w.Labels == nil {
		w.Labels = map[string]string{}
	}
	if err := FromJSON(tenants, &w.Tenants); err != nil {
		return err
	}
	if w.Tenants == nil {
		w.Tenants = []string{}
	}
	return nil
}

// WorkerCols are the workers table's columns in scan order.
const WorkerCols = `worker_id, labels, public_key, tenants, status, created_at, updated_at, revoked_at`
