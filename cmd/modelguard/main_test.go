package main

import (
	"bytes"
	"strings"
	"testing"
)

func dispatch(argv0 string, args ...string) checkRun {
	var out, errOut bytes.Buffer
	code := run(argv0, args, strings.NewReader(""), &out, &errOut)
	return checkRun{code: code, stdout: out.String(), stderr: errOut.String()}
}

func TestVersion(t *testing.T) {
	defer func(v string) { version = v }(version)
	version = "v1.2.3"
	r := dispatch("modelguard", "version")
	if r.code != exitOK || r.stdout != "v1.2.3\n" {
		t.Errorf("version: exit %d, stdout %q", r.code, r.stdout)
	}
	if r := dispatch("modelguard", "version", "extra"); r.code != exitUsage {
		t.Errorf("version extra: exit %d, want 2", r.code)
	}
}

func TestDispatchErrors(t *testing.T) {
	for _, args := range [][]string{nil, {"frobnicate"}, {"-f", inputDir}} {
		r := dispatch("modelguard", args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, "Usage: modelguard COMMAND") {
			t.Errorf("%q: exit %d, stderr:\n%s", args, r.code, r.stderr)
		}
	}
	r := dispatch("modelguard", "help")
	if r.code != exitOK || !strings.Contains(r.stdout, "check") || !strings.Contains(r.stdout, "version") {
		t.Errorf("help: exit %d, stdout:\n%s", r.code, r.stdout)
	}
}

// As a kubectl plugin the binary behaves the same; only the usage text says "kubectl modelguard".
func TestKubectlPlugin(t *testing.T) {
	for _, format := range []string{"text", "json", "sarif"} {
		plain := dispatch("/usr/local/bin/modelguard", "check", "-f", inputDir, "-o", format)
		plugin := dispatch("/usr/local/bin/kubectl-modelguard", "check", "-f", inputDir, "-o", format)
		if plain != plugin {
			t.Errorf("-o %s: kubectl-modelguard differs from modelguard:\n%+v\n%+v", format, plugin, plain)
		}
		if plain.code != exitDenied {
			t.Errorf("-o %s: exit %d, want 1", format, plain.code)
		}
	}
	r := dispatch("kubectl-modelguard")
	if !strings.Contains(r.stderr, "Usage: kubectl modelguard COMMAND") {
		t.Errorf("plugin usage:\n%s", r.stderr)
	}
}
