package decode

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
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

// FuzzSkipUnread checks that reading past an admission object's managedFields never refuses a
// value that parsing accepts, and refuses others only for their syntax or depth: the value v,
// as managedFields, against the same value parsed as a field of a CRD's spec (as deep).
func FuzzSkipUnread(f *testing.F) {
	for _, s := range []string{`[]`, `[{"manager":"m","fieldsV1":{"f:spec":{}}}]`, `"x"`, `1e999`, `[[[[1]]]]`, `{"a":1,"a":2}`, `"\ud800"`, `[` + strings.Repeat(`[`, 99) + `]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		if len(v) > 1<<14 {
			return
		}
		doc := func(meta, spec string) []byte {
			return []byte(`{"apiVersion":"serving.kserve.io/v1beta1","kind":"InferenceService","metadata":{"name":"m"` + meta + `},"spec":` + spec + `}`)
		}
		if !isOneValue(v) {
			return // v could close the object it sits in: the two documents would differ
		}
		_, parsed := DecodeObject(doc("", `{"x":`+string(v)+`}`))
		_, skipped := DecodeObject(doc(`,"managedFields":`+string(v), `{}`))
		if parsed == nil && skipped != nil {
			t.Fatalf("skipping refused %q, which parsing accepts: %v", v, skipped)
		}
		if skipped != nil && !strings.Contains(skipped.Error(), "invalid JSON") && !strings.Contains(skipped.Error(), "maximum depth") && !strings.Contains(skipped.Error(), "invalid UTF-8") {
			t.Fatalf("skipping refused %q for another reason: %v", v, skipped)
		}
	})
}

// isOneValue reports whether data is exactly one JSON value (duplicate names allowed).
func isOneValue(data []byte) bool {
	return jsontext.Value(data).IsValid(jsontext.AllowDuplicateNames(true))
}
