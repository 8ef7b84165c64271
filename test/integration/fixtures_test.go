package integration_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	testenv "github.com/modelguard/modelguard/test/envtest"
)

// fixture is one YAML file of objects and what it holds.
type fixture struct {
	path    string
	content string
	objects []*unstructured.Unstructured
}

// seedFixtures reads policy/testdata/mesh/*.yaml, the mesh states of the seed scenarios that
// modelguard's engine tests judge, in file name order.
func seedFixtures(t *testing.T) []fixture {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	paths, err := filepath.Glob(filepath.Join(root, "policy", "testdata", "mesh", "*.yaml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no seed fixtures in policy/testdata/mesh (err %v)", err)
	}
	slices.Sort(paths)
	fixtures := make([]fixture, 0, len(paths))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeObjects(data)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		fixtures = append(fixtures, fixture{path: p, content: string(data), objects: objs})
	}
	return fixtures
}

// decodeObjects splits a multi-document YAML file into objects, skipping empty documents.
func decodeObjects(data []byte) ([]*unstructured.Unstructured, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			return nil, err
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}

// namespacesManifest returns Namespace objects for every namespace the fixtures use, declared
// or not: kubectl applies a file in order, and an object whose namespace does not exist yet is
// refused. (kserve.yaml puts a Gateway in knative-serving, which no fixture declares.)
func namespacesManifest(fixtures []fixture) string {
	seen := map[string]bool{}
	for _, f := range fixtures {
		for _, o := range f.objects {
			if o.GetKind() == "Namespace" && o.GetAPIVersion() == "v1" {
				seen[o.GetName()] = true
			}
			if ns := o.GetNamespace(); ns != "" {
				seen[ns] = true
			}
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n", n)
	}
	return b.String()
}
