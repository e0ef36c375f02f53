package queue

// Limits calls p.TenantLimit once for each tenant of order and returns the
// limits that apply: a positive limit, or a negative one for a paused
// tenant. Unlimited tenants (0, or no TenantLimit) are absent.
func (p LeaseParams) Limits(order []string) map[string]int {
	limits := map[string]int{}
	if p.TenantLimit == nil {
		return limits
	}
	for _, t := range order {
		if lim := p.TenantLimit(t); lim != 0 {
			limits[t] = lim
		}
	}
	return limits
}

// LeaseRounds is the fairness rule of Queue.Lease, for adapters: it takes
// up to max entries in rounds, each round giving at most one entry to each
// tenant of order (least recently served first) that is not paused and
// holds fewer than its limit of unexpired leases (active, counted up as
// leases are granted). leaseOne leases a tenant's best entry, with ok false
// when the tenant has none left; such a tenant sits out later rounds.
func LeaseRounds(order []string, max int, limits, active map[string]int,
	leaseOne func(tenant string) (l Lease, ok bool, err error)) ([]Lease, error) {
	var out []Lease
	for len(order) > 0 && len(out) < max {
		next := order[:0:0]
		for _, tenant := range order {
			if len(out) >= max {
				break
			}
			if lim := limits[tenant]; lim < 0 || lim > 0 && active[tenant] >= lim {
				continue
			}
			l, ok, err := leaseOne(tenant)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			active[tenant]++
			out = append(out, l)
			next = append(next, tenant)
		}
		order = next
	}
	return out, nil
}
