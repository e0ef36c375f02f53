package tracing

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSetupWithoutEndpointInstallsNothing(t *testing.T) {
	shutdown, err := Setup(context.Background(), Options{Service: "x"})
	require.NoError(t, err)
	require.False(t, Enabled())
	_, span := Start(context.Background(), "s", 0)
	require.False(t, span.IsRecording())
	require.NoError(t, shutdown(context.Background()))
}

func TestSetupRefusesBadInput(t *testing.T) {
	_, err := Setup(context.Background(), Options{TracesURL: "ftp://collector/v1/traces"})
	require.ErrorContains(t, err, "want an http(s) URL")
	_, err = newSampler("sometimes", 1)
	require.ErrorContains(t, err, "unknown sampler")
	_, err = newSampler("traceidratio", 2)
	require.ErrorContains(t, err, "0..1")
	for _, name := range []string{"", "always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"} {
		_, err := newSampler(name, 0.5)
		require.NoError(t, err, name)
	}
}
