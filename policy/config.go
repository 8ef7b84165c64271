package policy

import (
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Mode says what happens to an object whose verdict has errors.
type Mode string

const (
	// ModeEnforce denies the admission.
	ModeEnforce Mode = "Enforce"
	// ModeWarn admits with warnings that kubectl prints.
	ModeWarn Mode = "Warn"
	// ModeAudit admits silently; the decision is only logged.
	ModeAudit Mode = "Audit"
)

// rank orders modes from the laxest (Audit) to the strictest (Enforce).
func (m Mode) rank() int {
	switch m {
	case ModeEnforce:
		return 2
	case ModeWarn:
		return 1
	}
	return 0
}

// ConfigAPIVersion and ConfigKind identify a GuardConfig document.
const (
	ConfigAPIVersion = "modelguard.io/v1alpha1"
	ConfigKind       = "GuardConfig"
)

// GuardConfig is the operator's policy: which namespaces are guarded, how strictly, and what
// the mutating webhook plans for the reconciler. Its YAML form is a stable contract (DESIGN.md).
type GuardConfig struct {
	APIVersion        string   `json:"apiVersion"`
	Kind              string   `json:"kind"`
	MeshRootNamespace string   `json:"meshRootNamespace,omitempty"`
	Rules             []Rule   `json:"rules,omitempty"`
	ExemptNamespaces  []string `json:"exemptNamespaces,omitempty"`
	// InternalGateways are gateways (besides `mesh`) that do not face the outside, as "ns/name".
	InternalGateways []string `json:"internalGateways,omitempty"`
	// TrustedExtAuthzProviders are CUSTOM providers known to enforce JWT.
	TrustedExtAuthzProviders []string `json:"trustedExtAuthzProviders,omitempty"`
	// SeldonMeshService is the name of Seldon Core v2's mesh Service in a model namespace.
	SeldonMeshService string `json:"seldonMeshService,omitempty"`
	// KServeIngressGateway is the gateway ("ns/name") through which KServe publishes an
	// InferenceService that is not cluster-local.
	KServeIngressGateway string `json:"kserveIngressGateway,omitempty"`
	// ModelServiceSelectors mark further Services as model services (label selectors on the Service).
	ModelServiceSelectors []metav1.LabelSelector `json:"modelServiceSelectors,omitempty"`
	// ClusterDomain is the DNS suffix of Service FQDNs.
	ClusterDomain string `json:"clusterDomain,omitempty"`

	rules       []compiledRule
	internalGWs map[string]bool
	modelSvcSel []labels.Selector
}

// Rule applies to the namespaces its selector matches; the first matching rule wins.
type Rule struct {
	Name              string                `json:"name"`
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	Mode              Mode                  `json:"mode,omitempty"`
	RequireMTLS       *bool                 `json:"requireMTLS,omitempty"`
	AllowedIssuers    []string              `json:"allowedIssuers,omitempty"`
	Inject            *Inject               `json:"inject,omitempty"`
}

// Inject is what the mutating webhook annotates and the reconciler creates.
type Inject struct {
	Issuer             string   `json:"issuer"`
	JwksURI            string   `json:"jwksUri"`
	Audiences          []string `json:"audiences,omitempty"`
	AllowSameNamespace bool     `json:"allowSameNamespace,omitempty"`
}

type compiledRule struct {
	*Rule
	selector labels.Selector
}

// MTLSRequired reports the rule's requireMTLS with its default (true).
func (r *Rule) MTLSRequired() bool { return r.RequireMTLS == nil || *r.RequireMTLS }

// IssuerAllowed reports whether tokens of issuer count as authentication under this rule.
func (r *Rule) IssuerAllowed(issuer string) bool {
	return len(r.AllowedIssuers) == 0 || slices.Contains(r.AllowedIssuers, issuer)
}

// DefaultConfigYAML is the configuration used when none is given: every namespace but
// kube-system is enforced, mTLS required, any issuer accepted.
const DefaultConfigYAML = `apiVersion: modelguard.io/v1alpha1
kind: GuardConfig
meshRootNamespace: istio-system
rules:
- name: default
  namespaceSelector: {}
  mode: Enforce
  requireMTLS: true
exemptNamespaces: [kube-system]
internalGateways: [knative-serving/knative-local-gateway]
`

// DefaultConfig returns the built-in configuration.
func DefaultConfig() *GuardConfig {
	cfg, err := ParseConfig("default", []byte(DefaultConfigYAML))
	if err != nil {
		panic(fmt.Sprintf("built-in config is invalid: %v", err))
	}
	return cfg
}

// LoadConfig reads and validates a GuardConfig file.
func LoadConfig(path string) (*GuardConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading GuardConfig: %w", err)
	}
	return ParseConfig(path, data)
}

// ParseConfig decodes a GuardConfig strictly (unknown fields, duplicate keys and wrong types are
// errors naming file, line and field), applies defaults and validates it.
func ParseConfig(file string, data []byte) (*GuardConfig, error) {
	if n := countDocuments(data); n != 1 {
		return nil, &ConfigError{File: file, Line: 1, Msg: fmt.Sprintf("a GuardConfig file holds exactly one YAML document, found %d", n)}
	}
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, &ConfigError{File: file, Line: yamlErrorLine(err), Msg: err.Error()}
	}
	cfg := &GuardConfig{}
	strictErrs, err := sigsjson.UnmarshalStrict(js, cfg, sigsjson.DisallowUnknownFields, sigsjson.DisallowDuplicateFields)
	if err != nil {
		return nil, &ConfigError{File: file, Line: 1, Msg: err.Error()}
	}
	if len(strictErrs) > 0 {
		return nil, configFieldError(file, data, strictErrs[0])
	}
	cfg.applyDefaults()
	if errs := cfg.validate(); len(errs) > 0 {
		e := errs[0]
		return nil, &ConfigError{File: file, Line: lineOfPath(data, e.Field), Field: e.Field, Msg: e.ErrorBody(), More: len(errs) - 1}
	}
	if err := cfg.compile(); err != nil {
		return nil, &ConfigError{File: file, Line: 1, Msg: err.Error()}
	}
	return cfg, nil
}

// ConfigError is an invalid GuardConfig: where it is and what is wrong.
type ConfigError struct {
	File  string
	Line  int
	Field string
	Msg   string
	More  int // further errors not shown
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	if e.Field != "" {
		fmt.Fprintf(&b, "%s: ", e.Field)
	}
	b.WriteString(e.Msg)
	if e.More > 0 {
		fmt.Fprintf(&b, " (and %d more errors)", e.More)
	}
	return b.String()
}

func configFieldError(file string, data []byte, err error) error {
	msg := err.Error()
	path := ""
	// sigs.k8s.io/json reports `unknown field "rules[0].mdoe"` or `duplicate field "x"`.
	if i := strings.Index(msg, `"`); i >= 0 {
		if j := strings.LastIndex(msg, `"`); j > i {
			path = msg[i+1 : j]
		}
	}
	return &ConfigError{File: file, Line: lineOfPath(data, path), Field: path, Msg: msg}
}

func (c *GuardConfig) applyDefaults() {
	if c.MeshRootNamespace == "" {
		c.MeshRootNamespace = "istio-system"
	}
	if c.InternalGateways == nil {
		c.InternalGateways = []string{"knative-serving/knative-local-gateway"}
	}
	if c.SeldonMeshService == "" {
		c.SeldonMeshService = "seldon-mesh"
	}
	if c.KServeIngressGateway == "" {
		c.KServeIngressGateway = "knative-serving/knative-ingress-gateway"
	}
	if c.ClusterDomain == "" {
		c.ClusterDomain = "cluster.local"
	}
	for i := range c.Rules {
		if c.Rules[i].Mode == "" {
			c.Rules[i].Mode = ModeEnforce
		}
	}
}

func (c *GuardConfig) validate() field.ErrorList {
	var errs field.ErrorList
	if c.APIVersion != ConfigAPIVersion {
		errs = append(errs, field.NotSupported(field.NewPath("apiVersion"), c.APIVersion, []string{ConfigAPIVersion}))
	}
	if c.Kind != ConfigKind {
		errs = append(errs, field.NotSupported(field.NewPath("kind"), c.Kind, []string{ConfigKind}))
	}
	if len(c.Rules) == 0 {
		errs = append(errs, field.Required(field.NewPath("rules"), "at least one rule; without rules nothing is guarded"))
	}
	seen := map[string]bool{}
	for i := range c.Rules {
		p := field.NewPath("rules").Index(i)
		errs = append(errs, c.Rules[i].validate(p)...)
		if seen[c.Rules[i].Name] {
			errs = append(errs, field.Duplicate(p.Child("name"), c.Rules[i].Name))
		}
		seen[c.Rules[i].Name] = true
	}
	for i, g := range c.InternalGateways {
		if ns, name, ok := strings.Cut(g, "/"); !ok || ns == "" || name == "" {
			errs = append(errs, field.Invalid(field.NewPath("internalGateways").Index(i), g, `must be "namespace/name"`))
		}
	}
	if ns, name, ok := strings.Cut(c.KServeIngressGateway, "/"); !ok || ns == "" || name == "" {
		errs = append(errs, field.Invalid(field.NewPath("kserveIngressGateway"), c.KServeIngressGateway, `must be "namespace/name"`))
	}
	for i := range c.ModelServiceSelectors {
		if _, err := metav1.LabelSelectorAsSelector(&c.ModelServiceSelectors[i]); err != nil {
			errs = append(errs, field.Invalid(field.NewPath("modelServiceSelectors").Index(i), c.ModelServiceSelectors[i], err.Error()))
		}
	}
	return errs
}

func (r *Rule) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if r.Name == "" {
		errs = append(errs, field.Required(p.Child("name"), "rules are named so that verdicts and annotations can cite them"))
	}
	if r.NamespaceSelector == nil {
		errs = append(errs, field.Required(p.Child("namespaceSelector"), "use {} to match every namespace"))
	} else if _, err := metav1.LabelSelectorAsSelector(r.NamespaceSelector); err != nil {
		errs = append(errs, field.Invalid(p.Child("namespaceSelector"), r.NamespaceSelector, err.Error()))
	}
	switch r.Mode {
	case ModeEnforce, ModeWarn, ModeAudit:
	default:
		errs = append(errs, field.NotSupported(p.Child("mode"), r.Mode, []string{string(ModeEnforce), string(ModeWarn), string(ModeAudit)}))
	}
	for i, iss := range r.AllowedIssuers {
		if iss == "" {
			errs = append(errs, field.Required(p.Child("allowedIssuers").Index(i), "an issuer"))
		}
	}
	if r.Inject != nil {
		errs = append(errs, r.Inject.validate(p.Child("inject"), r)...)
	}
	return errs
}

func (in *Inject) validate(p *field.Path, r *Rule) field.ErrorList {
	var errs field.ErrorList
	if in.Issuer == "" {
		errs = append(errs, field.Required(p.Child("issuer"), "the JWT issuer the generated RequestAuthentication accepts"))
	} else if !r.IssuerAllowed(in.Issuer) {
		errs = append(errs, field.Invalid(p.Child("issuer"), in.Issuer, "not in this rule's allowedIssuers: the generated policies would never count as coverage"))
	}
	if u, err := url.Parse(in.JwksURI); in.JwksURI == "" || err != nil || u.Scheme != "https" || u.Host == "" {
		errs = append(errs, field.Invalid(p.Child("jwksUri"), in.JwksURI, "must be an https:// URL"))
	}
	for i, a := range in.Audiences {
		if a == "" || strings.Contains(a, ",") {
			errs = append(errs, field.Invalid(p.Child("audiences").Index(i), a, "must be non-empty and contain no comma (the annotation is comma-separated)"))
		}
	}
	return errs
}

func (c *GuardConfig) compile() error {
	c.rules = make([]compiledRule, len(c.Rules))
	for i := range c.Rules {
		sel, err := metav1.LabelSelectorAsSelector(c.Rules[i].NamespaceSelector)
		if err != nil {
			return fmt.Errorf("rules[%d].namespaceSelector: %w", i, err)
		}
		c.rules[i] = compiledRule{Rule: &c.Rules[i], selector: sel}
	}
	c.internalGWs = map[string]bool{"mesh": true}
	for _, g := range c.InternalGateways {
		c.internalGWs[g] = true
	}
	c.modelSvcSel = make([]labels.Selector, len(c.ModelServiceSelectors))
	for i := range c.ModelServiceSelectors {
		sel, err := metav1.LabelSelectorAsSelector(&c.ModelServiceSelectors[i])
		if err != nil {
			return fmt.Errorf("modelServiceSelectors[%d]: %w", i, err)
		}
		c.modelSvcSel[i] = sel
	}
	return nil
}

// RuleFor returns the first rule whose namespaceSelector matches the namespace's labels, or nil.
func (c *GuardConfig) RuleFor(nsLabels map[string]string) *Rule {
	return c.ruleFor(labels.Set(nsLabels))
}

func (c *GuardConfig) ruleFor(l labels.Labels) *Rule {
	for _, r := range c.rules {
		if r.selector.Matches(l) {
			return r.Rule
		}
	}
	return nil
}

// Exempt reports whether objects in namespace ns are never judged.
func (c *GuardConfig) Exempt(ns string) bool { return slices.Contains(c.ExemptNamespaces, ns) }

// internalGateway reports whether the gateway "ns/name" (or "mesh") faces only the mesh.
func (c *GuardConfig) internalGateway(gw string) bool { return c.internalGWs[gw] }
