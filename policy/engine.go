package policy

import (
	"fmt"
	"slices"
	"sort"

	securityapi "istio.io/api/security/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// Verdict is the engine's answer for one object.
type Verdict struct {
	Allowed  bool      `json:"allowed"`
	Mode     Mode      `json:"mode,omitempty"`
	Rule     string    `json:"rule,omitempty"`
	Exposed  bool      `json:"exposed"`
	Findings []Finding `json:"findings"`
	// Plan is what the rule's inject section plans for the object (nil without inject).
	Plan *Plan `json:"-"`
}

// worst is the highest severity among the findings (info without any).
func (v Verdict) worst() Severity {
	worst := SeverityInfo
	for _, f := range v.Findings {
		if f.Severity == SeverityError {
			return SeverityError
		}
		if f.Severity == SeverityWarning {
			worst = SeverityWarning
		}
	}
	return worst
}

// Decision names the verdict as the audit log does: allowed, denied, warned or audited.
func (v Verdict) Decision() string {
	worst := v.worst()
	switch {
	case worst == SeverityInfo:
		return "allowed"
	case !v.Allowed:
		return "denied"
	case v.Mode == ModeAudit:
		return "audited"
	}
	return "warned"
}

// Codes lists the verdict's distinct finding codes in order.
func (v Verdict) Codes() []string {
	var out []string
	for _, f := range v.Findings {
		if c := string(f.Code); len(out) == 0 || !containsStr(out, c) {
			out = append(out, c)
		}
	}
	return out
}

func containsStr(xs []string, x string) bool {
	for _, s := range xs {
		if s == x {
			return true
		}
	}
	return false
}

// Options tune one evaluation.
type Options struct {
	// SimulateMutation judges objects as the mutating webhook would leave them: with the
	// rule's inject annotations set. The CLI uses it on files written before admission; the
	// validating webhook never does, so that safety does not depend on the mutating webhook.
	SimulateMutation bool
	// Change judges the object as if one security or routing policy of the mesh state were
	// replaced: Old (as stored) removed and New (nil for a deletion) added. The validating
	// guard uses it to refuse policy edits that would uncover an admitted model.
	Change *Change
	// view overrides one namespace's labels; Uncovers sets it to judge a relabelling.
	view *nsView
}

// nsView makes the engine read one namespace's labels from the caller instead of the
// snapshot. rule are the labels whose rule judges the object (requirements and mode); plan,
// when set, are the labels whose rule plans the policies modelguard generates for the
// namespace's models: where the current plan counts (the model carries its annotations), the
// new rule's plan counts instead, since after a relabel the mutating webhook re-annotates the
// model and the reconciler follows the new rule. hideGenerated leaves out the stored
// generated policies of the namespace, which the reconciler rewrites or removes to match.
type nsView struct {
	name          string
	rule, plan    map[string]string
	hideGenerated bool
}

// Change is a what-if edit of one AuthorizationPolicy, RequestAuthentication,
// PeerAuthentication or DestinationRule.
type Change struct {
	Old, New runtime.Object
}

// evaluation is the state of judging one object.
type evaluation struct {
	cfg      *GuardConfig
	snap     *Snapshot
	rule     *Rule
	opts     Options
	subject  runtime.Object
	findings []Finding
	hops     map[*Workload]*hopPolicies
	extraAP  []*securityv1.AuthorizationPolicy
	extraRA  []*securityv1.RequestAuthentication
	planned  map[string]bool
	plan     *Plan
	hidden   string // "Kind/ns/name" of a stored policy the what-if change removes
	extraPA  []*securityv1.PeerAuthentication
	extraDR  []*networkingv1.DestinationRule
	// reached: namespaces of the models the VirtualService under review routes to
	reached map[string]bool
	// isvcTargets: the target of each InferenceService component met so far (a model is
	// usually reached by its own publication and by VirtualServices)
	isvcTargets map[isvcComponent]*target
	// classBuf holds the request classes being judged (see gatewayClasses)
	classBuf []reqClass
}

type isvcComponent struct {
	isvc      *unstructured.Unstructured
	component string
}

// applyChange sets up the what-if overlay of opts.Change.
func (ev *evaluation) applyChange(c *Change) {
	if c == nil {
		return
	}
	if c.Old != nil {
		ev.hidden = keyOf(c.Old)
	}
	switch n := c.New.(type) {
	case *securityv1.AuthorizationPolicy:
		ev.extraAP = append(ev.extraAP, n)
	case *securityv1.RequestAuthentication:
		ev.extraRA = append(ev.extraRA, n)
	case *securityv1.PeerAuthentication:
		ev.extraPA = append(ev.extraPA, n)
	case *networkingv1.DestinationRule:
		ev.extraDR = append(ev.extraDR, n)
	}
}

// keyOf identifies a policy object across versions.
func keyOf(o runtime.Object) string {
	switch t := o.(type) {
	case *securityv1.AuthorizationPolicy:
		return "AuthorizationPolicy/" + t.Namespace + "/" + t.Name
	case *securityv1.RequestAuthentication:
		return "RequestAuthentication/" + t.Namespace + "/" + t.Name
	case *securityv1.PeerAuthentication:
		return "PeerAuthentication/" + t.Namespace + "/" + t.Name
	case *networkingv1.DestinationRule:
		return "DestinationRule/" + t.Namespace + "/" + t.Name
	}
	return ""
}

// isHidden reports whether a stored object is the one the what-if change removes.
func (ev *evaluation) isHidden(kind, ns, name string) bool {
	return ev.hidden != "" && ev.hidden == kind+"/"+ns+"/"+name
}

// hiddenGenerated reports whether a stored policy is a generated one the namespace view
// leaves out.
func (ev *evaluation) hiddenGenerated(ns string, lbls map[string]string) bool {
	v := ev.opts.view
	return v != nil && v.hideGenerated && v.name == ns && lbls[LabelManagedBy] == ManagedByValue
}

// ruleFor returns the rule of namespace ns, through the namespace view.
func (ev *evaluation) ruleFor(ns string) *Rule {
	if v := ev.opts.view; v != nil && v.name == ns {
		return ev.cfg.ruleFor(nsLabels{name: ns, labels: v.rule})
	}
	return ev.cfg.ruleFor(ev.snap.namespaceLabels(ns))
}

// Evaluate judges one Model, InferenceService or VirtualService against the mesh state.
// It does no I/O and never panics on a malformed object: it reports it as INVALID_OBJECT.
func Evaluate(cfg *GuardConfig, snap *Snapshot, obj runtime.Object, opts Options) Verdict {
	snap.mu.RLock()
	defer snap.mu.RUnlock()
	ev := &evaluation{cfg: cfg, snap: snap, opts: opts, subject: obj, hops: map[*Workload]*hopPolicies{}, planned: map[string]bool{}, reached: map[string]bool{}}
	ev.applyChange(opts.Change)
	ns, err := subjectNamespace(obj)
	if err != nil {
		return Verdict{Mode: ModeEnforce, Findings: []Finding{{Code: CodeInvalidObject, Severity: SeverityError, Message: err.Error()}}}
	}
	if err := ValidateObject(obj); err != nil {
		return Verdict{Mode: ModeEnforce, Findings: []Finding{{Code: CodeInvalidObject, Severity: SeverityError, Message: err.Error(),
			Fix: "Correct the field named in the message; modelguard refuses objects it cannot read rather than judge them on a guess."}}}
	}
	if cfg.Exempt(ns) {
		return Verdict{Allowed: true, Findings: []Finding{{Code: CodeExempt, Severity: SeverityInfo, Message: fmt.Sprintf("namespace %s is exempt", ns)}}}
	}
	ev.rule = ev.ruleFor(ns)
	_, isVS := obj.(*networkingv1.VirtualService)
	noRule := Verdict{Allowed: true, Findings: []Finding{{Code: CodeNoRule, Severity: SeverityInfo, Message: fmt.Sprintf("no rule's namespaceSelector matches namespace %s", ns)}}}
	if ev.rule == nil && !isVS {
		return noRule
	}
	exposures := ev.exposuresOf(obj)
	if isVS {
		ev.adoptStricterRule(ns)
	}
	if ev.rule == nil {
		return noRule
	}
	for _, x := range exposures {
		ev.judgeExposure(x)
	}
	ev.checkMTLSAll(exposures)
	return ev.verdict(len(exposures) > 0)
}

// adoptStricterRule judges a VirtualService by the requirements of every rule that guards
// what it exposes: its own namespace's rule and the rules of the namespaces whose models it
// routes to, combined (the strictest mode, mTLS where any requires it, only issuers every
// restricting rule allows). Bypass fix: judged by its own namespace's rule alone, a
// VirtualService in a namespace whose rule is laxer (Warn, Audit, no mTLS, any issuer, or no
// rule at all) was admitted although it exposed a model of a stricter namespace, whose owner
// it is not. (An exempt namespace stays exempt: the operator listed it.)
func (ev *evaluation) adoptStricterRule(ns string) {
	namespaces := make([]string, 0, len(ev.reached))
	for n := range ev.reached {
		namespaces = append(namespaces, n)
	}
	sort.Strings(namespaces)
	for _, tns := range namespaces {
		if tns == ns || ev.cfg.Exempt(tns) {
			continue
		}
		r := ev.ruleFor(tns)
		if r == nil || r == ev.rule {
			continue
		}
		combined, stricter := combineRules(ev.rule, r)
		if !stricter {
			continue
		}
		own := "no rule"
		if ev.rule != nil {
			own = fmt.Sprintf("rule %q (%s)", ev.rule.Name, ev.rule.Mode)
		}
		ev.add(Finding{Code: CodeStricterRuleApplies, Severity: SeverityInfo,
			Message: fmt.Sprintf("the routes reach models of namespace %s, whose rule %q (%s) asks more than %s of namespace %s: judged by %q (%s, requireMTLS %v, allowedIssuers %v)",
				tns, r.Name, r.Mode, own, ns, combined.Name, combined.Mode, combined.MTLSRequired(), orAny(combined.AllowedIssuers))})
		ev.rule = combined
	}
}

// combineRules returns a rule with the requirements of both (own may be nil), and whether
// that asks more than own. Where target asks at least as much as own in every respect, it is
// target itself; otherwise a rule named "own+target".
func combineRules(own, target *Rule) (*Rule, bool) {
	if own == nil {
		return target, true
	}
	c := Rule{Name: own.Name, NamespaceSelector: own.NamespaceSelector, Mode: own.Mode, RequireMTLS: own.RequireMTLS, AllowedIssuers: own.AllowedIssuers}
	stricter := false
	if target.Mode.rank() > c.Mode.rank() {
		c.Mode, stricter = target.Mode, true
	}
	if target.MTLSRequired() && !c.MTLSRequired() {
		required := true
		c.RequireMTLS, stricter = &required, true
	}
	if widened(target.AllowedIssuers, c.AllowedIssuers) {
		stricter = true
		if len(c.AllowedIssuers) == 0 {
			c.AllowedIssuers = target.AllowedIssuers
		} else {
			var both []string
			for _, iss := range c.AllowedIssuers {
				if slices.Contains(target.AllowedIssuers, iss) {
					both = append(both, iss)
				}
			}
			if len(both) == 0 {
				both = []string{"(no issuer: the rules allow none in common)"}
			}
			c.AllowedIssuers = both
		}
	}
	if !stricter {
		return own, false
	}
	if c.Mode == target.Mode && c.MTLSRequired() == target.MTLSRequired() && !widened(c.AllowedIssuers, target.AllowedIssuers) {
		return target, true // target asks at least as much as own in every respect
	}
	c.Name = own.Name + "+" + target.Name
	return &c, true
}

func subjectNamespace(obj runtime.Object) (string, error) {
	switch o := obj.(type) {
	case *networkingv1.VirtualService:
		if o == nil {
			return "", fmt.Errorf("no object to judge")
		}
		return o.Namespace, nil
	case *unstructured.Unstructured:
		if o == nil || o.Object == nil {
			return "", fmt.Errorf("no object to judge")
		}
		switch o.GroupVersionKind() {
		case GVKInferenceService, GVKModel:
			return o.GetNamespace(), nil
		}
		return "", fmt.Errorf("cannot judge a %s", o.GroupVersionKind())
	case nil:
		return "", fmt.Errorf("no object to judge")
	}
	return "", fmt.Errorf("cannot judge a %T", obj)
}

func (ev *evaluation) verdict(exposed bool) Verdict {
	fs := dedupeFindings(ev.findings)
	sortFindings(fs)
	v := Verdict{Allowed: true, Mode: ev.rule.Mode, Rule: ev.rule.Name, Exposed: exposed, Findings: fs, Plan: ev.plan}
	for _, f := range fs {
		if f.Severity == SeverityError && ev.rule.Mode == ModeEnforce {
			v.Allowed = false
		}
	}
	if v.Findings == nil {
		v.Findings = []Finding{}
	}
	return v
}

func (ev *evaluation) add(f Finding) { ev.findings = append(ev.findings, f) }

func (ev *evaluation) invalid(err error) {
	ev.add(Finding{Code: CodeInvalidObject, Severity: SeverityError, Message: err.Error()})
}

// exposuresOf derives every route from outside to a model that the object creates or joins.
func (ev *evaluation) exposuresOf(obj runtime.Object) []*exposure {
	switch o := obj.(type) {
	case *networkingv1.VirtualService:
		return ev.exposuresOfVS(o, nil)
	case *unstructured.Unstructured:
		if o.GroupVersionKind() == GVKInferenceService {
			return ev.exposuresOfISVC(InferenceService{U: o})
		}
		m := SeldonModel{U: o}
		ev.planFor(m)
		return ev.exposuresOfModel(m)
	}
	return nil
}

// exposuresOfVS expands the VirtualService's routes to models; keep, when set, restricts the
// result to one target (judging a model through VirtualServices already in the mesh).
func (ev *evaluation) exposuresOfVS(vs *networkingv1.VirtualService, keep func(*target) bool) []*exposure {
	var out []*exposure
	for _, r := range ev.vsRoutes(vs) {
		for _, t := range ev.targetsOf(r.destination) {
			if keep != nil && !keep(t) {
				continue
			}
			if _, ok := reachesSeldonModel(r, t); !ok {
				continue
			}
			ev.reached[t.namespace] = true
			ev.planFor(t.owner)
			if r.protocol == "TCP" {
				ev.add(Finding{Code: CodeTCPRouteToModel, Severity: SeverityError, Route: r.String(),
					Message: fmt.Sprintf("%s is reachable over raw TCP/TLS from gateway %s: no JWT can be checked on this route", t.ref, r.gateway),
					Fix:     "Route the model over HTTP (an `http:` route) so that JWT policies apply, or remove the external gateway from the VirtualService."})
				continue
			}
			out = append(out, &exposure{route: r, target: t, gateways: ev.gatewayWorkloads(r.gateway)})
		}
	}
	return out
}

func (ev *evaluation) exposuresOfISVC(isvc InferenceService) []*exposure {
	t := ev.isvcTargetFor(isvc, "")
	ev.planFor(isvc)
	var out []*exposure
	if !isvc.ClusterLocal() {
		r := &route{via: fmt.Sprintf("InferenceService %s/%s published by KServe (%s mode, not labelled %s=%s)", isvc.Namespace(), isvc.Name(), isvc.DeploymentMode(), LabelKServeVisibility, visibilityClusterLocal),
			gateway: ev.cfg.KServeIngressGateway, hosts: []string{isvc.Name() + "." + isvc.Namespace() + ".<ingress domain>"},
			match: "every path", paths: prefixed("/"), method: anyStr, protocol: "REST+gRPC",
			destination: isvc.Name() + "-" + orDefault(t.workloads[0].Labels["component"], "predictor") + "." + isvc.Namespace() + ".svc." + ev.cfg.ClusterDomain}
		if ev.cfg.internalGateway(r.gateway) {
			r = nil
		}
		if r != nil {
			out = append(out, &exposure{route: r, target: t, gateways: ev.gatewayWorkloads(r.gateway)})
		}
	}
	key := isvc.Namespace() + "/" + isvc.Name()
	for _, vs := range ev.vsReaching(isvc.ServiceNames(), isvc.Namespace()) {
		out = append(out, ev.exposuresOfVS(vs, func(t *target) bool { return t.ref == "InferenceService "+key })...)
	}
	return append(out, ev.directExposures(t)...)
}

func (ev *evaluation) exposuresOfModel(m SeldonModel) []*exposure {
	ref := objectRef("Model", m.Namespace(), m.Name())
	var out []*exposure
	for _, vs := range ev.vsReaching([]string{ev.cfg.SeldonMeshService}, m.Namespace()) {
		out = append(out, ev.exposuresOfVS(vs, func(t *target) bool { return t.ref == ref })...)
	}
	for _, t := range ev.seldonTargets(m.Namespace()) {
		if t.ref == ref {
			out = append(out, ev.directExposures(t)...)
		}
	}
	return out
}

// vsReaching returns the VirtualServices in the mesh state with a route to one of the named
// Services of namespace ns (the object under review replaces its stored version).
func (ev *evaluation) vsReaching(services []string, ns string) []*networkingv1.VirtualService {
	seen := map[*networkingv1.VirtualService]bool{}
	var out []*networkingv1.VirtualService
	for _, svc := range services {
		for _, vs := range ev.snap.vsByHost[svc+"."+ns+".svc."+ev.cfg.ClusterDomain] {
			if !seen[vs] {
				seen[vs] = true
				out = append(out, vs)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Namespace+"/"+out[i].Name < out[j].Namespace+"/"+out[j].Name })
	return out
}

// isvc looks an InferenceService up, preferring the object under review.
func (ev *evaluation) isvc(ns, name string) (InferenceService, bool) {
	if u, ok := ev.subject.(*unstructured.Unstructured); ok && u.GroupVersionKind() == GVKInferenceService && u.GetNamespace() == ns && u.GetName() == name {
		return InferenceService{U: u}, true
	}
	u, ok := ev.snap.isvcs[ns+"/"+name]
	return InferenceService{U: u}, ok
}

// modelsIn lists the Seldon Models of a namespace, the object under review included.
func (ev *evaluation) modelsIn(ns string) []SeldonModel {
	var out []SeldonModel
	subj, _ := ev.subject.(*unstructured.Unstructured)
	isSubj := subj != nil && subj.GroupVersionKind() == GVKModel && subj.GetNamespace() == ns
	for name, u := range ev.snap.models[ns] {
		if isSubj && name == subj.GetName() {
			continue
		}
		out = append(out, SeldonModel{U: u})
	}
	if isSubj {
		out = append(out, SeldonModel{U: subj})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out
}

// dryRunAnnotation marks an AuthorizationPolicy Istio evaluates but does not enforce.
const dryRunAnnotation = "istio.io/dry-run"

// policiesAt gathers the security policies that can apply to a workload (cached per evaluation).
func (ev *evaluation) policiesAt(w *Workload) *hopPolicies {
	if h, ok := ev.hops[w]; ok {
		return h
	}
	h := &hopPolicies{unplaced: w.Namespace == ""}
	ev.snap.authz.candidates(w, func(p *securityv1.AuthorizationPolicy, a applicability) {
		if !ev.isHidden("AuthorizationPolicy", p.Namespace, p.Name) && !ev.hiddenGenerated(p.Namespace, p.Labels) {
			h.addAP(p, a)
		}
	})
	ev.snap.reqAuthn.candidates(w, func(p *securityv1.RequestAuthentication, a applicability) {
		if !ev.isHidden("RequestAuthentication", p.Namespace, p.Name) && !ev.hiddenGenerated(p.Namespace, p.Labels) {
			h.ras = append(h.ras, appliedRA{p: p, a: a})
		}
	})
	// Planned policies and the new version of a what-if change.
	for _, p := range ev.extraAP {
		if a := authzSelector(p).applies(p.Namespace, ev.cfg.MeshRootNamespace, w); a != applyNo {
			h.addAP(p, a)
		}
	}
	for _, p := range ev.extraRA {
		if a := raSelector(p).applies(p.Namespace, ev.cfg.MeshRootNamespace, w); a != applyNo {
			h.ras = append(h.ras, appliedRA{p: p, a: a})
		}
	}
	ev.hops[w] = h
	return h
}

// addAP files an AuthorizationPolicy under its action; dry-run policies are left out, since
// Istio only logs what they would do.
func (h *hopPolicies) addAP(p *securityv1.AuthorizationPolicy, a applicability) {
	if p.Annotations[dryRunAnnotation] == "true" {
		return
	}
	ap := appliedAP{p: p, a: a}
	switch p.Spec.GetAction() {
	case securityapi.AuthorizationPolicy_CUSTOM:
		h.custom = append(h.custom, ap)
	case securityapi.AuthorizationPolicy_DENY:
		h.deny = append(h.deny, ap)
	case securityapi.AuthorizationPolicy_ALLOW:
		h.allow = append(h.allow, ap)
	}
}

// Judgeable reports whether the engine judges objects of this kind (the rest is mesh state).
func Judgeable(obj runtime.Object) bool {
	_, err := subjectNamespace(obj)
	return err == nil
}
