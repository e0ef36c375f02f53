package peers

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/federation/identity"
)

func newPeer(t *testing.T, id string) Peer {
	t.Helper()
	k, err := identity.GenerateKey()
	require.NoError(t, err)
	return Peer{StackID: id, FederationURL: "https://127.0.0.1:50094", Region: "local",
		PublicKey: identity.EncodePublicKey(k.Public().(ed25519.PublicKey))}
}

func TestAddListRemove(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "federation", "peers.yaml")
	ps, err := Load(path)
	require.NoError(t, err)
	require.Empty(t, ps)

	b := newPeer(t, "stk_b")
	replaced, err := Add(path, b)
	require.NoError(t, err)
	require.False(t, replaced)
	c := newPeer(t, "stk_c")
	_, err = Add(path, c)
	require.NoError(t, err)

	b.Region = "eu"
	b.PinnedCertSHA256 = "AA:BB" + strings.Repeat("c", 60)
	replaced, err = Add(path, b)
	require.NoError(t, err)
	require.True(t, replaced)

	ps, err = Load(path)
	require.NoError(t, err)
	require.Len(t, ps, 2)
	require.Equal(t, "eu", ps[0].Region)
	require.Equal(t, "aabbcccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc", ps[0].PinnedCertSHA256)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	require.NoError(t, Remove(path, "stk_b"))
	err = Remove(path, "stk_b")
	require.True(t, errors.Is(err, ErrUnknownPeer))
	ps, err = Load(path)
	require.NoError(t, err)
	require.Equal(t, []string{"stk_c"}, []string{ps[0].StackID})
}

func TestValidate(t *testing.T) {
	t.Parallel()
	good := newPeer(t, "stk_b")
	cases := map[string]func(p *Peer){
		"stack id":   func(p *Peer) { p.StackID = "a b" },
		"http url":   func(p *Peer) { p.FederationURL = "http://127.0.0.1:1" },
		"no url":     func(p *Peer) { p.FederationURL = "" },
		"public key": func(p *Peer) { p.PublicKey = "ed25519:AAAA" },
		"pin":        func(p *Peer) { p.PinnedCertSHA256 = "xyz" },
	}
	require.NoError(t, good.Validate())
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := good
			mutate(&p)
			require.Error(t, p.Validate())
			_, err := Add(filepath.Join(t.TempDir(), "p.yaml"), p)
			require.Error(t, err)
		})
	}
}

func TestParseRejectsDuplicates(t *testing.T) {
	t.Parallel()
	p := newPeer(t, "stk_b")
	doc := "peers:\n- stack_id: stk_b\n  federation_url: https://h:1\n  public_key: " + p.PublicKey +
		"\n- stack_id: stk_b\n  federation_url: https://h:2\n  public_key: " + p.PublicKey + "\n"
	_, err := Parse([]byte(doc))
	require.ErrorContains(t, err, "twice")
	_, err = Parse([]byte("peers: {"))
	require.Error(t, err)
	ps, err := Parse([]byte(""))
	require.NoError(t, err)
	require.Empty(t, ps)
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("peers:\n- stack_id: stk_b\n  federation_url: https://h:1\n  public_key: ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n"))
	f.Add([]byte("peers: []"))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := Parse(b)
		if err != nil {
			return
		}
		for _, p := range ps {
			if p.Validate() != nil {
				t.Fatalf("accepted invalid peer %+v", p)
			}
		}
	})
}
