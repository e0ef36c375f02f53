package mcptool

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/tools"
)

// BenchmarkHTTPCall measures one tool call through tools.InvokeTool to an
// in-process Go SDK server over streamable HTTP on loopback (session kept).
func BenchmarkHTTPCall(b *testing.B) {
	_, hs := newGoServer(b)
	m, err := New(Config{HTTPClient: guarded(b, "127.0.0.1"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	benchCall(b, m, httpDef("tnt_a", "greeter", hs.URL), "greet", `{"name":"ada"}`)
}

// BenchmarkStdioEcho measures one call of server-everything's echo over
// stdio (the npm server; skipped when tests/interop/mcp is not installed).
func BenchmarkStdioEcho(b *testing.B) {
	entry := npmServer(b, "server-everything", "dist/index.js")
	m, err := New(Config{HTTPClient: guarded(b, ""), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	benchCall(b, m, store.MCPServer{TenantID: "tnt_a", Name: "everything", Transport: store.MCPTransportStdio,
		Command: "node", Args: []string{entry, "stdio"}}, "echo", `{"message":"hi"}`)
}

func benchCall(b *testing.B, m *Manager, def store.MCPServer, name, in string) {
	ctx := context.Background()
	tl, found := m.Tool(ctx, def, name)
	if !found {
		b.Fatalf("no tool %s", name)
	}
	call := tools.Call{TenantID: def.TenantID, Input: json.RawMessage(in)}
	if _, err := tools.InvokeTool(ctx, tl, call, 0); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := tools.InvokeTool(ctx, tl, call, 0); err != nil {
			b.Fatal(err)
		}
	}
}
