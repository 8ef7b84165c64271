package policy

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// Snapshot is the mesh state the engine judges against, indexed so that judging one object
// touches only the policies that can apply to it: per namespace, the mesh root namespace by
// selector label, Gateway API target refs, VirtualServices by destination host, and workloads
// by label. It is safe for concurrent use: informer handlers Upsert and Delete while admission
// requests Evaluate.
type Snapshot struct {
	mu       sync.RWMutex
	rootNS   string
	domain   string
	authz    *policyIndex[*securityv1.AuthorizationPolicy]
	reqAuthn *policyIndex[*securityv1.RequestAuthentication]
	peerAuth *policyIndex[*securityv1.PeerAuthentication]

	gateways map[string]*networkingv1.Gateway // "ns/name"
	vs       map[string]*networkingv1.VirtualService
	vsByHost map[string][]*networkingv1.VirtualService // destination FQDN
	// vsDelegators: delegate "ns/name" -> root VirtualServices delegating a route to it
	vsDelegators map[string][]*networkingv1.VirtualService
	dr           map[string]*networkingv1.DestinationRule
	drByHost     map[string][]*networkingv1.DestinationRule // exact FQDN
	drWildcard   []*networkingv1.DestinationRule

	workloads   map[string]*Workload   // "kind/ns/name"
	wlByLabel   map[string][]*Workload // "k=v"
	wlByNSLbl   map[string][]*Workload // "ns/k=v": a namespace's workloads by label
	wlByNS      map[string][]*Workload
	services    map[string]*corev1.Service
	svcByNS     map[string][]*corev1.Service
	namespaces  map[string]map[string]string // labels
	terminating map[string]bool
	isvcs       map[string]*unstructured.Unstructured
	models      map[string]map[string]*unstructured.Unstructured // namespace -> name
	// versions: "Kind/ns/name" -> resourceVersion of every object held, for Holds
	versions map[string]string
}

// Workload is a set of pods with the same labels: a Pod, or the template of a Deployment,
// StatefulSet or DaemonSet. Exact is false for a workload the engine inferred (a gateway known
// only by its selector, a model whose pods are not in the snapshot): then a label it does not
// list may still be on the real pods.
type Workload struct {
	Ref            string // "Deployment ns/name", shown in findings
	Namespace      string
	Labels         map[string]string
	ServiceAccount string
	Exact          bool
}

// NewSnapshot returns an empty snapshot for a mesh whose root namespace and cluster domain are
// those of cfg.
func NewSnapshot(cfg *GuardConfig) *Snapshot {
	return &Snapshot{
		rootNS:       cfg.MeshRootNamespace,
		domain:       cfg.ClusterDomain,
		authz:        newPolicyIndex(cfg.MeshRootNamespace, authzSelector),
		reqAuthn:     newPolicyIndex(cfg.MeshRootNamespace, raSelector),
		peerAuth:     newPolicyIndex(cfg.MeshRootNamespace, paSelector),
		gateways:     map[string]*networkingv1.Gateway{},
		vs:           map[string]*networkingv1.VirtualService{},
		vsByHost:     map[string][]*networkingv1.VirtualService{},
		vsDelegators: map[string][]*networkingv1.VirtualService{},
		dr:           map[string]*networkingv1.DestinationRule{},
		drByHost:     map[string][]*networkingv1.DestinationRule{},
		workloads:    map[string]*Workload{},
		wlByLabel:    map[string][]*Workload{},
		wlByNSLbl:    map[string][]*Workload{},
		wlByNS:       map[string][]*Workload{},
		services:     map[string]*corev1.Service{},
		svcByNS:      map[string][]*corev1.Service{},
		namespaces:   map[string]map[string]string{},
		terminating:  map[string]bool{},
		isvcs:        map[string]*unstructured.Unstructured{},
		models:       map[string]map[string]*unstructured.Unstructured{},
		versions:     map[string]string{},
	}
}

// Upsert adds or replaces one object. Objects of kinds the engine does not read are ignored.
func (s *Snapshot) Upsert(obj runtime.Object) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.apply(obj, false)
}

// Delete removes one object (matched by kind, namespace and name).
func (s *Snapshot) Delete(obj runtime.Object) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.apply(obj, true)
}

func (s *Snapshot) apply(obj runtime.Object, del bool) error {
	kind, err := s.put(obj, del)
	if err != nil || kind == "" {
		return err
	}
	m := obj.(metav1.Object)
	putMap(s.versions, kind+"/"+m.GetNamespace()+"/"+m.GetName(), m.GetResourceVersion(), del)
	return nil
}

// Holds reports whether the snapshot holds the object of that kind ("AuthorizationPolicy",
// "Deployment", "Namespace", "InferenceService", ...), namespace ("" for a Namespace) and
// name, at resourceVersion unless that is empty. The informers apply writes asynchronously:
// a caller that writes through the API server and then relies on modelguard having seen the
// write (the integration tests) waits until it holds.
func (s *Snapshot) Holds(kind, namespace, name, resourceVersion string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	rv, ok := s.versions[kind+"/"+namespace+"/"+name]
	return ok && (resourceVersion == "" || rv == resourceVersion)
}

// put files one object under its indexes and returns its kind ("" for a kind not kept).
func (s *Snapshot) put(obj runtime.Object, del bool) (string, error) {
	switch o := obj.(type) {
	case *securityv1.AuthorizationPolicy:
		s.authz.put(o.Namespace, o.Name, o, del)
		return "AuthorizationPolicy", nil
	case *securityv1.RequestAuthentication:
		s.reqAuthn.put(o.Namespace, o.Name, o, del)
		return "RequestAuthentication", nil
	case *securityv1.PeerAuthentication:
		s.peerAuth.put(o.Namespace, o.Name, o, del)
		return "PeerAuthentication", nil
	case *networkingv1.Gateway:
		putMap(s.gateways, o.Namespace+"/"+o.Name, o, del)
		return "Gateway", nil
	case *networkingv1.VirtualService:
		s.putVS(o, del)
		return "VirtualService", nil
	case *networkingv1.DestinationRule:
		s.putDR(o, del)
		return "DestinationRule", nil
	case *corev1.Pod:
		s.putWorkload("Pod", o.Namespace, o.Name, o.Labels, o.Spec.ServiceAccountName, del)
		return "Pod", nil
	case *appsv1.Deployment:
		s.putWorkload("Deployment", o.Namespace, o.Name, o.Spec.Template.Labels, o.Spec.Template.Spec.ServiceAccountName, del)
		return "Deployment", nil
	case *appsv1.StatefulSet:
		s.putWorkload("StatefulSet", o.Namespace, o.Name, o.Spec.Template.Labels, o.Spec.Template.Spec.ServiceAccountName, del)
		return "StatefulSet", nil
	case *appsv1.DaemonSet:
		s.putWorkload("DaemonSet", o.Namespace, o.Name, o.Spec.Template.Labels, o.Spec.Template.Spec.ServiceAccountName, del)
		return "DaemonSet", nil
	case *corev1.Service:
		s.putService(o, del)
		return "Service", nil
	case *corev1.Namespace:
		if del {
			delete(s.namespaces, o.Name)
			delete(s.terminating, o.Name)
		} else {
			s.namespaces[o.Name] = o.Labels
			s.terminating[o.Name] = o.DeletionTimestamp != nil || o.Status.Phase == corev1.NamespaceTerminating
		}
		return "Namespace", nil
	case *unstructured.Unstructured:
		return o.GetKind(), s.putUnstructured(o, del)
	}
	return "", nil
}

func putMap[T any](m map[string]T, key string, v T, del bool) {
	if del {
		delete(m, key)
	} else {
		m[key] = v
	}
}

func (s *Snapshot) putUnstructured(u *unstructured.Unstructured, del bool) error {
	if !del {
		if err := ValidateObject(u); err != nil {
			return err
		}
	}
	key := u.GetNamespace() + "/" + u.GetName()
	switch u.GroupVersionKind() {
	case GVKInferenceService:
		putMap(s.isvcs, key, u, del)
	case GVKModel:
		ns := u.GetNamespace()
		if s.models[ns] == nil {
			s.models[ns] = map[string]*unstructured.Unstructured{}
		}
		putMap(s.models[ns], u.GetName(), u, del)
		if len(s.models[ns]) == 0 {
			delete(s.models, ns)
		}
	default:
		return fmt.Errorf("snapshot: unexpected kind %s", u.GroupVersionKind())
	}
	return nil
}

func (s *Snapshot) putService(svc *corev1.Service, del bool) {
	key := svc.Namespace + "/" + svc.Name
	if old, ok := s.services[key]; ok {
		s.svcByNS[svc.Namespace] = removePtr(s.svcByNS[svc.Namespace], old)
	}
	putMap(s.services, key, svc, del)
	if !del {
		s.svcByNS[svc.Namespace] = append(s.svcByNS[svc.Namespace], svc)
	}
}

func (s *Snapshot) putVS(vs *networkingv1.VirtualService, del bool) {
	key := vs.Namespace + "/" + vs.Name
	if old, ok := s.vs[key]; ok {
		for _, h := range s.vsDestinations(old) {
			s.vsByHost[h] = removePtr(s.vsByHost[h], old)
		}
		for _, d := range vsDelegates(old) {
			s.vsDelegators[d] = removePtr(s.vsDelegators[d], old)
		}
	}
	putMap(s.vs, key, vs, del)
	if del {
		return
	}
	for _, h := range s.vsDestinations(vs) {
		s.vsByHost[h] = append(s.vsByHost[h], vs)
	}
	for _, d := range vsDelegates(vs) {
		s.vsDelegators[d] = append(s.vsDelegators[d], vs)
	}
}

// vsDelegates lists the distinct "ns/name" of the VirtualServices vs delegates routes to.
func vsDelegates(vs *networkingv1.VirtualService) []string {
	var out []string
	for _, r := range vs.Spec.GetHttp() {
		if d := r.GetDelegate(); d != nil {
			ns := d.GetNamespace()
			if ns == "" {
				ns = vs.Namespace
			}
			if k := ns + "/" + d.GetName(); !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
	}
	return out
}

// vsDestinations lists the distinct destination FQDNs of a VirtualService's routes.
func (s *Snapshot) vsDestinations(vs *networkingv1.VirtualService) []string {
	seen := map[string]bool{}
	var out []string
	add := func(host string) {
		if fq := fqdn(host, vs.Namespace, s.domain); !seen[fq] {
			seen[fq] = true
			out = append(out, fq)
		}
	}
	for _, r := range vs.Spec.GetHttp() {
		for _, d := range destinations(r) {
			add(d.GetDestination().GetHost())
		}
	}
	for _, r := range vs.Spec.GetTcp() {
		for _, d := range r.GetRoute() {
			add(d.GetDestination().GetHost())
		}
	}
	for _, r := range vs.Spec.GetTls() {
		for _, d := range r.GetRoute() {
			add(d.GetDestination().GetHost())
		}
	}
	return out
}

func (s *Snapshot) putDR(dr *networkingv1.DestinationRule, del bool) {
	key := dr.Namespace + "/" + dr.Name
	if old, ok := s.dr[key]; ok {
		h := fqdn(old.Spec.GetHost(), old.Namespace, s.domain)
		s.drByHost[h] = removePtr(s.drByHost[h], old)
		s.drWildcard = removePtr(s.drWildcard, old)
	}
	putMap(s.dr, key, dr, del)
	if del {
		return
	}
	if strings.HasPrefix(dr.Spec.GetHost(), "*") {
		s.drWildcard = append(s.drWildcard, dr)
		return
	}
	h := fqdn(dr.Spec.GetHost(), dr.Namespace, s.domain)
	s.drByHost[h] = append(s.drByHost[h], dr)
}

func (s *Snapshot) putWorkload(kind, ns, name string, lbls map[string]string, sa string, del bool) {
	key := kind + "/" + ns + "/" + name
	if old, ok := s.workloads[key]; ok {
		for k, v := range old.Labels {
			s.wlByLabel[k+"="+v] = removePtr(s.wlByLabel[k+"="+v], old)
			s.wlByNSLbl[ns+"/"+k+"="+v] = removePtr(s.wlByNSLbl[ns+"/"+k+"="+v], old)
		}
		s.wlByNS[ns] = removePtr(s.wlByNS[ns], old)
	}
	if del {
		delete(s.workloads, key)
		return
	}
	if sa == "" {
		sa = "default"
	}
	w := &Workload{Ref: kind + " " + ns + "/" + name, Namespace: ns, Labels: lbls, ServiceAccount: sa, Exact: true}
	s.workloads[key] = w
	for k, v := range lbls {
		s.wlByLabel[k+"="+v] = append(s.wlByLabel[k+"="+v], w)
		s.wlByNSLbl[ns+"/"+k+"="+v] = append(s.wlByNSLbl[ns+"/"+k+"="+v], w)
	}
	s.wlByNS[ns] = append(s.wlByNS[ns], w)
}

func removePtr[T comparable](xs []T, x T) []T {
	for i := range xs {
		if xs[i] == x {
			return append(xs[:i:i], xs[i+1:]...)
		}
	}
	return xs
}

// workloadsSelected returns the known workloads whose labels include every pair of sel, in
// namespace ns ("" for any namespace), deduplicated by namespace, labels and service account.
func (s *Snapshot) workloadsSelected(ns string, sel map[string]string) []*Workload {
	if len(sel) == 0 {
		return nil
	}
	// Start from the rarest label pair so the scan is as short as the index allows.
	var cands []*Workload
	first := true
	index, prefix := s.wlByLabel, ""
	if ns != "" {
		index, prefix = s.wlByNSLbl, ns+"/"
	}
	for k, v := range sel {
		l := index[prefix+k+"="+v]
		if first || len(l) < len(cands) {
			cands, first = l, false
		}
	}
	var out []*Workload
	for _, w := range cands {
		if (ns == "" || w.Namespace == ns) && labelsInclude(w.Labels, sel) {
			out = append(out, w)
		}
	}
	if len(out) < 2 {
		return out
	}
	// Pods of one Deployment are one workload to judge: keep one per identity.
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	seen := map[string]bool{}
	uniq := out[:0]
	for _, w := range out {
		if id := workloadIdentity(w); !seen[id] {
			seen[id] = true
			uniq = append(uniq, w)
		}
	}
	return uniq
}

func workloadIdentity(w *Workload) string {
	keys := make([]string, 0, len(w.Labels))
	for k, v := range w.Labels {
		keys = append(keys, k+"="+v)
	}
	sort.Strings(keys)
	return w.Namespace + "|" + w.ServiceAccount + "|" + strings.Join(keys, ",")
}

func labelsInclude(have, want map[string]string) bool {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}

// NamespaceLabels returns the labels of a namespace known to the snapshot. Kubernetes sets
// kubernetes.io/metadata.name on every namespace, so an unknown one still carries that label.
func (s *Snapshot) NamespaceLabels(ns string) map[string]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := map[string]string{}
	for k, v := range s.namespaces[ns] {
		out[k] = v
	}
	out[labelNamespaceName] = ns
	return out
}

const labelNamespaceName = "kubernetes.io/metadata.name"

// nsLabels is a namespace's labels as a labels.Labels, with the name label the API server
// sets (and no namespace owner can forge) always present; it allocates nothing.
type nsLabels struct {
	name   string
	labels map[string]string
}

func (s *Snapshot) namespaceLabels(ns string) nsLabels {
	return nsLabels{name: ns, labels: s.namespaces[ns]}
}

func (l nsLabels) Has(key string) bool {
	if key == labelNamespaceName {
		return true
	}
	_, ok := l.labels[key]
	return ok
}

func (l nsLabels) Get(key string) string {
	if key == labelNamespaceName {
		return l.name
	}
	return l.labels[key]
}

func (l nsLabels) Lookup(key string) (string, bool) {
	if key == labelNamespaceName {
		return l.name, true
	}
	v, ok := l.labels[key]
	return v, ok
}

// fqdn resolves a service host as Istio does: a short name is in namespace ns, "name.ns" and
// "name.ns.svc" are completed with the cluster domain, anything else is kept as written.
func fqdn(host, ns, domain string) string {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	switch strings.Count(host, ".") {
	case 0:
		return host + "." + ns + ".svc." + domain
	case 1:
		return host + ".svc." + domain
	}
	if strings.HasSuffix(host, ".svc") {
		return host + "." + domain
	}
	return host
}

// splitServiceFQDN returns the Service name and namespace of "name.ns.svc.<domain>".
func splitServiceFQDN(host, domain string) (name, ns string, ok bool) {
	rest, found := strings.CutSuffix(host, ".svc."+domain)
	if !found {
		return "", "", false
	}
	name, ns, ok = strings.Cut(rest, ".")
	if !ok || strings.Contains(ns, ".") || name == "" || ns == "" {
		return "", "", false
	}
	return name, ns, true
}
