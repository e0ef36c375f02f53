package cli

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseAgentFile(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, in, id, err string
	}{
		{"yaml bare", "agent_id: agt_a\nname: A\nmodel_ref: tier:fast\ntools: [tool.echo]\n", "agt_a", ""},
		{"yaml wrapped", "agent:\n  agent_id: agt_b\n  model_ref: tier:fast\n", "agt_b", ""},
		{"json", `{"agent":{"model_ref":"builtin/echo"}}`, "", ""},
		{"missing model_ref", "name: x\n", "", "model_ref"},
		{"bad id type", "agent_id: [1]\nmodel_ref: x\n", "", "agent_id"},
		{"agent not object", "agent: 3\n", "", "agent: want an object"},
		{"empty", "", "", "empty"},
		{"not yaml", "a: [", "", "not YAML"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id, spec, err := ParseAgentFile([]byte(tc.in))
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.id, id)
			require.NotContains(t, spec, "agent_id")
			require.Contains(t, spec, "model_ref")
		})
	}
}

func FuzzParseAgentFile(f *testing.F) {
	f.Add("agent_id: agt_a\nmodel_ref: tier:fast\n")
	f.Add(`{"agent":{"model_ref":"x","tools":["tool.echo"]}}`)
	f.Fuzz(func(t *testing.T, s string) {
		id, spec, err := ParseAgentFile([]byte(s))
		if err == nil {
			require.NotContains(t, spec, "agent_id")
			_ = id
		}
	})
}

func writeFile(p, s string) error { return os.WriteFile(p, []byte(s), 0o644) }
