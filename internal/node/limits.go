package node

import (
	"log/slog"
	"syscall"

	"github.com/nexixai/agentos/internal/config"
)

// Stream cap derivation (docs/operations.md, "Event streams"). Every open
// stream holds file descriptors: its client connection, and on the
// federation proxy also the upstream connection. The process keeps
// fdReserve descriptors for the store, logs, listeners and outgoing calls,
// and half of the rest for connections that are not streams (run creates,
// refused stream attempts waiting to be read), so a stream flood cannot
// starve the node of descriptors (`accept4: too many open files`). The
// result is capped at maxDerivedStreams because each stream also costs
// memory (~30 KB: goroutine, connection buffers, hub subscription); set
// AGENTOS_MAX_STREAMS to go beyond it.
const (
	fdReserve         = 256
	maxDerivedStreams = 10000
	minDerivedStreams = 16
)

// StreamCap returns the node-wide cap on concurrent event streams of a
// process whose descriptor limit is nofile and whose streams hold
// fdsPerStream descriptors each: (nofile - 256) / 2 / fdsPerStream,
// clamped to [16, 10000]. With the common hard limit of 1,048,576 that is
// 10,000; with 20,000, 9,872 on the orchestrator and 4,936 on the
// federation proxy; with 1,024, 384 and 192.
func StreamCap(nofile uint64, fdsPerStream int) int {
	if fdsPerStream < 1 {
		fdsPerStream = 1
	}
	var n uint64
	if nofile > fdReserve {
		n = (nofile - fdReserve) / 2 / uint64(fdsPerStream)
	}
	return int(min(max(n, minDerivedStreams), maxDerivedStreams))
}

// raiseFDLimit raises the soft RLIMIT_NOFILE to the hard limit and returns
// the limit in effect. Go (1.19+) already does this on start on Linux and
// macOS; doing it here too keeps it true on any platform with rlimits and
// makes the value the stream cap is derived from explicit and logged.
func raiseFDLimit(log *slog.Logger) uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		log.Warn("cannot read the file-descriptor limit", "err", err)
		return 1024
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
			log.Warn("cannot raise the soft file-descriptor limit to the hard limit", "soft", lim.Cur, "hard", lim.Max, "err", err)
			return uint64(lim.Cur)
		}
		lim = raised
	}
	return uint64(lim.Cur)
}

// streamCap is the node-wide stream cap of this process:
// AGENTOS_MAX_STREAMS when set, else derived from the descriptor limit
// (raised first).
func streamCap(cfg config.Config, fdsPerStream int, log *slog.Logger) int {
	nofile := raiseFDLimit(log)
	n := cfg.MaxStreams
	source := "AGENTOS_MAX_STREAMS"
	if n == 0 {
		n, source = StreamCap(nofile, fdsPerStream), "derived from the file-descriptor limit"
	}
	log.Info("event stream caps", "max_streams", n, "source", source, "fd_limit", nofile,
		"tenant_default", cfg.QuotaMaxStreams)
	return n
}
