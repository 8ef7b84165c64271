package integration_test

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/modelguard/modelguard/policy"
	testenv "github.com/modelguard/modelguard/test/envtest"
	"github.com/modelguard/modelguard/webhook"
)

// What manifests/ must say (DESIGN.md, the brief of the deployment).
const (
	mgNamespace      = "modelguard-system"
	mgServiceAccount = "system:serviceaccount:modelguard-system:modelguard"
	mgWebhookService = "modelguard-webhook"
	mgServingCert    = "modelguard-serving-cert"
	mgTLSSecret      = "modelguard-webhook-tls"
)

// kustomizations are the directories under manifests/ that must apply.
var kustomizations = []string{"base", "overlays/prometheus", "overlays/audit-only"}

// TestManifests applies every kustomization under manifests/ to a real API server with
// server-side dry-run (schemas, CRD validation, strict field validation, admission), checks
// the restricted Pod Security Standard with the pod the Deployment would create, and checks
// the rendered objects: what the Deployment runs, the RBAC, the certificates, the generated
// webhook configurations and the overlays.
func TestManifests(t *testing.T) {
	root, err := testenv.RepoRoot()
	require.NoError(t, err)
	env := testenv.Start(t, testenv.Options{CRDPaths: []string{
		filepath.Join(root, "test", "integration", "testdata", "manifests", "servicemonitor-crd.yaml"),
	}})
	base := renderKustomization(t, env, "base")

	// Server-side dry-run creates nothing, so objects in modelguard-system need the namespace
	// for real (and the pod below its service account).
	env.Apply(t, toYAML(t, mustFind(t, base, "Namespace", "", mgNamespace), mustFind(t, base, "ServiceAccount", mgNamespace, "modelguard")))

	for _, dir := range kustomizations {
		t.Run("dry-run "+dir, func(t *testing.T) {
			out, errOut, err := env.Kubectl(t, "apply", "--dry-run=server", "--validate=strict", "-k", filepath.Join(root, "manifests", filepath.FromSlash(dir)))
			require.NoError(t, err, "kubectl apply --dry-run=server -k manifests/%s:\n%s%s", dir, out, errOut)
			t.Logf("manifests/%s:\n%s", dir, strings.TrimRight(out, "\n"))
			assert.NotContains(t, errOut, "Warning", "kubectl warned (Pod Security, deprecated API, unknown field?)")
			for _, o := range renderKustomization(t, env, dir) {
				ref := strings.ToLower(o.GetKind())
				if g := o.GroupVersionKind().Group; g != "" {
					ref += "." + g
				}
				assert.Contains(t, out, ref+"/"+o.GetName()+" ", "every object is applied")
			}
		})
	}

	t.Run("the pod meets the restricted Pod Security Standard", func(t *testing.T) {
		// Pod Security admission enforces on Pods, not on Deployments: dry-run the pod the
		// Deployment would create in the namespace labelled enforce=restricted.
		dep := typed[appsv1.Deployment](t, mustFind(t, base, "Deployment", mgNamespace, "modelguard"))
		pod := &corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: dep.Spec.Template.ObjectMeta,
			Spec:       dep.Spec.Template.Spec,
		}
		pod.Namespace, pod.Name = mgNamespace, "modelguard-pss-check"
		file := filepath.Join(t.TempDir(), "pod.yaml")
		require.NoError(t, os.WriteFile(file, []byte(toYAMLObj(t, pod)), 0o600))
		out, errOut, err := env.Kubectl(t, "create", "--dry-run=server", "-f", file)
		require.NoError(t, err, "%s%s", out, errOut)
		assert.NotContains(t, errOut, "PodSecurity")
	})

	t.Run("deployment", func(t *testing.T) { checkDeployment(t, base) })
	t.Run("services and disruption budget", func(t *testing.T) { checkServices(t, base) })
	t.Run("rbac", func(t *testing.T) { checkRBAC(t, base) })
	t.Run("certificates", func(t *testing.T) { checkCertificates(t, base) })
	t.Run("webhooks are webhook.Configurations", func(t *testing.T) { checkWebhooks(t, base) })
	t.Run("guard config", func(t *testing.T) {
		cfg := guardConfig(t, base)
		require.NotEmpty(t, cfg.Rules)
		for _, r := range cfg.Rules {
			assert.Equal(t, policy.ModeEnforce, r.Mode, "rule %s", r.Name)
			assert.True(t, r.MTLSRequired(), "rule %s", r.Name)
		}
		assert.Equal(t, []string{"kube-system"}, cfg.ExemptNamespaces)
		assert.Contains(t, cfg.InternalGateways, "knative-serving/knative-local-gateway")
	})
	t.Run("namespace", func(t *testing.T) {
		nsLabels := mustFind(t, base, "Namespace", "", mgNamespace).GetLabels()
		assert.Equal(t, "restricted", nsLabels["pod-security.kubernetes.io/enforce"])
		assert.Equal(t, "disabled", nsLabels["istio-injection"], "no sidecar between the API server and the webhook")
		dep := typed[appsv1.Deployment](t, mustFind(t, base, "Deployment", mgNamespace, "modelguard"))
		assert.Equal(t, "false", dep.Spec.Template.Labels["sidecar.istio.io/inject"])
		for _, o := range base {
			if ns := o.GetNamespace(); ns != "" {
				assert.Equal(t, mgNamespace, ns, "%s %s", o.GetKind(), o.GetName())
			}
		}
	})

	t.Run("overlay audit-only changes only the rules' mode", func(t *testing.T) {
		audit := renderKustomization(t, env, "overlays/audit-only")
		assertSameExcept(t, base, audit, "ConfigMap/modelguard-config")
		cfg := guardConfig(t, audit)
		for _, r := range cfg.Rules {
			assert.Equal(t, policy.ModeAudit, r.Mode, "rule %s", r.Name)
		}
		// The rest of the GuardConfig is the base's, field for field.
		want := guardConfigMap(t, base)
		for _, r := range want["rules"].([]any) {
			r.(map[string]any)["mode"] = string(policy.ModeAudit)
		}
		assert.Equal(t, want, guardConfigMap(t, audit))
		// And the validators still fail closed.
		val := typed[admissionregistrationv1.ValidatingWebhookConfiguration](t, mustFind(t, audit, "ValidatingWebhookConfiguration", "", "modelguard"))
		for _, w := range val.Webhooks {
			assert.Equal(t, admissionregistrationv1.Fail, *w.FailurePolicy, w.Name)
		}
	})

	t.Run("overlay prometheus adds a ServiceMonitor for the metrics Service", func(t *testing.T) {
		prom := renderKustomization(t, env, "overlays/prometheus")
		sm := mustFind(t, prom, "ServiceMonitor", mgNamespace, "modelguard")
		assert.Equal(t, "monitoring.coreos.com/v1", sm.GetAPIVersion())
		assertSameExcept(t, base, without(prom, sm), "")

		svc := typed[corev1.Service](t, mustFind(t, base, "Service", mgNamespace, "modelguard-metrics"))
		sel, found, err := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
		require.NoError(t, err)
		require.True(t, found)
		assert.True(t, labels.SelectorFromSet(sel).Matches(labels.Set(svc.Labels)), "selects the metrics Service")
		for _, other := range base {
			if other.GetKind() == "Service" && other.GetName() != svc.Name {
				assert.False(t, labels.SelectorFromSet(sel).Matches(labels.Set(other.GetLabels())), "selects only the metrics Service, not %s", other.GetName())
			}
		}
		names, _, _ := unstructured.NestedStringSlice(sm.Object, "spec", "namespaceSelector", "matchNames")
		assert.Equal(t, []string{mgNamespace}, names)
		endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
		require.Len(t, endpoints, 1)
		ep := endpoints[0].(map[string]any)
		assert.Equal(t, "metrics", ep["port"])
		assert.Equal(t, "/metrics", ep["path"])
		assert.Equal(t, "metrics", svc.Spec.Ports[0].Name)
	})
}

func checkDeployment(t *testing.T, base []*unstructured.Unstructured) {
	dep := typed[appsv1.Deployment](t, mustFind(t, base, "Deployment", mgNamespace, "modelguard"))
	require.NotNil(t, dep.Spec.Replicas)
	assert.EqualValues(t, 2, *dep.Spec.Replicas)
	podLabels := labels.Set(dep.Spec.Template.Labels)
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	require.NoError(t, err)
	assert.True(t, sel.Matches(podLabels), "the selector picks the pods")
	spec := dep.Spec.Template.Spec
	assert.Equal(t, "modelguard", spec.ServiceAccountName)

	require.NotNil(t, spec.Affinity)
	require.NotNil(t, spec.Affinity.PodAntiAffinity)
	assert.Empty(t, spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution, "preferred, not required: a one-node cluster still runs both replicas")
	pref := spec.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution
	require.Len(t, pref, 1)
	assert.Equal(t, "kubernetes.io/hostname", pref[0].PodAffinityTerm.TopologyKey)
	anti, err := metav1.LabelSelectorAsSelector(pref[0].PodAffinityTerm.LabelSelector)
	require.NoError(t, err)
	assert.True(t, anti.Matches(podLabels), "anti-affinity is against the Deployment's own pods")

	psc := spec.SecurityContext
	require.NotNil(t, psc)
	assert.Equal(t, ptrTo(true), psc.RunAsNonRoot)
	require.NotNil(t, psc.SeccompProfile)
	assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, psc.SeccompProfile.Type)

	require.Len(t, spec.Containers, 1)
	c := spec.Containers[0]
	assert.Equal(t, "ghcr.io/modelguard/modelguard:latest", c.Image)
	sc := c.SecurityContext
	require.NotNil(t, sc)
	assert.Equal(t, ptrTo(true), sc.RunAsNonRoot)
	assert.Equal(t, ptrTo(true), sc.ReadOnlyRootFilesystem)
	assert.Equal(t, ptrTo(false), sc.AllowPrivilegeEscalation)
	require.NotNil(t, sc.Capabilities)
	assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop)
	assert.Empty(t, sc.Capabilities.Add)
	assert.Nil(t, sc.Privileged)
	require.NotNil(t, sc.SeccompProfile)
	assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, sc.SeccompProfile.Type)

	// The image's entrypoint is /modelguard: args start with the subcommand.
	assert.Empty(t, c.Command, "keep the image's entrypoint")
	args := strings.Join(c.Args, " ")
	for _, want := range []string{
		"serve --config /etc/modelguard/guard.yaml --cert-dir /etc/modelguard/tls --leader-elect",
		"--leader-election-namespace " + mgNamespace,
		"--trusted-user " + mgServiceAccount,
	} {
		assert.Contains(t, args, want)
	}
	assert.True(t, strings.HasPrefix(args, "serve "), args)
	assert.NotContains(t, args, "--no-reconciler")

	port := func(name string) int32 {
		for _, p := range c.Ports {
			if p.Name == name {
				return p.ContainerPort
			}
		}
		t.Errorf("no container port %q", name)
		return 0
	}
	assert.EqualValues(t, 9443, port("webhook"))
	assert.EqualValues(t, 8080, port("metrics"))
	assert.EqualValues(t, 8081, port("health"))
	for _, f := range []string{"--webhook-port=9443", "--metrics-bind-address=:8080", "--health-probe-bind-address=:8081"} {
		if strings.Contains(args, strings.Split(f, "=")[0]) {
			assert.Contains(t, c.Args, f, "a port flag must agree with the container ports")
		}
	}

	probe := func(p *corev1.Probe, path string) {
		t.Helper()
		require.NotNil(t, p, path)
		require.NotNil(t, p.HTTPGet, path)
		assert.Equal(t, path, p.HTTPGet.Path)
		got := p.HTTPGet.Port
		if got.Type == intstr.String {
			got = intstr.FromInt32(port(got.StrVal))
		}
		assert.Equal(t, intstr.FromInt32(8081), got, "%s on the health port", path)
	}
	probe(c.LivenessProbe, "/healthz")
	probe(c.ReadinessProbe, "/readyz")

	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, lim := c.Resources.Requests[r], c.Resources.Limits[r]
		assert.False(t, req.IsZero(), "request %s", r)
		assert.False(t, lim.IsZero(), "limit %s", r)
		assert.LessOrEqual(t, req.Cmp(lim), 0, "%s: request <= limit", r)
	}

	// The GuardConfig at /etc/modelguard/guard.yaml, the serving key pair in
	// /etc/modelguard/tls, read only, refreshed in place (no subPath).
	require.Len(t, c.VolumeMounts, 1)
	m := c.VolumeMounts[0]
	assert.Equal(t, "/etc/modelguard", m.MountPath)
	assert.True(t, m.ReadOnly)
	assert.Empty(t, m.SubPath, "a subPath mount is never updated: no hot reload")
	var vol *corev1.Volume
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == m.Name {
			vol = &spec.Volumes[i]
		}
	}
	require.NotNil(t, vol)
	require.NotNil(t, vol.Projected)
	files := map[string]string{} // path in the volume -> object/key
	for _, s := range vol.Projected.Sources {
		switch {
		case s.ConfigMap != nil:
			for _, it := range s.ConfigMap.Items {
				files[it.Path] = "ConfigMap/" + s.ConfigMap.Name + "/" + it.Key
			}
		case s.Secret != nil:
			for _, it := range s.Secret.Items {
				files[it.Path] = "Secret/" + s.Secret.Name + "/" + it.Key
			}
		default:
			t.Errorf("unexpected volume source %+v", s)
		}
	}
	assert.Equal(t, map[string]string{
		"guard.yaml":  "ConfigMap/modelguard-config/guard.yaml",
		"tls/tls.crt": "Secret/" + mgTLSSecret + "/tls.crt",
		"tls/tls.key": "Secret/" + mgTLSSecret + "/tls.key",
	}, files)
	mustFind(t, base, "ConfigMap", mgNamespace, "modelguard-config")
}

func checkServices(t *testing.T, base []*unstructured.Unstructured) {
	dep := typed[appsv1.Deployment](t, mustFind(t, base, "Deployment", mgNamespace, "modelguard"))
	podLabels := labels.Set(dep.Spec.Template.Labels)
	containerPort := map[string]int32{}
	for _, p := range dep.Spec.Template.Spec.Containers[0].Ports {
		containerPort[p.Name] = p.ContainerPort
	}
	resolve := func(p intstr.IntOrString) int32 {
		if p.Type == intstr.String {
			return containerPort[p.StrVal]
		}
		return p.IntVal
	}

	hook := typed[corev1.Service](t, mustFind(t, base, "Service", mgNamespace, mgWebhookService))
	assert.True(t, labels.SelectorFromSet(hook.Spec.Selector).Matches(podLabels))
	require.Len(t, hook.Spec.Ports, 1)
	assert.EqualValues(t, 443, hook.Spec.Ports[0].Port)
	assert.EqualValues(t, 9443, resolve(hook.Spec.Ports[0].TargetPort))

	metrics := typed[corev1.Service](t, mustFind(t, base, "Service", mgNamespace, "modelguard-metrics"))
	assert.True(t, labels.SelectorFromSet(metrics.Spec.Selector).Matches(podLabels))
	require.Len(t, metrics.Spec.Ports, 1)
	assert.Equal(t, "metrics", metrics.Spec.Ports[0].Name)
	assert.EqualValues(t, 8080, metrics.Spec.Ports[0].Port)
	assert.EqualValues(t, 8080, resolve(metrics.Spec.Ports[0].TargetPort))

	pdb := typed[policyv1.PodDisruptionBudget](t, mustFind(t, base, "PodDisruptionBudget", mgNamespace, "modelguard"))
	require.NotNil(t, pdb.Spec.MinAvailable)
	assert.Equal(t, intstr.FromInt32(1), *pdb.Spec.MinAvailable)
	assert.Nil(t, pdb.Spec.MaxUnavailable)
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	require.NoError(t, err)
	assert.True(t, sel.Matches(podLabels))
}

// wantClusterRole is exactly what the manager needs, by resource: read the mesh state, write
// the generated policies, scope its own mutating webhook (by name), record events. Nothing
// else, and no Secrets.
var wantClusterRole = map[string][]string{
	"security.istio.io/authorizationpolicies":  {"create", "delete", "get", "list", "patch", "update", "watch"},
	"security.istio.io/requestauthentications": {"create", "delete", "get", "list", "patch", "update", "watch"},
	"security.istio.io/peerauthentications":    {"get", "list", "watch"},
	"networking.istio.io/virtualservices":      {"get", "list", "watch"},
	"networking.istio.io/gateways":             {"get", "list", "watch"},
	"networking.istio.io/destinationrules":     {"get", "list", "watch"},
	"/pods":                                    {"get", "list", "watch"},
	"/services":                                {"get", "list", "watch"},
	"/namespaces":                              {"get", "list", "watch"},
	"apps/deployments":                         {"get", "list", "watch"},
	"apps/statefulsets":                        {"get", "list", "watch"},
	"apps/daemonsets":                          {"get", "list", "watch"},
	"serving.kserve.io/inferenceservices":      {"get", "list", "watch"},
	"mlops.seldon.io/models":                   {"get", "list", "watch"},
	"events.k8s.io/events":                     {"create", "patch"},
	"admissionregistration.k8s.io/mutatingwebhookconfigurations/modelguard": {"get", "update"},
}

func checkRBAC(t *testing.T, base []*unstructured.Unstructured) {
	cr := typed[rbacv1.ClusterRole](t, mustFind(t, base, "ClusterRole", "", "modelguard"))
	assert.Nil(t, cr.AggregationRule)
	assert.Equal(t, wantClusterRole, rulesByResource(t, cr.Rules))
	for _, r := range cr.Rules {
		assert.Empty(t, r.NonResourceURLs)
		if slices.Equal(r.Resources, []string{"mutatingwebhookconfigurations"}) {
			assert.Equal(t, []string{"modelguard"}, r.ResourceNames, "only its own webhook configuration")
		} else {
			assert.Empty(t, r.ResourceNames, "cluster-wide rules name no object")
		}
		for _, res := range r.Resources {
			assert.NotContains(t, []string{"secrets", "configmaps", "*"}, res)
		}
	}

	role := typed[rbacv1.Role](t, mustFind(t, base, "Role", mgNamespace, "modelguard-leader-election"))
	got := rulesByResource(t, role.Rules)
	assert.Equal(t, map[string][]string{
		"coordination.k8s.io/leases":                       {"create"},
		"coordination.k8s.io/leases/modelguard-reconciler": {"get", "update"},
		"/events": {"create", "patch"},
	}, got)

	sa := mustFind(t, base, "ServiceAccount", mgNamespace, "modelguard")
	subject := rbacv1.Subject{Kind: "ServiceAccount", Name: sa.GetName(), Namespace: sa.GetNamespace()}
	crb := typed[rbacv1.ClusterRoleBinding](t, mustFind(t, base, "ClusterRoleBinding", "", "modelguard"))
	assert.Equal(t, rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: cr.Name}, crb.RoleRef)
	assert.Equal(t, []rbacv1.Subject{subject}, crb.Subjects)
	rb := typed[rbacv1.RoleBinding](t, mustFind(t, base, "RoleBinding", mgNamespace, "modelguard-leader-election"))
	assert.Equal(t, rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name}, rb.RoleRef)
	assert.Equal(t, []rbacv1.Subject{subject}, rb.Subjects)

	// Nothing else grants anything.
	for _, o := range base {
		switch o.GetKind() {
		case "ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding":
			assert.Contains(t, []string{"modelguard", "modelguard-leader-election"}, o.GetName())
		}
	}
}

// rulesByResource flattens rules to "group/resource[/name]" -> sorted verbs, refusing wildcards.
func rulesByResource(t *testing.T, rules []rbacv1.PolicyRule) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, r := range rules {
		for _, s := range slices.Concat(r.APIGroups, r.Resources, r.Verbs, r.ResourceNames) {
			assert.NotEqual(t, "*", s, "no wildcards")
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				keys := []string{g + "/" + res}
				if len(r.ResourceNames) > 0 {
					keys = nil
					for _, n := range r.ResourceNames {
						keys = append(keys, g+"/"+res+"/"+n)
					}
				}
				for _, k := range keys {
					out[k] = append(out[k], r.Verbs...)
				}
			}
		}
	}
	for k, v := range out {
		slices.Sort(v)
		out[k] = slices.Compact(v)
	}
	return out
}

func checkCertificates(t *testing.T, base []*unstructured.Unstructured) {
	str := func(u *unstructured.Unstructured, fields ...string) string {
		t.Helper()
		v, _, err := unstructured.NestedFieldNoCopy(u.Object, fields...)
		require.NoError(t, err)
		s, _ := v.(string)
		return s
	}
	serving := mustFind(t, base, "Certificate", mgNamespace, mgServingCert)
	assert.Equal(t, mgTLSSecret, str(serving, "spec", "secretName"))
	dns, _, _ := unstructured.NestedStringSlice(serving.Object, "spec", "dnsNames")
	assert.ElementsMatch(t, []string{
		mgWebhookService + "." + mgNamespace + ".svc",
		mgWebhookService + "." + mgNamespace + ".svc.cluster.local",
	}, dns)

	// serving <- CA issuer (the CA certificate's secret) <- CA certificate <- self-signed issuer
	caIssuer := mustFind(t, base, "Issuer", mgNamespace, str(serving, "spec", "issuerRef", "name"))
	assert.Equal(t, "Issuer", str(serving, "spec", "issuerRef", "kind"))
	caSecret := str(caIssuer, "spec", "ca", "secretName")
	require.NotEmpty(t, caSecret, "the serving certificate is signed by a CA issuer")
	var ca *unstructured.Unstructured
	for _, o := range base {
		if o.GetKind() == "Certificate" && str(o, "spec", "secretName") == caSecret {
			ca = o
		}
	}
	require.NotNil(t, ca, "a Certificate writes the CA secret %s", caSecret)
	isCA, _, _ := unstructured.NestedBool(ca.Object, "spec", "isCA")
	assert.True(t, isCA)
	self := mustFind(t, base, "Issuer", mgNamespace, str(ca, "spec", "issuerRef", "name"))
	_, selfSigned, _ := unstructured.NestedMap(self.Object, "spec", "selfSigned")
	assert.True(t, selfSigned, "the CA is self-signed")
}

// checkWebhooks compares the rendered webhook configurations with webhook.Configurations for
// the in-cluster Service, and checks that what they point at exists.
func checkWebhooks(t *testing.T, base []*unstructured.Unstructured) {
	wantMut, wantVal := webhook.Configurations(webhook.ConfigurationOptions{Name: "modelguard", Namespace: mgNamespace,
		Client: func(path string) admissionregistrationv1.WebhookClientConfig {
			p, port := path, int32(443)
			return admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{
				Namespace: mgNamespace, Name: mgWebhookService, Path: &p, Port: &port}}
		}})
	mut := typed[admissionregistrationv1.MutatingWebhookConfiguration](t, mustFind(t, base, "MutatingWebhookConfiguration", "", "modelguard"))
	val := typed[admissionregistrationv1.ValidatingWebhookConfiguration](t, mustFind(t, base, "ValidatingWebhookConfiguration", "", "modelguard"))
	assert.True(t, equality.Semantic.DeepEqual(wantMut.Webhooks, mut.Webhooks), "mutating webhooks differ from webhook.Configurations: run go run ./hack/genmanifests")
	assert.True(t, equality.Semantic.DeepEqual(wantVal.Webhooks, val.Webhooks), "validating webhooks differ from webhook.Configurations: run go run ./hack/genmanifests")
	paths := []string{}
	for _, w := range mut.Webhooks {
		paths = append(paths, *w.ClientConfig.Service.Path)
	}
	for _, w := range val.Webhooks {
		paths = append(paths, *w.ClientConfig.Service.Path)
		assert.Equal(t, admissionregistrationv1.Fail, *w.FailurePolicy, w.Name)
	}
	assert.ElementsMatch(t, []string{"/mutate", "/validate", "/guard"}, paths)

	for _, ann := range []map[string]string{mut.Annotations, val.Annotations} {
		assert.Equal(t, mgNamespace+"/"+mgServingCert, ann["cert-manager.io/inject-ca-from"])
	}
	mustFind(t, base, "Certificate", mgNamespace, mgServingCert)
	svc := typed[corev1.Service](t, mustFind(t, base, "Service", mgNamespace, mgWebhookService))
	assert.EqualValues(t, 443, svc.Spec.Ports[0].Port)
}

// guardConfig decodes the GuardConfig of the rendered ConfigMap strictly, as modelguard does.
func guardConfig(t *testing.T, objs []*unstructured.Unstructured) *policy.GuardConfig {
	t.Helper()
	cm := typed[corev1.ConfigMap](t, mustFind(t, objs, "ConfigMap", mgNamespace, "modelguard-config"))
	require.Equal(t, []string{"guard.yaml"}, slices.Collect(maps.Keys(cm.Data)))
	cfg, err := policy.ParseConfig("guard.yaml", []byte(cm.Data["guard.yaml"]))
	require.NoError(t, err)
	return cfg
}

func guardConfigMap(t *testing.T, objs []*unstructured.Unstructured) map[string]any {
	t.Helper()
	cm := typed[corev1.ConfigMap](t, mustFind(t, objs, "ConfigMap", mgNamespace, "modelguard-config"))
	var m map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(cm.Data["guard.yaml"]), &m))
	return m
}

// renderKustomization runs kubectl kustomize on manifests/<dir>.
func renderKustomization(t *testing.T, env *testenv.Env, dir string) []*unstructured.Unstructured {
	t.Helper()
	root, err := testenv.RepoRoot()
	require.NoError(t, err)
	out, errOut, err := env.Kubectl(t, "kustomize", filepath.Join(root, "manifests", filepath.FromSlash(dir)))
	require.NoError(t, err, "kubectl kustomize manifests/%s: %s", dir, errOut)
	objs, err := decodeObjects([]byte(out))
	require.NoError(t, err)
	require.NotEmpty(t, objs)
	return objs
}

func objKey(o *unstructured.Unstructured) string {
	if o.GetNamespace() == "" {
		return o.GetKind() + "/" + o.GetName()
	}
	return o.GetKind() + "/" + o.GetName() + "@" + o.GetNamespace()
}

func mustFind(t *testing.T, objs []*unstructured.Unstructured, kind, namespace, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetNamespace() == namespace && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %s/%s in the rendered manifests", kind, namespace, name)
	return nil
}

func without(objs []*unstructured.Unstructured, drop *unstructured.Unstructured) []*unstructured.Unstructured {
	return slices.DeleteFunc(slices.Clone(objs), func(o *unstructured.Unstructured) bool { return o == drop })
}

// assertSameExcept checks that two renderings hold the same objects, equal but for the one
// named by except ("Kind/name", ignoring the namespace; "" for none).
func assertSameExcept(t *testing.T, want, got []*unstructured.Unstructured, except string) {
	t.Helper()
	index := func(objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
		m := map[string]*unstructured.Unstructured{}
		for _, o := range objs {
			m[objKey(o)] = o
		}
		return m
	}
	w, g := index(want), index(got)
	assert.ElementsMatch(t, slices.Collect(maps.Keys(w)), slices.Collect(maps.Keys(g)))
	for k, wo := range w {
		gotObj, ok := g[k]
		if !ok || (except != "" && strings.HasPrefix(k, except+"@")) {
			continue
		}
		assert.Equal(t, wo.Object, gotObj.Object, k)
	}
}

func typed[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, out, true), "%s", objKey(u))
	return out
}

func toYAML(t *testing.T, objs ...*unstructured.Unstructured) string {
	t.Helper()
	var b strings.Builder
	for _, o := range objs {
		b.WriteString("---\n")
		b.WriteString(toYAMLObj(t, o.Object))
	}
	return b.String()
}

func toYAMLObj(t *testing.T, obj any) string {
	t.Helper()
	data, err := yaml.Marshal(obj)
	require.NoError(t, err)
	return string(data)
}

func ptrTo[T any](v T) *T { return &v }
