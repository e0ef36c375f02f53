package sqlite_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlite"
)

// TestUpgradeKeepsData builds a database with the schema of migrations 1
// and 2 and some data, then opens it with the current code: the later
// migrations (which rebuild events, queue_entries and audit_log) keep every
// row, and the store works on the result.
func TestUpgradeKeepsData(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	raw, err := sql.Open("sqlite", path+"?_pragma=foreign_keys(1)")
	require.NoError(t, err)
	_, err = raw.Exec(`CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`)
	require.NoError(t, err)
	// In order: migration 2 indexes a table migration 1 creates.
	for i, name := range []string{"0001_init.sql", "0002_queue_lease_index.sql"} {
		v := i + 1
		b, err := os.ReadFile(filepath.Join("migrations", name))
		require.NoError(t, err)
		_, err = raw.Exec(string(b))
		require.NoError(t, err)
		_, err = raw.Exec(`INSERT INTO schema_migrations VALUES (?, ?, 0)`, v, name)
		require.NoError(t, err)
	}
	_, err = raw.Exec(`INSERT INTO runs VALUES ('tnt_a','run_1','agt_1','usr_1','queued',1,NULL,NULL,'{"type":"text","text":"x"}',NULL,
		'{}','{}','{}',NULL,NULL,'/v1/runs/run_1/events','corr_1','tp','',0)`)
	require.NoError(t, err)
	_, err = raw.Exec(`INSERT INTO events VALUES ('tnt_a','run_1',1,'evt_1',1,'agentos.run.created','agt_1',NULL,'tp','sp','{"status":"queued"}')`)
	require.NoError(t, err)
	_, err = raw.Exec(`INSERT INTO queue_entries (tenant_id, run_id, priority, enqueued_at) VALUES ('tnt_a','run_1',1,1)`)
	require.NoError(t, err)
	require.NoError(t, raw.Close())

	db, err := sqlite.Open(ctx, path)
	require.NoError(t, err)
	defer db.Close()
	evs, err := db.ListEvents(ctx, store.ListEventsParams{TenantID: "tnt_a", RunID: "run_1"})
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.Equal(t, "evt_1", evs[0].EventID)
	var queued int
	require.NoError(t, db.SQL().QueryRowContext(ctx, `SELECT count(*) FROM queue_entries`).Scan(&queued))
	require.Equal(t, 1, queued)
	// The audit chain starts on the rebuilt table.
	r, err := db.AppendAudit(ctx, store.AuditRecord{TenantID: "tnt_a", Action: "x", Outcome: "ok"})
	require.NoError(t, err)
	require.EqualValues(t, 1, r.Seq)
	more, err := db.ApplyRunChange(ctx, store.RunChange{TenantID: "tnt_a", RunID: "run_1",
		Events: []store.Event{{Type: store.EventStepStarted}}})
	require.NoError(t, err)
	require.EqualValues(t, 2, more[0].Sequence)
}
