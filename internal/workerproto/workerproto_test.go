package workerproto

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestQueueNameIsCanonical(t *testing.T) {
	a := QueueName(map[string]string{"gpu": "a100", "zone": "eu"})
	b := QueueName(map[string]string{"zone": "eu", "gpu": "a100"})
	require.Equal(t, a, b, "label order does not matter")
	require.Regexp(t, `^task-[0-9a-f]{20}$`, a)
	require.NotEqual(t, a, QueueName(map[string]string{"gpu": "a100"}))
	require.NotEqual(t, QueueName(map[string]string{"a": "b=c"}), QueueName(map[string]string{"a=b": "c"}))
}

func TestSubsetsReachEveryPlacementAWorkerMatches(t *testing.T) {
	labels := map[string]string{"gpu": "a100", "zone": "eu", "disk": "ssd"}
	subs := Subsets(labels)
	require.Len(t, subs, 7)
	queues := map[string]bool{}
	for _, s := range subs {
		require.True(t, Matches(s, labels))
		queues[QueueName(s)] = true
	}
	require.True(t, queues[QueueName(map[string]string{"gpu": "a100"})])
	require.True(t, queues[QueueName(map[string]string{"zone": "eu", "gpu": "a100"})])
	require.False(t, queues[QueueName(map[string]string{"gpu": "t4"})])
	require.False(t, Matches(map[string]string{"gpu": "t4"}, labels))
}

func TestWorkerPermissionsStayOnItsOwnSubjects(t *testing.T) {
	s := Subjects{NS: "agentos"}
	p := s.WorkerPermissions("w1", map[string]string{"gpu": "a100"}, nil)
	require.Contains(t, p.Publish, "agentos.wk.hb.w1")
	require.Contains(t, p.Publish, "agentos.wk.res.w1.>")
	require.Contains(t, p.Publish, "$JS.API.CONSUMER.MSG.NEXT.AGENTOS_WORK.work-"+QueueName(map[string]string{"gpu": "a100"}))
	require.Equal(t, []string{"_INBOX_w1.>"}, p.Subscribe)
	for _, subj := range p.Publish {
		require.NotContains(t, subj, "w2")
		require.NotEqual(t, ">", subj)
	}
	require.Equal(t, "w1", s.ResultWorker(s.Result("w1", "r1", "t1")))
	require.Equal(t, "", s.ResultWorker("other.subject"))
}

func TestDedicatedWorkersGetOnlyTheirTenantsQueues(t *testing.T) {
	gpu := map[string]string{"gpu": "a100"}
	shared := QueueName(gpu)
	require.Equal(t, shared, TenantQueueName(gpu, ""))
	a, b := TenantQueueName(gpu, "ten_a"), TenantQueueName(gpu, "ten_b")
	require.NotEqual(t, shared, a)
	require.NotEqual(t, a, b)
	require.Regexp(t, `^task-[0-9a-f]{20}$`, a)

	labels := map[string]string{"gpu": "a100", "zone": "eu"}
	require.Len(t, Queues(labels, nil), 3)
	require.Contains(t, Queues(labels, nil), shared)
	dedicated := Queues(labels, []string{"ten_a", "ten_b"})
	require.Len(t, dedicated, 6)
	require.Contains(t, dedicated, a)
	require.Contains(t, dedicated, b)
	require.NotContains(t, dedicated, shared, "a dedicated worker takes nothing from the shared queues")

	s := Subjects{NS: "agentos"}
	p := s.WorkerPermissions("w1", labels, []string{"ten_a"})
	require.Contains(t, p.Publish, "$JS.API.CONSUMER.MSG.NEXT.AGENTOS_WORK.work-"+a)
	require.NotContains(t, p.Publish, "$JS.API.CONSUMER.MSG.NEXT.AGENTOS_WORK.work-"+shared)
	require.NotContains(t, p.Publish, "$JS.API.CONSUMER.MSG.NEXT.AGENTOS_WORK.work-"+b)
}
