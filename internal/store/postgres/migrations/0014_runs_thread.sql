-- GET /v1/runs?thread_id=: a thread's runs, newest first. Partial: most
-- runs are on no thread (thread_id ''), and they pay nothing for it.
CREATE INDEX runs_thread ON runs (tenant_id, thread_id, created_at DESC, run_id DESC) WHERE thread_id <> '';
