package queue

import "github.com/nexixai/agentos/internal/errs"

// Validate checks a lease request; every adapter calls it first.
func (p LeaseParams) Validate() error {
	switch {
	case p.Owner == "":
		return errs.Field("owner", "is required")
	case p.Max < 1:
		return errs.Field("max", "must be at least 1")
	case p.TTL <= 0:
		return errs.Field("ttl", "must be positive")
	}
	return nil
}
