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

	put := &cobra.Command{Use: "put -f agent.yaml", Short: "Create or update an agent from a YAML or JSON file", Args: cobra.NoArgs}
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
