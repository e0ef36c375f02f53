package builtin

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/nexixai/agentos/internal/errs"
)

// AllowRule is one entry of AGENTOS_HTTP_FETCH_ALLOW: a hostname (every
// address it resolves to is permitted), "*.example.com" (every subdomain of
// example.com), or an IP address or CIDR (that address range is permitted
// whatever name led to it).
type AllowRule struct {
	// Host is a lowercase hostname without trailing dot; a leading "*."
	// matches any subdomain. Empty for IP/CIDR rules.
	Host string
	// Prefix is the permitted address range of IP/CIDR rules (an IP is a
	// /32 or /128). Invalid for host rules.
	Prefix netip.Prefix
}

// String returns the rule as it would be written in the allowlist.
func (r AllowRule) String() string {
	if r.Host != "" {
		return r.Host
	}
	if r.Prefix.IsSingleIP() {
		return r.Prefix.Addr().String()
	}
	return r.Prefix.String()
}

func (r AllowRule) matchHost(host string) bool {
	if r.Host == "" {
		return false
	}
	if suffix, ok := strings.CutPrefix(r.Host, "*"); ok {
		return strings.HasSuffix(host, suffix) && len(host) > len(suffix)
	}
	return host == r.Host
}

// ParseAllow parses AGENTOS_HTTP_FETCH_ALLOW: comma-separated hostnames
// ("api.internal.example"), subdomain wildcards ("*.corp.example"), IP
// addresses ("127.0.0.1", "::1", "[::1]") and CIDRs ("10.0.0.0/8").
// Surrounding spaces and empty entries are ignored. An entry with a port,
// a bare "*" or anything else malformed is an invalid_request error naming
// the entry.
func ParseAllow(s string) ([]AllowRule, error) {
	var rules []AllowRule
	for _, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		r, err := parseAllowEntry(entry)
		if err != nil {
			return nil, errs.Field("AGENTOS_HTTP_FETCH_ALLOW", "entry %q: %s", entry, err.Error())
		}
		rules = append(rules, r)
	}
	return rules, nil
}

func parseAllowEntry(entry string) (AllowRule, error) {
	e := strings.TrimSuffix(entry, ".")
	if strings.HasPrefix(e, "[") && strings.HasSuffix(e, "]") {
		e = e[1 : len(e)-1]
	}
	if strings.Contains(e, "/") {
		p, err := netip.ParsePrefix(e)
		if err != nil {
			return AllowRule{}, fmt.Errorf("not a valid CIDR")
		}
		addr := p.Addr()
		if addr.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(addr.Unmap(), p.Bits()-96)
		}
		return AllowRule{Prefix: p.Masked()}, nil
	}
	if addr, err := netip.ParseAddr(e); err == nil {
		addr = addr.WithZone("").Unmap()
		return AllowRule{Prefix: netip.PrefixFrom(addr, addr.BitLen())}, nil
	}
	host := strings.ToLower(e)
	if _, _, err := net.SplitHostPort(host); err == nil {
		return AllowRule{}, fmt.Errorf("must not include a port")
	}
	name, wild := strings.CutPrefix(host, "*.")
	if !validHostname(name) {
		return AllowRule{}, fmt.Errorf("not a hostname, IP address or CIDR")
	}
	if wild {
		return AllowRule{Host: "*." + name}, nil
	}
	return AllowRule{Host: name}, nil
}

// validHostname reports whether h is a DNS name: dot-separated labels of
// letters, digits, '-' and '_', each 1..63 long, 253 at most in all.
func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// blockedRange is an address range the fetch tool refuses by default.
type blockedRange struct {
	prefix netip.Prefix
	reason string
}

// blockedRanges are checked in order; the first match names the reason.
var blockedRanges = func() []blockedRange {
	list := []struct{ cidr, reason string }{
		{"0.0.0.0/8", "unspecified"},
		{"10.0.0.0/8", "private"},
		{"100.64.0.0/10", "shared (CGNAT)"},
		{"127.0.0.0/8", "loopback"},
		{"169.254.169.254/32", "cloud metadata"},
		{"169.254.0.0/16", "link-local"},
		{"172.16.0.0/12", "private"},
		{"192.0.0.0/24", "IETF protocol assignment"},
		{"192.0.2.0/24", "documentation"},
		{"192.168.0.0/16", "private"},
		{"198.18.0.0/15", "benchmarking"},
		{"198.51.100.0/24", "documentation"},
		{"203.0.113.0/24", "documentation"},
		{"224.0.0.0/4", "multicast"},
		{"240.0.0.0/4", "reserved"}, // includes 255.255.255.255 broadcast
		{"::/128", "unspecified"},
		{"::1/128", "loopback"},
		{"::/96", "IPv4-compatible"},
		{"64:ff9b:1::/48", "NAT64 local-use"},
		{"100::/64", "discard-only"},
		{"2001::/32", "Teredo"},
		{"2001:db8::/32", "documentation"},
		{"fd00:ec2::254/128", "cloud metadata"},
		{"fc00::/7", "private (unique local)"},
		{"fe80::/10", "link-local"},
		{"fec0::/10", "site-local"},
		{"ff00::/8", "multicast"},
	}
	out := make([]blockedRange, len(list))
	for i, b := range list {
		out[i] = blockedRange{netip.MustParsePrefix(b.cidr), b.reason}
	}
	return out
}()

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// blockedReason returns why ip must not be reached ("loopback",
// "private"...) or "" when it is a public address. IPv4 addresses embedded
// in IPv6 (IPv4-mapped, NAT64, 6to4) are judged by their IPv4 address.
func blockedReason(ip netip.Addr) string {
	if !ip.IsValid() {
		return "invalid"
	}
	ip = ip.WithZone("")
	if ip.Is4In6() {
		if r := blockedReason(ip.Unmap()); r != "" {
			return "IPv4-mapped " + r
		}
		return ""
	}
	if ip.Is6() {
		b := ip.As16()
		switch {
		case nat64.Contains(ip):
			if r := blockedReason(netip.AddrFrom4([4]byte(b[12:16]))); r != "" {
				return "NAT64 " + r
			}
			return ""
		case sixToFour.Contains(ip):
			if r := blockedReason(netip.AddrFrom4([4]byte(b[2:6]))); r != "" {
				return "6to4 " + r
			}
			return ""
		}
	}
	for _, b := range blockedRanges {
		if b.prefix.Contains(ip) {
			return b.reason
		}
	}
	return ""
}

// blockedName returns why a hostname must not be resolved at all (names
// that only ever lead to the node itself or to cloud metadata), or "".
func blockedName(host string) string {
	switch {
	case host == "localhost" || strings.HasSuffix(host, ".localhost"):
		return "loopback name"
	case host == "metadata" || host == "metadata.goog" || host == "instance-data" ||
		host == "metadata.google.internal" || strings.HasSuffix(host, ".internal"):
		return "cloud metadata or internal name"
	}
	return ""
}

// Resolver resolves hostnames; *net.Resolver satisfies it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// guard decides which addresses tool.http.fetch may connect to.
type guard struct {
	allow    []AllowRule
	resolver Resolver
	dialer   net.Dialer
}

func (g *guard) hostAllowed(host string) bool {
	for _, r := range g.allow {
		if r.matchHost(host) {
			return true
		}
	}
	return false
}

func (g *guard) ipAllowed(ip netip.Addr) bool {
	ip = ip.WithZone("")
	for _, r := range g.allow {
		if r.Host == "" && (r.Prefix.Contains(ip) || r.Prefix.Contains(ip.Unmap())) {
			return true
		}
	}
	return false
}

// checkIP returns a forbidden error when host's address ip may not be
// reached.
func (g *guard) checkIP(host string, ip netip.Addr) error {
	if g.ipAllowed(ip) {
		return nil
	}
	reason := blockedReason(ip)
	if reason == "" {
		return nil
	}
	name := ip.String()
	if host != "" && host != name {
		name = fmt.Sprintf("%s (%s)", ip, host)
	}
	return errs.E(errs.Forbidden, "url: refusing to connect to %s: %s address (allow it with AGENTOS_HTTP_FETCH_ALLOW)", name, reason).
		WithDetails(map[string]any{"field": "url", "address": ip.String(), "host": host, "reason": reason})
}

// normalizeHost lowercases a URL hostname and drops a trailing dot.
func normalizeHost(host string) string {
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

// resolve returns the addresses of host that the tool may connect to, or a
// forbidden error if the name or any of its addresses is refused.
func (g *guard) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	host = normalizeHost(host)
	if ip, err := netip.ParseAddr(host); err == nil {
		// An address literal is judged by address rules only.
		if err := g.checkIP(host, ip); err != nil {
			return nil, err
		}
		return []netip.Addr{ip}, nil
	}
	allowed := g.hostAllowed(host)
	if reason := blockedName(host); reason != "" && !allowed {
		return nil, errs.E(errs.Forbidden, "url: refusing to connect to %s: %s (allow it with AGENTOS_HTTP_FETCH_ALLOW)", host, reason).
			WithDetails(map[string]any{"field": "url", "host": host, "reason": reason})
	}
	ips, err := g.resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, errs.Wrap(errs.DependencyUnavailable, err, "url: cannot resolve host %s", host)
	}
	if len(ips) == 0 {
		return nil, errs.E(errs.DependencyUnavailable, "url: host %s has no addresses", host)
	}
	if !allowed {
		// Every address must pass, so a name that mixes public and
		// private addresses cannot be used to reach the private one.
		for _, ip := range ips {
			if err := g.checkIP(host, ip); err != nil {
				return nil, err
			}
		}
	}
	return ips, nil
}

// dialContext is the transport's dialer: it resolves the host itself,
// checks every address and connects only to checked addresses, so a DNS
// answer that changes between check and connect (rebinding) cannot reach a
// refused address.
func (g *guard) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, errs.Wrap(errs.InvalidRequest, err, "url: bad host and port %q", addr)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, errs.Field("url", "bad port %q", portStr)
	}
	ips, err := g.resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	var firstErr error
	for _, ip := range ips {
		conn, err := g.dialer.DialContext(ctx, network, netip.AddrPortFrom(ip, uint16(port)).String())
		if err == nil {
			return conn, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, firstErr
}
