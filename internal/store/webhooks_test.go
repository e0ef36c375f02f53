package store_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/store"
)

func TestWebhookTargetWants(t *testing.T) {
	t.Parallel()
	all := store.WebhookTarget{Events: store.WebhookEventsAll}
	term := store.WebhookTarget{Events: store.WebhookEventsTerminal}
	for typ, want := range map[string][2]bool{
		store.EventRunCreated:   {true, false},
		store.EventStepStarted:  {true, false},
		store.EventRunCompleted: {true, true},
		store.EventRunFailed:    {true, true},
		store.EventRunCanceled:  {true, true},
		"agentos.model.delta":   {false, false},
	} {
		require.Equal(t, want[0], all.Wants(typ), "all: %s", typ)
		require.Equal(t, want[1], term.Wants(typ), "terminal: %s", typ)
	}
}
