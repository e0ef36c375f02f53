package agentorchestrator

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTenantLabelsAreBounded(t *testing.T) {
	t.Parallel()
	var l tenantLabels
	for i := 0; i < maxTenantLabels; i++ {
		require.Equal(t, fmt.Sprintf("tnt_%d", i), l.label(fmt.Sprintf("tnt_%d", i)))
	}
	require.Equal(t, "other", l.label("tnt_late"))
	require.Equal(t, "tnt_3", l.label("tnt_3"), "a tenant keeps its series")
}
