package natsd

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestServerOptions(t *testing.T) {
	t.Parallel()
	one := Options{Name: "nats", Addr: "127.0.0.1:50086", MonitorAddr: "127.0.0.1:50087", StoreDir: "/h/nats/nats"}
	so, err := one.ServerOptions()
	require.NoError(t, err)
	require.True(t, so.JetStream)
	require.True(t, so.SyncAlways, "a single server is the only copy")
	require.Equal(t, 50086, so.Port)
	require.Equal(t, 50087, so.HTTPPort)
	require.Empty(t, so.Routes)

	three := one
	three.ClusterAddr = "127.0.0.1:50088"
	three.Routes = []string{"nats://127.0.0.1:50088", "nats://127.0.0.1:50188"}
	so, err = three.ServerOptions()
	require.NoError(t, err)
	require.False(t, so.SyncAlways, "a cluster keeps the interval: streams have 3 replicas")
	require.Equal(t, ClusterName, so.Cluster.Name)
	require.Equal(t, 50088, so.Cluster.Port)
	require.Len(t, so.Routes, 2)

	for _, c := range []struct {
		mutate func(*Options)
		want   string
	}{
		{func(o *Options) { o.Name = "" }, "--name"},
		{func(o *Options) { o.Addr = "50086" }, "--addr"},
		{func(o *Options) { o.MonitorAddr = "127.0.0.1:0x" }, "--monitor-addr"},
		{func(o *Options) { o.Routes = []string{"nats://a:1"} }, "--routes: needs --cluster-addr"},
		{func(o *Options) { o.ClusterAddr, o.Routes = "127.0.0.1:1", []string{"http://a:1"} }, "--routes"},
	} {
		o := one
		c.mutate(&o)
		_, err := o.ServerOptions()
		require.ErrorContains(t, err, c.want)
	}
}
