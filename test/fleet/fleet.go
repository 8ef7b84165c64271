// Package fleet generates a synthetic multi-tenant cluster as YAML files: the input of the
// CLI benchmarks (`go test -bench`) and of hack/genfleet, which the load tools use.
package fleet

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Generate writes a synthetic multi-tenant cluster into dir (which must exist) and
// returns how many objects it wrote: istio-system.yaml with the shared ingress gateway, then
// one file team-NNNN.yaml per namespace holding 10 objects:
//
//   - 3 InferenceServices: classifier (cluster-local), ranker (published by KServe) and
//     embedder (cluster-local, published by a VirtualService on istio-system/public-gateway);
//   - 2 RequestAuthentications, for ranker and embedder;
//   - 3 AuthorizationPolicies: DENY without a JWT for ranker and for embedder, and an ALLOW
//     for same-namespace callers of classifier;
//   - 1 PeerAuthentication, STRICT;
//   - 1 VirtualService, embedder-public, with a REST and a gRPC route.
//
// Most namespaces are clean. Deterministically, every 10th namespace is PERMISSIVE
// (MTLS_NOT_STRICT) and every 7th guards only the REST paths of embedder
// (JWT_ROUTE_UNCOVERED on the gRPC route), so the run judges both outcomes.
//
// The output depends only on namespaces.
func Generate(dir string, namespaces int) (objects int, err error) {
	if err := os.WriteFile(filepath.Join(dir, "istio-system.yaml"), []byte(fleetShared), 0o644); err != nil {
		return 0, err
	}
	objects = strings.Count(fleetShared, "\nkind: ")
	for i := 0; i < namespaces; i++ {
		doc := fleetNamespace(i)
		name := filepath.Join(dir, fmt.Sprintf("team-%04d.yaml", i))
		if err := os.WriteFile(name, []byte(doc), 0o644); err != nil {
			return objects, err
		}
		objects += strings.Count(doc, "\nkind: ")
	}
	return objects, nil
}

// fleetShared is the mesh's ingress: one gateway Deployment serving the public Gateway and
// KServe's ingress Gateway.
const fleetShared = `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: istio-ingressgateway
  namespace: istio-system
spec:
  selector:
    matchLabels: {app: istio-ingressgateway, istio: ingressgateway}
  template:
    metadata:
      labels: {app: istio-ingressgateway, istio: ingressgateway}
    spec:
      serviceAccountName: istio-ingressgateway-service-account
      containers:
      - name: istio-proxy
        image: docker.io/istio/proxyv2:1.24.2
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: public-gateway
  namespace: istio-system
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*.models.example.com"]
    tls: {mode: SIMPLE, credentialName: models-example-com-tls}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: knative-ingress-gateway
  namespace: knative-serving
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialName: knative-tls}
`

func fleetNamespace(i int) string {
	ns := fmt.Sprintf("team-%04d", i)
	mtls := "STRICT"
	if i%10 == 9 {
		mtls = "PERMISSIVE"
	}
	embedderPaths := ""
	if i%7 == 6 {
		embedderPaths = `
    to:
    - operation:
        paths: ["/v2/*"]`
	}
	r := strings.NewReplacer("NS", ns, "MTLS", mtls, "EMBEDDER_TO", embedderPaths)
	return r.Replace(fleetNamespaceTemplate)
}

const fleetNamespaceTemplate = `
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: classifier
  namespace: NS
  labels: {networking.kserve.io/visibility: cluster-local}
  annotations: {serving.kserve.io/deploymentMode: RawDeployment}
spec:
  predictor:
    model:
      modelFormat: {name: sklearn}
      storageUri: gs://models/NS/classifier
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: ranker
  namespace: NS
spec:
  predictor:
    model:
      modelFormat: {name: xgboost}
      storageUri: gs://models/NS/ranker
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: embedder
  namespace: NS
  labels: {networking.kserve.io/visibility: cluster-local}
spec:
  predictor:
    model:
      modelFormat: {name: huggingface}
      storageUri: hf://sentence-transformers/all-MiniLM-L6-v2
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: jwt-ranker
  namespace: NS
spec:
  selector:
    matchLabels: {serving.kserve.io/inferenceservice: ranker}
  jwtRules:
  - issuer: https://auth.example.com/
    jwksUri: https://auth.example.com/.well-known/jwks.json
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: jwt-embedder
  namespace: NS
spec:
  selector:
    matchLabels: {serving.kserve.io/inferenceservice: embedder}
  jwtRules:
  - issuer: https://auth.example.com/
    jwksUri: https://auth.example.com/.well-known/jwks.json
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: require-jwt-ranker
  namespace: NS
spec:
  selector:
    matchLabels: {serving.kserve.io/inferenceservice: ranker}
  action: DENY
  rules:
  - from:
    - source:
        notRequestPrincipals: ["*"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: require-jwt-embedder
  namespace: NS
spec:
  selector:
    matchLabels: {serving.kserve.io/inferenceservice: embedder}
  action: DENY
  rules:
  - from:
    - source:
        notRequestPrincipals: ["*"]EMBEDDER_TO
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-same-namespace
  namespace: NS
spec:
  selector:
    matchLabels: {serving.kserve.io/inferenceservice: classifier}
  action: ALLOW
  rules:
  - from:
    - source:
        namespaces: [NS]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: NS
spec:
  mtls: {mode: MTLS}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: embedder-public
  namespace: NS
spec:
  hosts: [embedder.NS.models.example.com]
  gateways: [istio-system/public-gateway]
  http:
  - name: rest
    match:
    - uri: {prefix: /v2/}
    route:
    - destination: {host: embedder-predictor.NS.svc.cluster.local}
  - name: grpc
    match:
    - uri: {prefix: /inference.GRPCInferenceService}
    route:
    - destination: {host: embedder-predictor.NS.svc.cluster.local}
`
