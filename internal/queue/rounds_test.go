package queue_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/queue"
)

func TestLimitsCallsEachTenantOnce(t *testing.T) {
	t.Parallel()
	calls := map[string]int{}
	p := queue.LeaseParams{TenantLimit: func(tenant string) int {
		calls[tenant]++
		return map[string]int{"a": 2, "c": -1}[tenant]
	}}
	require.Equal(t, map[string]int{"a": 2, "c": -1}, p.Limits([]string{"a", "b", "c"}))
	require.Equal(t, map[string]int{"a": 1, "b": 1, "c": 1}, calls)
	require.Empty(t, queue.LeaseParams{}.Limits([]string{"a"}))
}

// One entry per tenant per round, least recently served first; a limited
// tenant stops at its limit (counting leases it already held), a paused one
// gets nothing, a tenant with no entry left sits out later rounds.
func TestLeaseRounds(t *testing.T) {
	t.Parallel()
	entries := map[string][]string{"a": {"a1", "a2"}, "b": {"b1", "b2", "b3"}, "c": {"c1"}, "d": {"d1", "d2"}}
	asked := map[string]int{}
	leaseOne := func(tenant string) (queue.Lease, bool, error) {
		asked[tenant]++
		if len(entries[tenant]) == 0 {
			return queue.Lease{}, false, nil
		}
		l := queue.Lease{TenantID: tenant, RunID: entries[tenant][0]}
		entries[tenant] = entries[tenant][1:]
		return l, true, nil
	}
	active := map[string]int{"d": 1}
	out, err := queue.LeaseRounds([]string{"a", "b", "c", "d"}, 10, map[string]int{"a": 1, "c": -1, "d": 2}, active, leaseOne)
	require.NoError(t, err)
	var got []string
	for _, l := range out {
		got = append(got, l.RunID)
	}
	require.Equal(t, []string{"a1", "b1", "d1", "b2", "b3"}, got)
	require.Equal(t, map[string]int{"a": 1, "b": 4, "d": 1}, asked, "c is paused; a and d stop at their limits")
	require.Equal(t, map[string]int{"a": 1, "b": 3, "d": 2}, active)

	out, err = queue.LeaseRounds([]string{"a", "b"}, 1, nil, map[string]int{}, func(string) (queue.Lease, bool, error) {
		return queue.Lease{RunID: "x"}, true, nil
	})
	require.NoError(t, err)
	require.Len(t, out, 1, "max bounds the call")

	boom := errors.New("boom")
	_, err = queue.LeaseRounds([]string{"a"}, 1, nil, map[string]int{}, func(string) (queue.Lease, bool, error) {
		return queue.Lease{}, false, boom
	})
	require.ErrorIs(t, err, boom)
}
