package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite" // to tamper with the store file directly

	"github.com/nexixai/agentos/tests/testnode"
)

// TestAuditChainAfterThousandAdminActions: 1,000 admin actions through a
// real orchestrator, then `agentos audit verify` says the chain is intact;
// after one stored record is edited behind the node's back, it names that
// record.
func TestAuditChainAfterThousandAdminActions(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	node := testnode.Start(t, testnode.Options{Services: []string{"orchestrator"}})
	base := node.URL("orchestrator")
	admin := map[string]string{"Authorization": "Bearer " + node.Credentials().PlatformAdmin.Token}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := 0; i < 1000; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			code, out := runsJSON(t, "PATCH", base+"/v1/admin/tenants/tnt_demo", admin,
				map[string]any{"metadata": map[string]any{"billing_account": fmt.Sprintf("acct-%d", i)}})
			if code != 200 {
				t.Errorf("patch %d: %d %v", i, code, out)
			}
		}()
	}
	wg.Wait()
	node.Stop("orchestrator")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := node.Run(ctx, "audit", "verify")
	require.NoError(t, err, out)
	require.Contains(t, out, "audit chain ok")

	db, err := sql.Open("sqlite", filepath.Join(node.Home, "data", "agentos.db"))
	require.NoError(t, err)
	var seq int64
	require.NoError(t, db.QueryRow(`SELECT seq FROM audit_log WHERE action = 'tenant.update' ORDER BY seq LIMIT 1 OFFSET 500`).Scan(&seq))
	_, err = db.Exec(`UPDATE audit_log SET principal_id = 'usr_mallory' WHERE seq = ?`, seq)
	require.NoError(t, err)
	require.NoError(t, db.Close())

	out, err = node.Run(ctx, "audit", "verify")
	require.Error(t, err, "a broken chain exits non-zero")
	require.Contains(t, out, fmt.Sprintf("broken at seq %d", seq))
}
