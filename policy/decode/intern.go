package decode

// internedString returns b as a string, without allocating when b is one of the field names
// and values that every admission object repeats (the map lookup converts b without a copy).
func internedString(b []byte) string {
	if s, ok := interned[string(b)]; ok {
		return s
	}
	return string(b)
}

// interned holds the keys of Kubernetes object metadata and of the specs modelguard decodes
// (Istio, KServe, Seldon), and a few values they share.
var interned = func() map[string]string {
	names := []string{
		// Kubernetes objects and metadata.
		"apiVersion", "kind", "metadata", "spec", "status", "name", "namespace", "generateName",
		"uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
		"labels", "annotations", "ownerReferences", "finalizers", "managedFields",
		"manager", "operation", "time", "fieldsType", "fieldsV1", "subresource",
		"controller", "blockOwnerDeletion", "Apply", "Update", "FieldsV1",
		"app", "version", "component", "selector", "matchLabels",
		// Istio.
		"hosts", "gateways", "http", "tcp", "tls", "match", "route", "destination", "host",
		"port", "number", "subset", "weight", "uri", "prefix", "exact", "regex", "headers",
		"rewrite", "timeout", "retries", "rules", "from", "to", "when", "source", "values",
		"notValues", "paths", "methods", "principals", "requestPrincipals", "action",
		"jwtRules", "issuer", "jwksUri", "audiences", "forwardOriginalToken", "mtls", "mode",
		"portLevelMtls", "STRICT", "PERMISSIVE", "DISABLE", "ALLOW", "DENY", "CUSTOM", "AUDIT",
		"POST", "GET", "key", "set", "request", "response", "mesh",
		// KServe and Seldon.
		"predictor", "transformer", "explainer", "model", "modelFormat", "runtime",
		"storageUri", "protocolVersion", "minReplicas", "maxReplicas", "requirements",
		"memory", "replicas", "server", "v1", "v2", "grpc-v2",
	}
	m := make(map[string]string, len(names))
	for _, n := range names {
		m[n] = n
	}
	return m
}()
