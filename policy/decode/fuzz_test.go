package decode

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzDecode checks that no input panics and that success always yields
// usable objects.
func FuzzDecode(f *testing.F) {
	for _, dir := range []string{"valid", "invalid"} {
		files, err := filepath.Glob(filepath.Join("testdata", dir, "*"))
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	for _, s := range []string{"", "---", "{}", "[]", "a: &a [*a]", "{\"a\": \"\\ud800\"}",
		`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a","managedFields":[{"manager":"m","fieldsV1":{"f:x":{}}}]}}`, "? [a]\n: b", "%YAML 1.2\n---\na: 1\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, st, err := Decode("fuzz.yaml", data)
		checkOutcome(t, objs, err)
		if err == nil && st.Decoded != len(objs) {
			t.Fatalf("Stats.Decoded = %d, %d objects", st.Decoded, len(objs))
		}
		obj, err := DecodeObject(data)
		if err == nil {
			checkOutcome(t, []Object{obj}, nil)
		} else {
			checkOutcome(t, nil, err)
		}
	})
}

func checkOutcome(t *testing.T, objs []Object, err error) {
	t.Helper()
	if err != nil {
		var de *Error
		if !errors.As(err, &de) {
			t.Fatalf("error %v (%T) is not a *Error", err, err)
		}
		if objs != nil {
			t.Fatalf("objects returned with error %v", err)
		}
		if strings.Contains(de.Msg, "internal decoder error") {
			t.Fatalf("recovered panic: %v", err) // a bug, even if contained
		}
		return
	}
	for i, o := range objs {
		if o.Obj == nil || o.Obj.GetName() == "" || o.Source.Line < 1 || o.APIVersion == "" || o.Kind == "" {
			t.Fatalf("object %d incomplete: %+v", i, o)
		}
		if o.Obj.GetObjectKind().GroupVersionKind().Kind != o.Kind {
			t.Fatalf("object %d: TypeMeta kind %q, want %q", i, o.Obj.GetObjectKind().GroupVersionKind().Kind, o.Kind)
		}
	}
}
