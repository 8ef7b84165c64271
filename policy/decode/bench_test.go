package decode

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"
)

// mixedStream builds a YAML stream of at least n documents of mixed kinds
// (Istio, core, apps, CRDs, a List and ignored kinds) from the fixtures.
func mixedStream(tb testing.TB, n int) (data []byte, docs int) {
	tb.Helper()
	files := []string{
		"authorizationpolicy-v1.yaml", "authorizationpolicy-v1beta1.yaml", "requestauthentication-v1.yaml",
		"peerauthentication-v1beta1.yaml", "virtualservice-v1alpha3.yaml", "gateway-v1beta1.yaml",
		"destinationrule-v1.yaml", "core.yaml", "apps.yaml", "mlops.yaml", "multi.yaml", "kubectl-export.yaml",
	}
	var buf bytes.Buffer
	for docs < n {
		for _, f := range files {
			data, err := os.ReadFile(filepath.Join("testdata", "valid", f))
			if err != nil {
				tb.Fatal(err)
			}
			objs, st, err := Decode(f, data)
			if err != nil {
				tb.Fatal(err)
			}
			docs += len(objs)
			for _, c := range st.Ignored {
				docs += c
			}
			buf.WriteString("---\n")
			buf.Write(data)
			if docs >= n {
				break
			}
		}
	}
	return buf.Bytes(), docs
}

func BenchmarkDecode(b *testing.B) {
	data, docs := mixedStream(b, 1000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Decode("bench.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*docs), "ns/doc")
}

// BenchmarkDecodeObject decodes one admission request's object, as the webhook does for every
// request, in the compact JSON kube-apiserver sends: the InferenceService and the Seldon Model of
// mlops.yaml, the VirtualService of virtualservice-v1alpha3.yaml.
func BenchmarkDecodeObject(b *testing.B) {
	for _, c := range []struct{ file, kind string }{
		{"mlops.yaml", "InferenceService"}, {"mlops.yaml", "Model"}, {"virtualservice-v1alpha3.yaml", "VirtualService"},
	} {
		b.Run(c.kind, func(b *testing.B) {
			data := jsonOf(b, c.file, c.kind)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeObject(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// jsonOf is the first document of kind in the fixture file, as compact JSON.
func jsonOf(tb testing.TB, file, kind string) []byte {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "valid", file))
	if err != nil {
		tb.Fatal(err)
	}
	for doc := range bytes.SplitSeq(data, []byte("\n---")) {
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			tb.Fatal(err)
		}
		if bytes.Contains(js, []byte(`"kind":"`+kind+`"`)) {
			return js
		}
	}
	tb.Fatalf("no %s in %s", kind, file)
	return nil
}
