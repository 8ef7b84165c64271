package decode

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// errWant describes an expected *Error; zero fields are not checked.
type errWant struct {
	line int
	path string
	msg  string // substring of Msg
}

func checkErr(t *testing.T, err error, want errWant) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %+v", want)
	}
	var de *Error
	if !errors.As(err, &de) {
		t.Fatalf("error %v (%T) is not a *Error", err, err)
	}
	if want.line != 0 && de.Line != want.line {
		t.Errorf("line = %d, want %d (%v)", de.Line, want.line, err)
	}
	if want.path != "" && de.Path != want.path {
		t.Errorf("path = %q, want %q (%v)", de.Path, want.path, err)
	}
	if !strings.Contains(de.Msg, want.msg) {
		t.Errorf("msg = %q, want it to contain %q", de.Msg, want.msg)
	}
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// decodeOne decodes in-memory YAML that must yield exactly one object.
func decodeOne(t *testing.T, in string) Object {
	t.Helper()
	objs, _, err := Decode("", []byte(in))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if len(objs) != 1 {
		t.Fatalf("got %d objects, want 1", len(objs))
	}
	return objs[0]
}
