// Package oracle is a small concrete evaluator of Istio AuthorizationPolicies.
//
// It decides ONE concrete request against the policies that apply to ONE
// workload, following the documented semantics of security.istio.io
// AuthorizationPolicy (istio.io/api security/v1beta1) and the way Istio
// translates them to Envoy RBAC. It is the soundness oracle for modelguard's
// symbolic policy engine, so it favours clarity over speed and never guesses
// silently: every place where it cannot know the answer is resolved at its
// worst for security and reported in Decision.Assumptions.
//
// Policy applicability (selector, namespace, targetRefs, dry-run filtering)
// is the caller's job: every policy passed to Decide is assumed to apply.
//
// # Evaluation order
//
// CUSTOM policies first, then DENY, then ALLOW; AUDIT never decides and the
// default (unset) action is ALLOW. A policy matches when at least one of its
// rules matches; a policy without rules never matches.
//
// # Absent data
//
// An empty string (or nil/empty slice, or Port 0) in Request means the
// attribute is absent: a positive field or `values` never matches it, a
// `not*` field or `notValues` always does. This models plaintext traffic
// (no peer identity) and tokenless requests (no request.auth.* metadata).
//
// # Inputs Istio would reject
//
// Istio's validation rejects some policies outright; the oracle still gives
// them a deterministic meaning instead of failing:
//   - invalid path templates, IPs/CIDRs and ports match nothing (so the
//     corresponding `not*` field matches everything);
//   - serviceAccounts values are compared literally (wildcards are not
//     allowed there, so "*" matches no real service account);
//   - an empty `source`/`operation` and a condition without values/notValues
//     do not constrain the request, like any other empty field.
//
// # Not modelled
//
// Requests are HTTP: Istio's special handling of HTTP-only fields on TCP
// traffic (ignored in DENY rules, rule dropped in ALLOW rules) is not
// modelled. Neither are trust-domain aliases, nor the mesh limit of one
// CUSTOM provider per workload (each CUSTOM policy is judged on its own).
package oracle
