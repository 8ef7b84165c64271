package testenv

import (
	"bytes"
	"context"
	"fmt"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// WebhookCall is kube-apiserver's own account of one webhook's calls (by webhook name), from
// its apiserver_admission_webhook_admission_duration_seconds histogram: the round trips it
// waited for, the webhook's own time included.
type WebhookCall struct {
	Count   float64
	Seconds float64
}

// WebhookCalls reads kube-apiserver's /metrics (with cfg's credentials) and sums the webhook
// call histogram by webhook name, over operations and outcomes.
func WebhookCalls(ctx context.Context, cfg *rest.Config) (map[string]WebhookCall, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	data, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver /metrics: %w", err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver /metrics: %w", err)
	}
	calls := map[string]WebhookCall{}
	for _, m := range families["apiserver_admission_webhook_admission_duration_seconds"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "name" {
				c := calls[l.GetValue()]
				c.Count += float64(m.GetHistogram().GetSampleCount())
				c.Seconds += m.GetHistogram().GetSampleSum()
				calls[l.GetValue()] = c
			}
		}
	}
	return calls, nil
}
