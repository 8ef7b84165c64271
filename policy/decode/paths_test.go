package decode

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func nsDoc(name string) string {
	return "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + name + "\n"
}

// writeTree creates files (path -> content) and symlinks (path -> target)
// below dir.
func writeTree(t *testing.T, dir string, files, links map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for p, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, p)); err != nil {
			t.Fatal(err)
		}
	}
}

func names(objs []Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.Obj.GetName())
	}
	return out
}

func TestDecodePathsDirectory(t *testing.T) {
	tmp := t.TempDir()
	root := filepath.Join(tmp, "root")
	writeTree(t, tmp, map[string]string{
		"root/a.yaml":              nsDoc("a"),
		"root/b.yml":               nsDoc("b") + "---\napiVersion: v1\nkind: ConfigMap\n",
		"root/c.json":              `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"c"}}`,
		"root/Z.YAML":              nsDoc("z"),
		"root/notes.txt":           "not: [valid",
		"root/README.md":           "# docs",
		"root/sub/d.yaml":          nsDoc("d"),
		"root/sub/deeper/e.yaml":   nsDoc("e"),
		"root/sub/deeper/skip.tpl": "{{ .Values }}",
		"outside/f.yaml":           nsDoc("f"),
	}, map[string]string{
		"root/link-to-file.yaml": "../outside/f.yaml",
		"root/loop":              ".",              // a cycle back to root
		"root/sub/deeper/up":     "../../sub",      // a cycle through an ancestor
		"root/dangling.txt":      "does-not-exist", // ignored: not a manifest
	})

	for range 3 { // the order must not vary
		objs, st, err := DecodePaths([]string{root}, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"z", "a", "b", "c", "f", "d", "e"}
		if got := names(objs); !reflect.DeepEqual(got, want) {
			t.Fatalf("order = %v, want %v", got, want)
		}
		if st.Decoded != 7 || st.Ignored["v1/ConfigMap"] != 1 {
			t.Errorf("stats = %+v", st)
		}
		if f := objs[4].Source.File; f != filepath.Join(root, "link-to-file.yaml") {
			t.Errorf("symlinked file source = %q", f)
		}
		if s := objs[6].Source.String(); s != filepath.Join(root, "sub", "deeper", "e.yaml")+":1" {
			t.Errorf("Source = %q", s)
		}
	}
}

func TestDecodePathsMixed(t *testing.T) {
	tmp := t.TempDir()
	writeTree(t, tmp, map[string]string{
		"one.txt":  nsDoc("explicit"), // named explicitly: read whatever its extension
		"two.yaml": nsDoc("two") + "---\napiVersion: example.com/v1\nkind: Widget\n",
	}, nil)
	stdin := strings.NewReader(nsDoc("from-stdin") + "---\napiVersion: example.com/v1\nkind: Widget\n")
	objs, st, err := DecodePaths([]string{filepath.Join(tmp, "one.txt"), "-", filepath.Join(tmp, "two.yaml")}, stdin)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(objs); !reflect.DeepEqual(got, []string{"explicit", "from-stdin", "two"}) {
		t.Errorf("names = %v", got)
	}
	if objs[1].Source.File != "-" || st.Ignored["example.com/v1/Widget"] != 2 || st.Decoded != 3 {
		t.Errorf("source %v stats %+v", objs[1].Source, st)
	}
}

func TestDecodePathsErrors(t *testing.T) {
	tmp := t.TempDir()
	writeTree(t, tmp, map[string]string{
		"good/a.yaml":    nsDoc("a"),
		"bad/a.yaml":     nsDoc("a"),
		"bad/b/c.yaml":   "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: c\n  labells: {}\n",
		"bad/b/d.yaml":   "not reached",
		"dangling/x.yml": nsDoc("x"),
	}, map[string]string{"dangling/y.yaml": "missing.yaml"})

	cases := []struct {
		name  string
		paths []string
		stdin string
		file  string
		want  errWant
	}{
		{"bad file in tree", []string{filepath.Join(tmp, "good"), filepath.Join(tmp, "bad")}, "", filepath.Join(tmp, "bad", "b", "c.yaml"), errWant{5, "metadata.labells", "unknown field"}},
		{"missing path", []string{filepath.Join(tmp, "nope.yaml")}, "", filepath.Join(tmp, "nope.yaml"), errWant{0, "", "no such file or directory"}},
		{"dangling manifest link", []string{filepath.Join(tmp, "dangling")}, "", filepath.Join(tmp, "dangling", "y.yaml"), errWant{0, "", "no such file or directory"}},
		{"stdin twice", []string{"-", "-"}, nsDoc("a"), "-", errWant{0, "", "more than once"}},
		{"bad stdin", []string{"-"}, "kind: [", "-", errWant{1, "", "invalid YAML"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs, _, err := DecodePaths(tc.paths, strings.NewReader(tc.stdin))
			checkErr(t, err, tc.want)
			var de *Error
			if errors.As(err, &de) && de.File != tc.file {
				t.Errorf("File = %q, want %q", de.File, tc.file)
			}
			if objs != nil {
				t.Errorf("partial result: %v", names(objs))
			}
		})
	}
	if _, _, err := DecodePaths([]string{"-"}, nil); err == nil {
		t.Error("no error for \"-\" without a reader")
	}
}

// Inputs are decoded concurrently; the outcome must be a sequential decode's: objects in walk
// order, and the error of the earliest failing input, whether it fails in decoding or in the
// walk (a dangling link after a bad file).
func TestDecodePathsConcurrentOrder(t *testing.T) {
	tmp := t.TempDir()
	files := map[string]string{}
	for i := range 60 {
		files[fmt.Sprintf("ok/%02d.yaml", i)] = nsDoc(fmt.Sprintf("ns-%02d", i)) + "---\n" + nsDoc(fmt.Sprintf("ns-%02d-b", i))
		if i != 50 {
			files[fmt.Sprintf("bad/%02d.yaml", i)] = nsDoc(fmt.Sprintf("ns-%02d", i))
		}
	}
	files["bad/31.yaml"] = "apiVersion: v1\nkind: Namespace\nmetadata:\n  nme: x\n"
	files["bad/47.yaml"] = "kind: ["
	writeTree(t, tmp, files, map[string]string{"bad/50.yaml": "missing.yaml"})

	objs, st, err := DecodePaths([]string{filepath.Join(tmp, "ok")}, nil)
	if err != nil || len(objs) != 120 || st.Decoded != 120 {
		t.Fatalf("got %d objects, %+v, %v", len(objs), st, err)
	}
	for i, o := range objs {
		want := fmt.Sprintf("ns-%02d", i/2)
		if i%2 == 1 {
			want += "-b"
		}
		if o.Obj.GetName() != want {
			t.Fatalf("object %d is %s, want %s", i, o.Obj.GetName(), want)
		}
	}
	for range 20 { // the scheduling differs from run to run; the answer must not
		_, _, err := DecodePaths([]string{filepath.Join(tmp, "bad")}, nil)
		checkErr(t, err, errWant{4, "metadata.nme", "unknown field"})
		var de *Error
		if errors.As(err, &de) && de.File != filepath.Join(tmp, "bad", "31.yaml") {
			t.Fatalf("File = %q, want bad/31.yaml", de.File)
		}
	}
}
