package oracle

import (
	"net/netip"
	"strconv"
	"strings"
)

// peerIdentity is the mTLS peer principal and what Istio derives from it.
// Every field is empty for plaintext; the derived fields are also empty when the
// principal is not of the form "<td>/ns/<ns>/sa/<sa>".
type peerIdentity struct {
	principal      string
	trustDomain    string
	namespace      string
	serviceAccount string
}

// parsePeer splits "<trust domain>/ns/<namespace>/sa/<service account>".
func parsePeer(principal string) peerIdentity {
	principal = strings.TrimPrefix(principal, "spiffe://")
	id := peerIdentity{principal: principal}
	parts := strings.Split(principal, "/")
	if len(parts) == 5 && parts[1] == "ns" && parts[3] == "sa" && parts[0] != "" && parts[2] != "" && parts[4] != "" {
		id.trustDomain, id.namespace, id.serviceAccount = parts[0], parts[2], parts[4]
	}
	return id
}

// qualifiedServiceAccount is "<namespace>/<service account>", the form serviceAccounts
// entries are compared with; empty when unknown.
func (p peerIdentity) qualifiedServiceAccount() string {
	if p.namespace == "" {
		return ""
	}
	return p.namespace + "/" + p.serviceAccount
}

// qualifyServiceAccount expands a serviceAccounts entry: "<serviceaccount>" alone means
// the AuthorizationPolicy's own namespace (per the field's documentation).
func qualifyServiceAccount(entry, policyNamespace string) string {
	if strings.Contains(entry, "/") {
		return entry
	}
	return policyNamespace + "/" + entry
}

// matchIP reports whether the address value lies in pattern, a single IP or a CIDR.
// Invalid patterns or values match nothing. IPv4-mapped IPv6 values are unmapped.
func matchIP(pattern, value string) bool {
	addr, err := netip.ParseAddr(value)
	if err != nil {
		return false
	}
	prefix, ok := parseIPBlock(pattern)
	return ok && prefix.Contains(addr.Unmap())
}

func parseIPBlock(pattern string) (netip.Prefix, bool) {
	if strings.Contains(pattern, "/") {
		p, err := netip.ParsePrefix(pattern)
		return p, err == nil
	}
	a, err := netip.ParseAddr(pattern)
	if err != nil {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, a.BitLen()), true
}

// matchPort compares port numbers exactly: ports support no prefix/suffix/presence
// forms. Patterns that are not a decimal port in [0, 65535] match nothing.
func matchPort(pattern, value string) bool {
	p, okP := parsePort(pattern)
	v, okV := parsePort(value)
	return okP && okV && p == v
}

func parsePort(s string) (uint64, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	return n, err == nil && n <= 65535
}

// portValue is the candidate list for a destination port; 0 (or out of range) = unknown.
func portValue(port int) []string {
	if port <= 0 || port > 65535 {
		return nil
	}
	return []string{strconv.Itoa(port)}
}

// stripPort removes a trailing ":<digits>" from a host, keeping IPv6 literals intact
// ("[::1]:80" -> "[::1]", "::1" unchanged).
func stripPort(host string) string {
	i := strings.LastIndexByte(host, ':')
	if i < 0 || i == len(host)-1 {
		return host
	}
	if _, err := strconv.ParseUint(host[i+1:], 10, 16); err != nil {
		return host
	}
	name := host[:i]
	if strings.Contains(name, ":") && !strings.HasSuffix(name, "]") {
		return host // bare IPv6 address: the last group is not a port
	}
	return name
}
