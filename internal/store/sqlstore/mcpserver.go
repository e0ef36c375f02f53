package sqlstore

import "github.com/nexixai/agentos/internal/store"

// MCPServerColumns are an MCP server's JSON columns.
type MCPServerColumns struct {
	Headers, Args, Env string
}

// EncodeMCPServer encodes s's JSON columns (nil maps and lists as empty
// ones, so that a server reads back the same whatever the backend).
func EncodeMCPServer(s store.MCPServer) (MCPServerColumns, error) {
	var c MCPServerColumns
	var err error
	if c.Headers, err = ToJSON("headers", orEmptyMap(s.Headers)); err != nil {
		return c, err
	}
	args := s.Args
	if args == nil {
		args = []string{}
	}
	if c.Args, err = ToJSON("args", args); err != nil {
		return c, err
	}
	c.Env, err = ToJSON("env", orEmptyMap(s.Env))
	return c, err
}

// DecodeMCPServer decodes an MCP server's JSON columns into s.
func DecodeMCPServer(s *store.MCPServer, headers, args, env []byte) error {
	if err := FromJSON(headers, &s.Headers); err != nil {
		return err
	}
	if err := FromJSON(args, &s.Args); err != nil {
		return err
	}
	return FromJSON(env, &s.Env)
}

func orEmptyMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
