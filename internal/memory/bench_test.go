package memory_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/memory"
	"github.com/nexixai/agentos/internal/store/sqlite"
)

// BenchmarkSearch measures one search of each mode over a namespace of
// 5,000 twelve-word documents on SQLite (the vector scan reads every
// embedding of the namespace). The embedding call is in-process here; on
// a node it is one model-policy round trip more.
func BenchmarkSearch(b *testing.B) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, b.TempDir()+"/m.db")
	require.NoError(b, err)
	b.Cleanup(func() { _ = db.Close() })
	svc := &memory.Service{Store: db, Model: &projector{}}
	c := memory.Caller{Auth: auth.Context{TenantID: "ten_a"}, TenantID: "ten_a"}
	words := strings.Fields(strings.Join(func() []string {
		var all []string
		for _, t := range corpus {
			all = append(all, t)
		}
		return all
	}(), " "))
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 5000 {
		doc := make([]string, 12)
		for j := range doc {
			doc[j] = words[r.IntN(len(words))]
		}
		v, _ := json.Marshal(map[string]string{"text": strings.Join(doc, " ")})
		_, err := svc.Put(ctx, c, "bench", fmt.Sprintf("d%d", i), v)
		require.NoError(b, err)
	}
	for _, mode := range []string{memory.ModeKeyword, memory.ModeVector, memory.ModeHybrid} {
		b.Run(mode, func(b *testing.B) {
			for b.Loop() {
				_, err := svc.Search(ctx, c, "bench", memory.Query{Query: "humpback whales migrate", Mode: mode, TopK: 10})
				require.NoError(b, err)
			}
		})
	}
}
