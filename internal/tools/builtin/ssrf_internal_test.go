package builtin

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
)

func TestBlockedReason(t *testing.T) {
	t.Parallel()
	blocked := map[string]string{
		"0.0.0.0":                "unspecified",
		"0.1.2.3":                "unspecified",
		"10.1.2.3":               "private",
		"100.64.0.1":             "shared (CGNAT)",
		"100.127.255.254":        "shared (CGNAT)",
		"127.0.0.1":              "loopback",
		"127.255.255.254":        "loopback",
		"169.254.169.254":        "cloud metadata",
		"169.254.1.1":            "link-local",
		"172.16.0.1":             "private",
		"172.31.255.255":         "private",
		"192.168.0.1":            "private",
		"224.0.0.1":              "multicast",
		"239.255.255.250":        "multicast",
		"255.255.255.255":        "reserved",
		"::":                     "unspecified",
		"::1":                    "loopback",
		"::127.0.0.1":            "IPv4-compatible",
		"::ffff:127.0.0.1":       "IPv4-mapped loopback",
		"::ffff:10.0.0.1":        "IPv4-mapped private",
		"::ffff:169.254.169.254": "IPv4-mapped cloud metadata",
		"64:ff9b::7f00:1":        "NAT64 loopback",
		"64:ff9b::a9fe:a9fe":     "NAT64 cloud metadata",
		"2002:c0a8:101::1":       "6to4 private",
		"fc00::1":                "private (unique local)",
		"fd00:ec2::254":          "cloud metadata",
		"fe80::1":                "link-local",
		"fe80::1%eth0":           "link-local",
		"ff02::1":                "multicast",
		"2001:db8::1":            "documentation",
		"2001:0:4136:e378::1":    "Teredo",
	}
	for s, want := range blocked {
		require.Equal(t, want, blockedReason(netip.MustParseAddr(s)), s)
	}
	for _, s := range []string{"93.184.216.34", "8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "169.255.0.1",
		"2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"} {
		require.Empty(t, blockedReason(netip.MustParseAddr(s)), s)
	}
	require.NotEmpty(t, blockedReason(netip.Addr{}))
}

func TestParseAllow(t *testing.T) {
	t.Parallel()
	rules, err := ParseAllow(" 127.0.0.1, ,10.0.0.0/8,[::1],API.Example.com.,*.svc.test,::ffff:10.1.0.0/112, fe80::1%eth0 ")
	require.NoError(t, err)
	var got []string
	for _, r := range rules {
		got = append(got, r.String())
	}
	require.Equal(t, []string{"127.0.0.1", "10.0.0.0/8", "::1", "api.example.com", "*.svc.test", "10.1.0.0/16", "fe80::1"}, got)

	empty, err := ParseAllow("")
	require.NoError(t, err)
	require.Empty(t, empty)

	for _, bad := range []string{"*", "127.0.0.1:8080", "example.com:80", "10.0.0.0/33", "bad host", "a..b", "-a.com", "*.", "http://x", "a/b"} {
		_, err := ParseAllow("127.0.0.1," + bad)
		require.ErrorIs(t, err, errs.ErrInvalid, bad)
		require.Contains(t, err.Error(), bad)
	}
}

// loopbackResolver answers every name with a loopback and a private address.
type loopbackResolver struct{}

func (loopbackResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.0.0.1")}, nil
}

func FuzzParseAllow(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "10.0.0.0/8, ::1", "[::1]", "*.example.com", "a.b.c.", "::ffff:1.2.3.4/120", "fe80::1%eth0", "x:1", "*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rules, err := ParseAllow(s)
		if err != nil {
			require.ErrorIs(t, err, errs.ErrInvalid)
			return
		}
		// Every rule prints as an entry that parses back to itself.
		for _, r := range rules {
			again, err := ParseAllow(r.String())
			require.NoError(t, err, r.String())
			require.Equal(t, []AllowRule{r}, again)
		}
	})
}

func FuzzBlockedReason(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::a9fe:a9fe", "8.8.8.8", "fe80::1", "2002:7f00:1::"} {
		a := netip.MustParseAddr(s).As16()
		f.Add(a[:])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) != 16 {
			return
		}
		ip := netip.AddrFrom16([16]byte(b))
		reason := blockedReason(ip)
		for _, a := range []netip.Addr{ip, ip.Unmap()} {
			if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
				a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
				require.NotEmpty(t, reason, "%s must be refused", ip)
			}
		}
		if ip.Is4In6() {
			require.Equal(t, reason == "", blockedReason(ip.Unmap()) == "", ip.String())
		}
	})
}

func FuzzGuardResolve(f *testing.F) {
	for _, s := range []string{"example.com", "127.0.0.1", "::1", "8.8.8.8", "LOCALHOST.", "::ffff:7f00:1", "fe80::1%lo", "2130706433"} {
		f.Add(s)
	}
	g := &guard{resolver: loopbackResolver{}}
	f.Fuzz(func(t *testing.T, host string) {
		ips, err := g.resolve(context.Background(), host)
		if err != nil {
			var e *errs.Error
			require.True(t, errors.As(err, &e), "%T %v", err, err)
			return
		}
		for _, ip := range ips {
			require.Empty(t, blockedReason(ip), "host %q resolved to refused %s", host, ip)
		}
	})
}

func FuzzFetchRequest(f *testing.F) {
	f.Add("http://example.com/a?b=c", "GET", "X-A", "v", "")
	f.Add("https://[::1]:8443/", "post", "Content-Type", "text/plain", "{}")
	f.Add("ftp://x", "", "bad name", "\r\n", "body")
	h := HTTPFetch(HTTPFetchConfig{MaxBytes: 64}).(*httpFetch)
	f.Fuzz(func(t *testing.T, rawURL, method, hname, hvalue, body string) {
		in := fetchInput{URL: rawURL, Method: method, Headers: map[string]string{hname: hvalue}}
		if body != "" {
			in.Body = &body
		}
		req, err := h.newRequest(in)
		if err != nil {
			require.ErrorIs(t, err, errs.ErrInvalid)
			return
		}
		require.Contains(t, []string{"http", "https"}, req.URL.Scheme)
		require.NotEmpty(t, req.URL.Hostname())
		require.Contains(t, []string{"GET", "POST"}, req.Method)
		for _, vs := range req.Header {
			for _, v := range vs {
				require.False(t, strings.ContainsAny(v, "\r\n"), "header value %q", v)
			}
		}
	})
}
