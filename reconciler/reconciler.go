// Package reconciler is modelguard's companion controller: for each Model and
// InferenceService the mutating webhook marked with modelguard.io/inject: "true", it keeps the
// RequestAuthentication and AuthorizationPolicy that the engine's plan (policy.PlanFor) calls
// for, exactly as planned: created, restored after drift, deleted when no longer planned.
package reconciler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/modelguard/modelguard/policy"
)

// FieldManager is the server-side apply field manager of the generated objects.
const FieldManager = "modelguard"

// Event reasons on the model.
const (
	ReasonApplied     = "PoliciesApplied"
	ReasonRestored    = "PolicyRestored"
	ReasonApplyFailed = "PolicyApplyFailed"
	ReasonRemoved     = "PoliciesRemoved"
)

// Reconciler keeps one kind's generated policies.
type Reconciler struct {
	Client client.Client
	// Reader reads past the cache: right after an apply the cache may not show it yet.
	Reader   client.Reader
	GVK      schema.GroupVersionKind // policy.GVKInferenceService or policy.GVKModel
	Config   func() *policy.GuardConfig
	Recorder events.EventRecorder
	Results  *prometheus.CounterVec // modelguard_reconcile_total{kind,result}

	// applied remembers the generated objects this process has made exist, so that a
	// missing one is reported as restored (someone deleted it), not as created.
	applied sync.Map
	// resync carries every model back through Reconcile when the GuardConfig changes (a new
	// issuer, inject added or removed): the plan depends on it, not only on the model.
	resync chan event.GenericEvent
}

// NewResults creates modelguard_reconcile_total and registers it on reg, or returns the one
// already registered there (the model reconcilers and the webhook scope share it).
func NewResults(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelguard_reconcile_total",
		Help: "Reconciliations by kind (the model kinds, and MutatingWebhookConfiguration for the webhook scope) and result (applied, restored, unchanged, removed, error).",
	}, []string{"kind", "result"})
	if err := reg.Register(c); err != nil {
		var dup prometheus.AlreadyRegisteredError
		if errors.As(err, &dup) {
			if existing, ok := dup.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing
			}
		}
		panic(fmt.Sprintf("registering modelguard_reconcile_total: %v", err))
	}
	return c
}

// SetupWithManager watches the models of r.GVK and the policies they own (so an edit or a
// deletion of a generated policy is seen at once); failures are retried with the
// controller's exponential backoff, never in a busy loop.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	model := &unstructured.Unstructured{}
	model.SetGroupVersionKind(r.GVK)
	r.resync = make(chan event.GenericEvent, 1024)
	return ctrl.NewControllerManagedBy(mgr).
		Named("modelguard-" + r.GVK.Kind).
		For(model).
		Owns(&securityv1.RequestAuthentication{}).
		Owns(&securityv1.AuthorizationPolicy{}).
		WatchesRawSource(source.Channel(r.resync, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{RateLimiter: workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](200*time.Millisecond, 2*time.Minute)}).
		Complete(r)
}

// ResyncAll queues every model of the reconciler's kind (from the cache) for reconciliation;
// it returns at once and works in the background.
func (r *Reconciler) ResyncAll(ctx context.Context) {
	go func() {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(r.GVK.GroupVersion().WithKind(r.GVK.Kind + "List"))
		if err := r.Client.List(ctx, list); err != nil {
			return // the next model event or config change reconciles again
		}
		for i := range list.Items {
			select {
			case r.resync <- event.GenericEvent{Object: &list.Items[i]}:
			case <-ctx.Done():
				return
			}
		}
	}()
}

// Reconcile brings one model's generated policies to its plan.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	model := &unstructured.Unstructured{}
	model.SetGroupVersionKind(r.GVK)
	err := r.Client.Get(ctx, req.NamespacedName, model)
	switch {
	case apierrors.IsNotFound(err):
		// Gone: remove what was generated (a real cluster's garbage collector would too,
		// through the owner references; this does not wait for it).
		return r.finish(ctx, nil, r.remove(ctx, req.NamespacedName))
	case err != nil:
		return r.finish(ctx, nil, resultError{fmt.Errorf("reading %s %s: %w", r.GVK.Kind, req, err)})
	}
	plan, err := r.plan(ctx, model)
	if err != nil {
		return r.finish(ctx, model, resultError{err})
	}
	if plan == nil || model.GetDeletionTimestamp() != nil {
		return r.finish(ctx, model, r.remove(ctx, req.NamespacedName))
	}
	return r.finish(ctx, model, r.apply(ctx, plan))
}

// plan is the plan for a model marked for injection by the rule of its namespace; nil when
// the model is not marked or no rule plans anything for it.
func (r *Reconciler) plan(ctx context.Context, model *unstructured.Unstructured) (*policy.Plan, error) {
	if model.GetAnnotations()[policy.AnnotationInject] != "true" {
		return nil, nil
	}
	cfg := r.Config()
	if cfg.Exempt(model.GetNamespace()) {
		return nil, nil
	}
	ns := &corev1.Namespace{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: model.GetNamespace()}, ns); err != nil {
		return nil, fmt.Errorf("reading namespace %s: %w", model.GetNamespace(), err)
	}
	return policy.PlanFor(cfg.RuleFor(ns.Labels), model)
}

// outcome is what a reconciliation did; its result label and event.
type outcome interface{ result() string }

type (
	resultApplied   struct{ created []string }
	resultRestored  struct{ restored []string }
	resultUnchanged struct{}
	resultRemoved   struct{ removed []string }
	resultError     struct{ err error }
)

func (resultApplied) result() string   { return "applied" }
func (resultRestored) result() string  { return "restored" }
func (resultUnchanged) result() string { return "unchanged" }
func (resultRemoved) result() string   { return "removed" }
func (resultError) result() string     { return "error" }

// finish counts the outcome, records the event on the model and returns the error (so the
// controller retries with backoff).
func (r *Reconciler) finish(_ context.Context, model *unstructured.Unstructured, o outcome) (reconcile.Result, error) {
	r.Results.WithLabelValues(r.GVK.Kind, o.result()).Inc()
	event := func(kind, reason, note string) {
		if r.Recorder != nil && model != nil {
			r.Recorder.Eventf(model, nil, kind, reason, "Reconcile", "%s", note)
		}
	}
	switch t := o.(type) {
	case resultApplied:
		event(corev1.EventTypeNormal, ReasonApplied, fmt.Sprintf("created %v", t.created))
	case resultRestored:
		event(corev1.EventTypeWarning, ReasonRestored, fmt.Sprintf("restored %v to the plan after a change by someone else", t.restored))
	case resultRemoved:
		if len(t.removed) > 0 {
			event(corev1.EventTypeNormal, ReasonRemoved, fmt.Sprintf("deleted %v: no longer planned", t.removed))
		}
	case resultError:
		event(corev1.EventTypeWarning, ReasonApplyFailed, t.err.Error())
		return reconcile.Result{}, t.err
	}
	return reconcile.Result{}, nil
}

// apply makes both planned objects exist exactly as planned.
func (r *Reconciler) apply(ctx context.Context, plan *policy.Plan) outcome {
	var created, restored []string
	for _, want := range []client.Object{plan.RequestAuthentication, plan.AuthorizationPolicy} {
		state, err := r.applyOne(ctx, want)
		if err != nil {
			return resultError{err}
		}
		ref := want.GetObjectKind().GroupVersionKind().Kind + " " + want.GetNamespace() + "/" + want.GetName()
		_, before := r.applied.LoadOrStore(ref, true)
		switch {
		case state == "created" && !before:
			created = append(created, ref)
		case state == "created", state == "restored":
			restored = append(restored, ref)
		}
	}
	switch {
	case len(restored) > 0:
		return resultRestored{restored}
	case len(created) > 0:
		return resultApplied{created}
	}
	return resultUnchanged{}
}

// applyOne server-side applies one planned object (field manager modelguard, forcing
// ownership of the planned fields), then checks the live object equals the plan: fields others
// added beside the planned ones (a selector label, a rule) are removed by an update, since
// server-side apply leaves fields it does not own alone.
func (r *Reconciler) applyOne(ctx context.Context, want client.Object) (string, error) {
	live, err := r.get(ctx, want)
	if err != nil {
		return "", err
	}
	if live != nil && matchesPlan(live, want) {
		return "unchanged", nil
	}
	u, err := toUnstructured(want)
	if err != nil {
		return "", err
	}
	if err := r.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return "", fmt.Errorf("applying %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	after, err := r.getFrom(ctx, r.Reader, want)
	if err != nil {
		return "", err
	}
	if after != nil && !matchesPlan(after, want) {
		if err := r.replaceSpec(ctx, after, want); err != nil {
			return "", err
		}
	}
	if live == nil {
		return "created", nil
	}
	return "restored", nil
}

// get reads the live version of a planned object from the cache (nil when absent): the event
// that started this reconciliation is in it.
func (r *Reconciler) get(ctx context.Context, want client.Object) (client.Object, error) {
	return r.getFrom(ctx, r.Client, want)
}

func (r *Reconciler) getFrom(ctx context.Context, reader client.Reader, want client.Object) (client.Object, error) {
	live := want.DeepCopyObject().(client.Object)
	err := reader.Get(ctx, client.ObjectKeyFromObject(want), live)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s/%s: %w", want.GetNamespace(), want.GetName(), err)
	}
	return live, nil
}

// matchesPlan compares what matters: the spec, the managed-by label, the owner reference.
func matchesPlan(live, want client.Object) bool {
	if live.GetLabels()[policy.LabelManagedBy] != policy.ManagedByValue || !ownedLike(live, want) {
		return false
	}
	switch w := want.(type) {
	case *securityv1.RequestAuthentication:
		l, ok := live.(*securityv1.RequestAuthentication)
		return ok && proto.Equal(&l.Spec, &w.Spec)
	case *securityv1.AuthorizationPolicy:
		l, ok := live.(*securityv1.AuthorizationPolicy)
		return ok && proto.Equal(&l.Spec, &w.Spec) && l.Annotations["istio.io/dry-run"] != "true"
	}
	return false
}

func ownedLike(live, want client.Object) bool {
	for _, w := range want.GetOwnerReferences() {
		found := false
		for _, l := range live.GetOwnerReferences() {
			found = found || l.UID == w.UID
		}
		if !found {
			return false
		}
	}
	return true
}

// replaceSpec overwrites the live spec with the planned one (an update, not an apply), and
// drops the dry-run annotation that would disarm an AuthorizationPolicy.
func (r *Reconciler) replaceSpec(ctx context.Context, live, want client.Object) error {
	switch w := want.(type) {
	case *securityv1.RequestAuthentication:
		l := live.(*securityv1.RequestAuthentication)
		proto.Reset(&l.Spec)
		proto.Merge(&l.Spec, &w.Spec)
	case *securityv1.AuthorizationPolicy:
		l := live.(*securityv1.AuthorizationPolicy)
		proto.Reset(&l.Spec)
		proto.Merge(&l.Spec, &w.Spec)
		ann := l.GetAnnotations()
		delete(ann, "istio.io/dry-run")
		l.SetAnnotations(ann)
	}
	if err := r.Client.Update(ctx, live, client.FieldOwner(FieldManager)); err != nil {
		return fmt.Errorf("restoring %s/%s: %w", live.GetNamespace(), live.GetName(), err)
	}
	return nil
}

// remove deletes the generated objects of a model (by their deterministic names), if they are
// modelguard's: an object of that name someone else made is left alone.
func (r *Reconciler) remove(ctx context.Context, model types.NamespacedName) outcome {
	name := policy.GeneratedName(r.GVK.Kind, model.Name)
	var removed []string
	for _, obj := range []client.Object{&securityv1.RequestAuthentication{}, &securityv1.AuthorizationPolicy{}} {
		err := r.Client.Get(ctx, types.NamespacedName{Namespace: model.Namespace, Name: name}, obj)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return resultError{fmt.Errorf("reading %s/%s: %w", model.Namespace, name, err)}
		}
		if obj.GetLabels()[policy.LabelManagedBy] != policy.ManagedByValue {
			continue
		}
		if err := r.Client.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
			return resultError{fmt.Errorf("deleting %s/%s: %w", model.Namespace, name, err)}
		}
		ref := obj.GetObjectKind().GroupVersionKind().Kind + " " + model.Namespace + "/" + name
		r.applied.Delete(ref)
		removed = append(removed, fmt.Sprintf("%T %s/%s", obj, model.Namespace, name))
	}
	return resultRemoved{removed}
}

// toUnstructured renders a typed Istio object for server-side apply. Istio's spec types
// marshal through protobuf JSON (camelCase, enums by name), which the generic converter
// would not do.
func toUnstructured(obj client.Object) (*unstructured.Unstructured, error) {
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("rendering %s: %w", obj.GetName(), err)
	}
	u := &unstructured.Unstructured{}
	if err := json.Unmarshal(data, &u.Object); err != nil {
		return nil, fmt.Errorf("rendering %s: %w", obj.GetName(), err)
	}
	delete(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	return u, nil
}
