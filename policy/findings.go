package policy

//go:generate go run ./internal/gencatalogue ../README.md

import (
	"fmt"
	"sort"
	"strings"
)

// Severity ranks a finding. Errors deny in Enforce mode; warnings never deny.
type Severity string

const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
	SeverityInfo    Severity = "info"
)

// Code is a finding's stable identifier: audit logs, metrics and CI pipelines key on it.
type Code string

// The catalogue. Codes are never renamed or reused; README.md's findings section is rendered
// from Catalogue by `go generate ./policy` and a test keeps the two in sync.
const (
	CodeJWTRouteUncovered      Code = "JWT_ROUTE_UNCOVERED"
	CodeTCPRouteToModel        Code = "TCP_ROUTE_TO_MODEL"
	CodeDirectExposure         Code = "DIRECT_EXPOSURE_UNCOVERED"
	CodeModelUnreachable       Code = "MODEL_UNREACHABLE"
	CodeMTLSNotStrict          Code = "MTLS_NOT_STRICT"
	CodeMTLSPortOverride       Code = "MTLS_PORT_OVERRIDE"
	CodeMTLSDestinationDisable Code = "MTLS_DESTINATIONRULE_DISABLE"
	CodeRouteAllPaths          Code = "ROUTE_ALL_PATHS_ASSUMED"
	CodeUnmodelledCondition    Code = "CONDITION_NOT_MODELLED"
	CodeUntrustedCustom        Code = "CUSTOM_PROVIDER_UNTRUSTED"
	CodeSelectorMatchesNothing Code = "SELECTOR_MATCHES_NO_WORKLOAD"
	CodeGatewayUnknown         Code = "GATEWAY_NOT_FOUND"
	CodeDelegateRoute          Code = "DELEGATE_ROUTE_NOT_JUDGED"
	CodeIssuerNotAllowed       Code = "ISSUER_NOT_ALLOWED"
	CodeInjectPlanned          Code = "INJECT_PLANNED"
	CodeAnnotationMismatch     Code = "ANNOTATIONS_DIFFER_FROM_PLAN"
	CodeGeneratedPolicyChanged Code = "GENERATED_POLICY_CHANGED"
	CodeNoRule                 Code = "NO_RULE_FOR_NAMESPACE"
	CodeExempt                 Code = "NAMESPACE_EXEMPT"
	CodeMeshStateUnavailable   Code = "MESH_STATE_UNAVAILABLE"
	CodeInvalidObject          Code = "INVALID_OBJECT"
	CodeNamespaceRuleWeakened  Code = "NAMESPACE_RULE_WEAKENED"
	CodeStricterRuleApplies    Code = "STRICTER_RULE_APPLIES"
)

// CatalogueEntry documents one code.
type CatalogueEntry struct {
	Code     Code
	Severity Severity // the usual severity; some codes are raised at a lower one by configuration
	Title    string
	Meaning  string
}

// Catalogue lists every code the engine emits, in the order the README shows them.
var Catalogue = []CatalogueEntry{
	{CodeJWTRouteUncovered, SeverityError, "Exposed route accepts requests without a JWT",
		"A route from an external gateway to a model admits some request that carries no valid token: no DENY rule rejects it and no ALLOW policy leaves it out, at the gateway or at the model. The finding names the route and an example request that gets through."},
	{CodeTCPRouteToModel, SeverityError, "TCP or TLS route to a model",
		"A VirtualService forwards raw TCP/TLS from an external gateway to a model service. JWTs are HTTP: nothing can check them on this route."},
	{CodeDirectExposure, SeverityError, "Model reachable past the gateway without a JWT",
		"A Service of type LoadBalancer or NodePort (or with externalIPs) selects the model's pods, so clients reach the pods directly; only policies on the model workload can protect it, and they do not deny every tokenless request."},
	{CodeModelUnreachable, SeverityWarning, "Even valid tokens are refused",
		"Requests with a valid JWT from an allowed issuer are denied on this route, usually because no RequestAuthentication validating that issuer applies where the policy requires a principal. Nothing is exposed, but the model cannot be called."},
	{CodeMTLSNotStrict, SeverityError, "Model workload accepts plaintext",
		"The effective PeerAuthentication mode of the model workload is not STRICT (workload > namespace > mesh-wide; the default is PERMISSIVE)."},
	{CodeMTLSPortOverride, SeverityError, "A port override weakens mTLS",
		"A workload PeerAuthentication sets portLevelMtls to a mode weaker than STRICT for a port of the model workload."},
	{CodeMTLSDestinationDisable, SeverityError, "A DestinationRule turns mTLS off towards the model",
		"A DestinationRule for the model's host sets tls.mode DISABLE, so clients send plaintext on that hop."},
	{CodeRouteAllPaths, SeverityInfo, "Route judged as every path",
		"The route has a regex URI match or none at all; the engine cannot enumerate a regex, so it judges the route as prefix \"/\"."},
	{CodeUnmodelledCondition, SeverityInfo, "Condition judged at its worst",
		"A `when` key or field the engine does not model was assumed not to match in a DENY rule and to match in an ALLOW rule."},
	{CodeUntrustedCustom, SeverityInfo, "CUSTOM policy not counted",
		"A CUSTOM (ext-authz) policy applies, but its provider is not in trustedExtAuthzProviders, so the engine cannot count it as JWT enforcement."},
	{CodeSelectorMatchesNothing, SeverityWarning, "Policy selector matches no workload on the route",
		"A RequestAuthentication or AuthorizationPolicy that looks meant for this route selects labels that the gateway or model workload does not carry, so it covers nothing here."},
	{CodeGatewayUnknown, SeverityInfo, "Gateway pods not found",
		"The route's Gateway, or the pods its selector picks, are not in the mesh state. An Istio Gateway's pods may run in any namespace, so only mesh-wide policies (root namespace) are counted at the gateway, and the model cannot rely on the gateway's namespace or identity."},
	{CodeDelegateRoute, SeverityInfo, "Delegate not applied yet",
		"The route delegates to a VirtualService that does not exist yet; when it is applied, its routes are judged on this route's gateways and hosts."},
	{CodeIssuerNotAllowed, SeverityError, "Tokens from a disallowed issuer are accepted",
		"A RequestAuthentication on the route accepts an issuer outside the rule's allowedIssuers, and the policies let its tokens through; such a token counts as no token."},
	{CodeInjectPlanned, SeverityInfo, "Policies planned by modelguard",
		"The rule's inject section applies: the object is judged as if the RequestAuthentication and AuthorizationPolicy the reconciler creates already existed."},
	{CodeAnnotationMismatch, SeverityWarning, "modelguard annotations differ from the plan",
		"The object's modelguard.io/* annotations do not equal what the rule plans, so the planned policies are not counted."},
	{CodeGeneratedPolicyChanged, SeverityError, "A policy modelguard generates was changed",
		"The RequestAuthentication or AuthorizationPolicy was generated by modelguard from the GuardConfig's inject section (label app.kubernetes.io/managed-by: modelguard); only modelguard changes it, and the reconciler restores it. Change the GuardConfig, or the model's namespace rule, instead."},
	{CodeNoRule, SeverityInfo, "No rule for this namespace",
		"No GuardConfig rule's namespaceSelector matches the namespace, so the object is not guarded."},
	{CodeExempt, SeverityInfo, "Namespace exempt",
		"The namespace is listed in exemptNamespaces."},
	{CodeMeshStateUnavailable, SeverityError, "Mesh state unavailable",
		"The mesh state could not be read (caches not synced or a lookup failed); modelguard fails closed."},
	{CodeInvalidObject, SeverityError, "Object cannot be judged",
		"A field the engine reads has the wrong type or is missing; the object is refused rather than judged on a guess."},
	{CodeNamespaceRuleWeakened, SeverityError, "A namespace relabel weakens the rule of exposed models",
		"The change of a namespace's labels would make another GuardConfig rule (or none) apply to the exposed models in it, and that rule is laxer than the one that applies now (a weaker mode, mTLS no longer required, more issuers allowed, another inject issuer), or the policies it plans would leave a model uncovered. The finding names both rules and the model. It is refused whoever relabels: change the GuardConfig instead."},
	{CodeStricterRuleApplies, SeverityInfo, "Judged by the model's stricter rule",
		"The VirtualService routes to models of another namespace whose rule has a stricter mode than the rule of its own namespace (or its own namespace has none): it is judged by the models' rule, so that a laxer namespace cannot expose them."},
}

// Finding is one coded observation about the object under review.
type Finding struct {
	Code     Code     `json:"code"`
	Severity Severity `json:"severity"`
	Message  string   `json:"message"`
	Route    string   `json:"route"`
	Fix      string   `json:"fix"`
}

func (f Finding) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] %s", f.Code, f.Message)
	if f.Route != "" {
		fmt.Fprintf(&b, " (route: %s)", f.Route)
	}
	return b.String()
}

// sortFindings orders findings by severity, then code, then route, so output is stable.
func sortFindings(fs []Finding) {
	rank := map[Severity]int{SeverityError: 0, SeverityWarning: 1, SeverityInfo: 2}
	sort.SliceStable(fs, func(i, j int) bool {
		a, b := fs[i], fs[j]
		if rank[a.Severity] != rank[b.Severity] {
			return rank[a.Severity] < rank[b.Severity]
		}
		if a.Code != b.Code {
			return a.Code < b.Code
		}
		return a.Route < b.Route
	})
}

// dedupeFindings drops exact repeats (the same gap seen through two hosts of a route).
func dedupeFindings(fs []Finding) []Finding {
	seen := make(map[Finding]bool, len(fs))
	out := fs[:0]
	for _, f := range fs {
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	return out
}

// Markers delimit the findings section of README.md that CatalogueMarkdown renders.
const (
	CatalogueBegin = "<!-- BEGIN FINDINGS (generated by `go generate ./policy`; do not edit) -->"
	CatalogueEnd   = "<!-- END FINDINGS -->"
)

// CatalogueMarkdown renders the catalogue as the README's findings table.
func CatalogueMarkdown() string {
	var b strings.Builder
	b.WriteString("| Code | Severity | Title | Meaning |\n|---|---|---|---|\n")
	for _, e := range Catalogue {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", e.Code, e.Severity, e.Title, strings.ReplaceAll(e.Meaning, "|", "\\|"))
	}
	return b.String()
}
