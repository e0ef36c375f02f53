package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"
)

func newAgentsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "agents", Short: "List and register agents"}

	list := &cobra.Command{Use: "list", Short: "List the tenant's agents", Args: cobra.NoArgs}
	la := bindAuthFlags(list)
	var jsonOut bool
	list.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	list.RunE = func(cmd *cobra.Command, _ []string) error {
		c, _, err := la.client(asTenantAdmin)
		if err != nil {
			return err
		}
		agents, err := c.ListAgents(cmd.Context())
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if jsonOut {
			return json.NewEncoder(out).Encode(map[string]any{"agents": agents})
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "AGENT\tNAME\tVERSION\tSTATUS\tMODEL\tTOOLS")
		for _, a := range agents {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%v\n", a.AgentID, a.Name, a.Version, a.Status, a.ModelRef, a.Tools)
		}
		return tw.Flush()
	}

	put := &cobra.Command{Use: "put -f agent.yaml", Short: "Create or update an agent from a YAML or JSON file", Args: cobra.NoArgs,
		Long: `put registers an agent in your tenant (PUT /v1/admin/agents/{agent_id}): a
new agent_id creates it, an existing one gets a new version. Needs a tenant
admin credential (--token or the tenant admin token in credentials.json).

The file (-f, or - for stdin) is YAML or JSON: the agent object itself, or
the same object under a top-level "agent" key. Fields:

  agent_id      agent id, e.g. agt_support_v1 (or pass --id; --id wins)
  name          required; a display name
  model_ref     required; tier:fast|balanced|premium, or a model id such as
                builtin/echo-fast (GET /v1/models on model-policy lists them)
  instructions  the system prompt
  description   free text
  tools         tool ids the agent may call: builtin tool.echo, tool.kv.get,
                tool.kv.put, tool.http.fetch, or a webhook tool registered
                with PUT /v1/admin/tools/{tool_id}; each must be in the
                tenant's tool_ids_allowed
  status        active (default), inactive or deprecated
  version       optional; default 1 on create, the current version + 1
                on update (a given version must be higher than the current)
  defaults      max_steps (>= 1), timeout_ms (>= 1), on_tool_error
                (continue or fail), model_retries (0-5)

Unknown fields are ignored; an invalid field is refused naming it, and
nothing is changed.`,
		Example: `  cat > support.yaml <<'YAML'
  agent_id: agt_support_v1
  name: Support assistant
  model_ref: tier:fast
  instructions: Answer briefly. Use tool.kv.get to look up order status.
  tools: [tool.kv.get, tool.echo]
  defaults: {max_steps: 4, timeout_ms: 30000, on_tool_error: continue}
  YAML
  agentos agents put -f support.yaml
  agentos agents put -f agent.json --id agt_other_v1`,
	}
	pa := bindAuthFlags(put)
	var file, id string
	put.Flags().StringVarP(&file, "file", "f", "", "agent definition (YAML or JSON; - for stdin)")
	put.Flags().StringVar(&id, "id", "", "agent id (default: agent_id in the file)")
	put.RunE = func(cmd *cobra.Command, _ []string) error {
		if file == "" {
			return &ExitError{Code: 2, Err: errors.New("-f agent.yaml is required")}
		}
		var data []byte
		var err error
		if file == "-" {
			data, err = io.ReadAll(cmd.InOrStdin())
		} else {
			data, err = os.ReadFile(file)
		}
		if err != nil {
			return err
		}
		agentID, spec, err := ParseAgentFile(data)
		if err != nil {
			return &ExitError{Code: 2, Err: fmt.Errorf("%s: %w", file, err)}
		}
		if id != "" {
			agentID = id
		}
		if agentID == "" {
			return &ExitError{Code: 2, Err: fmt.Errorf("%s: no agent_id (add agent_id: agt_... or pass --id)", file)}
		}
		c, _, err := pa.client(asTenantAdmin)
		if err != nil {
			return err
		}
		a, err := c.PutAgent(cmd.Context(), agentID, spec)
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "agent %s (tenant %s) version %d %s\n", a.AgentID, a.TenantID, a.Version, a.Status)
		return nil
	}
	cmd.AddCommand(list, put)
	return cmd
}

// ParseAgentFile reads an agent definition in YAML or JSON: either
// {"agent": {...}} or the bare object, with an optional agent_id. It returns
// the id and the spec to PUT (agent_id removed).
func ParseAgentFile(data []byte) (string, map[string]any, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return "", nil, fmt.Errorf("not YAML or JSON: %w", err)
	}
	if doc == nil {
		return "", nil, errors.New("empty agent definition")
	}
	if inner, ok := doc["agent"]; ok {
		m, ok := inner.(map[string]any)
		if !ok {
			return "", nil, errors.New("agent: want an object")
		}
		doc = m
	}
	id := ""
	if v, ok := doc["agent_id"]; ok {
		s, ok := v.(string)
		if !ok {
			return "", nil, errors.New("agent_id: want a string")
		}
		id = s
		delete(doc, "agent_id")
	}
	if _, ok := doc["model_ref"]; !ok {
		return "", nil, errors.New("model_ref: required (e.g. tier:fast)")
	}
	return id, doc, nil
}
