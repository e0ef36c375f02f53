package interop

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/tests/testnode"
)

// sdkNode is a real node (agentos processes on loopback) with a tenant
// whose max_tokens_per_request is small, and an API token for it issued by
// the CLI, as the README tells a user to: the SDKs always send
// Authorization, so the demo header identity does not apply to them.
type sdkNode struct {
	baseURL string // model-policy's OpenAI base URL: .../openai/v1
	token   string
}

func startSDKNode(t *testing.T) sdkNode {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real processes; skipped with -short")
	}
	n := testnode.Start(t, testnode.Options{})
	cli := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := n.Run(ctx, args...)
		require.NoError(t, err, out)
		return out
	}
	cli("tenants", "create", "tnt_sdk", "--name", "SDK interop", "--max-tokens-per-request", "2000")
	out := cli("tokens", "issue", "--tenant", "tnt_sdk", "--principal", "usr_sdk", "--scopes", "models:invoke,models:list", "--json")
	var issued struct {
		Token struct {
			Secret string `json:"secret"`
		} `json:"token"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &issued), out)
	require.NotEmpty(t, issued.Token.Secret)
	return sdkNode{baseURL: n.URL("model-policy") + "/openai/v1", token: issued.Token.Secret}
}

// TestGoSDKAgainstRealNode: the official Go SDK, configured only with the
// base URL and the token, against a real node.
func TestGoSDKAgainstRealNode(t *testing.T) {
	t.Parallel()
	node := startSDKNode(t)
	ctx := context.Background()
	c := openai.NewClient(option.WithBaseURL(node.baseURL), option.WithAPIKey(node.token), option.WithMaxRetries(0),
		option.WithRequestTimeout(30*time.Second))

	page, err := c.Models.List(ctx)
	require.NoError(t, err)
	var ids []string
	for _, m := range page.Data {
		require.Equal(t, "model", string(m.Object))
		require.NotEmpty(t, m.OwnedBy)
		require.NotZero(t, m.Created)
		ids = append(ids, m.ID)
	}
	require.Contains(t, ids, "builtin/echo-fast")
	m, err := c.Models.Get(ctx, "builtin/echo-fast")
	require.NoError(t, err)
	require.Equal(t, "builtin/echo-fast", m.ID)

	chat, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "tier:fast",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello from go")}})
	require.NoError(t, err)
	require.Contains(t, chat.Choices[0].Message.Content, "hello from go")

	stream := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "tier:fast",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("stream from go")}})
	var acc openai.ChatCompletionAccumulator
	chunks := 0
	for stream.Next() {
		acc.AddChunk(stream.Current())
		chunks++
	}
	require.NoError(t, stream.Err())
	require.Greater(t, chunks, 1)
	require.Contains(t, acc.Choices[0].Message.Content, "stream from go")

	emb, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "tier:embed",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a", "b"}}})
	require.NoError(t, err)
	require.Len(t, emb.Data, 2)
	require.NotEmpty(t, emb.Data[0].Embedding)

	// Errors carry OpenAI's type and param.
	_, err = c.Models.Get(ctx, "builtin/no-such-model")
	var apiErr *openai.Error
	require.True(t, errors.As(err, &apiErr), "%v", err)
	require.Equal(t, 404, apiErr.StatusCode)
	require.Equal(t, "not_found_error", apiErr.Type)
	require.Equal(t, "model", apiErr.Param)
	_, err = c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "tier:fast", MaxTokens: openai.Int(100000),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
	require.True(t, errors.As(err, &apiErr), "%v", err)
	require.Equal(t, 400, apiErr.StatusCode, "over max_tokens_per_request is a 400, not a 429 the SDK would retry")
	require.Equal(t, "invalid_request_error", apiErr.Type)
	require.Equal(t, "max_tokens", apiErr.Param)
	require.Equal(t, "invalid_request", apiErr.Code)
}

// TestNodeSDKAgainstRealNode runs tests/interop/node/sdk.mjs, the official
// Node SDK (the version pinned in package-lock.json), against a real node.
// .ci/run installs it (npm ci) and sets AGENTOS_TEST_NODE_SDK=1, which
// makes a missing install a failure; elsewhere it is skipped saying how
// to install it.
func TestNodeSDKAgainstRealNode(t *testing.T) {
	t.Parallel()
	dir, err := filepath.Abs("node")
	require.NoError(t, err)
	required := os.Getenv("AGENTOS_TEST_NODE_SDK") == "1"
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "openai", "package.json")); err != nil {
		msg := "the Node OpenAI SDK is not installed: run (cd tests/interop/node && npm ci)"
		if required {
			t.Fatal(msg + " (AGENTOS_TEST_NODE_SDK=1 makes it required)")
		}
		t.Skip(msg)
	}
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		if required {
			t.Fatal("node is not on PATH (AGENTOS_TEST_NODE_SDK=1 makes it required)")
		}
		t.Skip("node is not on PATH")
	}
	sdk := startSDKNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeBin, "sdk.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "OPENAI_BASE_URL="+sdk.baseURL, "OPENAI_API_KEY="+sdk.token)
	raw, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		t.Fatalf("node sdk.mjs: %v\n%s\n%s", err, raw, ee.Stderr)
	}
	require.NoError(t, err)
	var out struct {
		Models    []struct{ ID, Object, OwnedBy string } `json:"models"`
		Retrieved struct{ ID, Object string }            `json:"retrieved"`
		Chat      struct {
			Object, Content string
		} `json:"chat"`
		Stream struct {
			Chunks  int
			Content string
		} `json:"stream"`
		Embeddings struct{ Count, Dims int } `json:"embeddings"`
		NotFound   sdkError                  `json:"notFound"`
		TooMany    sdkError                  `json:"tooManyTokens"`
	}
	require.NoError(t, json.Unmarshal(raw, &out), string(raw))
	require.NotEmpty(t, out.Models)
	require.Equal(t, "builtin/echo-fast", out.Retrieved.ID)
	require.Equal(t, "model", out.Retrieved.Object)
	require.Equal(t, "chat.completion", out.Chat.Object)
	require.Contains(t, out.Chat.Content, "hello from node")
	require.Greater(t, out.Stream.Chunks, 1)
	require.Contains(t, out.Stream.Content, "stream from node")
	require.Equal(t, 2, out.Embeddings.Count)
	require.Positive(t, out.Embeddings.Dims)
	require.Equal(t, sdkError{Class: "NotFoundError", Status: 404, Type: "not_found_error", Param: "model", Code: "not_found"}, out.NotFound)
	require.Equal(t, sdkError{Class: "BadRequestError", Status: 400, Type: "invalid_request_error", Param: "max_tokens", Code: "invalid_request"}, out.TooMany,
		"over max_tokens_per_request: a BadRequestError, not a RateLimitError")
}

// sdkError is what sdk.mjs reports of an SDK exception.
type sdkError struct {
	Class  string `json:"class"`
	Status int    `json:"status"`
	Type   string `json:"type"`
	Param  string `json:"param"`
	Code   string `json:"code"`
}
