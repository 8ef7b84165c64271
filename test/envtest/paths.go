package testenv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	// Nothing else in modelguard imports cert-manager, whose module only supplies the CRD
	// YAMLs installed here. This import keeps it in the build graph, so `go mod tidy` keeps
	// the requirement (and its checksum) that locating those files depends on.
	_ "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
)

const modulePath = "github.com/modelguard/modelguard"

// Modules whose files provide the third-party CRDs. Their versions are the ones go.mod pins,
// so the CRDs always match the Go types the code is built with.
const (
	istioAPIModule    = "istio.io/api"
	certManagerModule = "github.com/cert-manager/cert-manager"
)

// RepoRoot returns the directory of modelguard's go.mod, found by walking up from the working
// directory. `go test` runs each package in its own directory, so this is how a test anywhere
// in the tree finds hack/ and test/crds/.
func RepoRoot() (string, error) {
	start, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := start; ; {
		if isModuleRoot(dir) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s in %s or above", modulePath, start)
		}
		dir = parent
	}
}

// isModuleRoot reports whether dir holds modelguard's go.mod (not some test fixture's).
func isModuleRoot(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`) == modulePath
		}
	}
	return false
}

// The asset directory and CRD paths are the same for every Start in a test binary: work them
// out once (hack/envtest-assets and `go list` cost a process each).
var (
	assetsOnce sync.Once
	assetsDir  string
	assetsErr  error

	crdOnce  sync.Once
	crdPaths []string
	crdErr   error
)

// AssetsDir returns the directory holding kube-apiserver, etcd and kubectl: $KUBEBUILDER_ASSETS
// when it is set and not empty, otherwise the directory hack/envtest-assets prints. That script
// builds the binaries on first use (minutes) and answers from its cache afterwards.
func AssetsDir(root string) (string, error) {
	assetsOnce.Do(func() {
		assetsDir, assetsErr = findAssets(root)
	})
	return assetsDir, assetsErr
}

func findAssets(root string) (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	from := "$KUBEBUILDER_ASSETS"
	if dir == "" {
		// Empty counts as unset: `KUBEBUILDER_ASSETS="$(hack/envtest-assets)"` yields "" when
		// the script fails, and envtest would then look for binaries in the working directory.
		var err error
		if dir, err = runAssetsScript(root); err != nil {
			return "", err
		}
		from = "hack/envtest-assets"
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if err := checkExecutable(filepath.Join(dir, bin)); err != nil {
			return "", fmt.Errorf("envtest assets from %s (%s): %w", from, dir, err)
		}
	}
	return dir, nil
}

// runAssetsScript runs hack/envtest-assets, whose stdout is the directory and nothing else.
func runAssetsScript(root string) (string, error) {
	script := filepath.Join(root, "hack", "envtest-assets")
	cmd := exec.Command(script)
	cmd.Dir = root
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("KUBEBUILDER_ASSETS is not set and %s failed (%v); "+
			"run it by hand to see why, or set KUBEBUILDER_ASSETS to a directory holding "+
			"kube-apiserver, etcd and kubectl. Its stderr:\n%s", script, err, stderr.String())
	}
	dir := strings.TrimSpace(stdout.String())
	if dir == "" {
		return "", fmt.Errorf("%s printed no directory; stderr:\n%s", script, stderr.String())
	}
	return dir, nil
}

func checkExecutable(path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	if info.IsDir() || info.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

// CRDPaths returns the CRD files and directories Start installs: Istio's CRDs from the
// istio.io/api module, cert-manager's from its module, and modelguard's test/crds/ (Seldon
// Model, KServe InferenceService).
func CRDPaths(root string) ([]string, error) {
	crdOnce.Do(func() {
		crdPaths, crdErr = findCRDPaths(root)
	})
	return crdPaths, crdErr
}

func findCRDPaths(root string) ([]string, error) {
	istio, err := moduleDir(root, istioAPIModule)
	if err != nil {
		return nil, err
	}
	certManager, err := moduleDir(root, certManagerModule)
	if err != nil {
		return nil, err
	}
	paths := []string{
		// One multi-document file with every Istio CRD (networking, security, telemetry, ...).
		filepath.Join(istio, "kubernetes", "customresourcedefinitions.gen.yaml"),
		// Plain controller-gen output; the Helm chart's copies are templated.
		filepath.Join(certManager, "deploy", "crds"),
		filepath.Join(root, "test", "crds"),
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("CRD path: %w", err)
		}
	}
	return paths, nil
}

// moduleDir returns the module cache directory of a dependency at the version go.mod pins.
// `go list -m` answers from any directory of the module, but leaves Dir empty when the module
// is not downloaded yet (a fresh cache where only the packages built were fetched), hence the
// download and the second look.
func moduleDir(root, module string) (string, error) {
	dir, err := goListDir(root, module)
	if err == nil && dir == "" {
		if _, err = goCommand(root, "mod", "download", module); err == nil {
			dir, err = goListDir(root, module)
		}
	}
	if err != nil {
		return "", fmt.Errorf("locating module %s (is it still required in go.mod?): %w", module, err)
	}
	if dir == "" {
		return "", fmt.Errorf("locating module %s: go list -m gives no directory", module)
	}
	return dir, nil
}

func goListDir(root, module string) (string, error) {
	out, err := goCommand(root, "list", "-m", "-f", "{{.Dir}}", module)
	return strings.TrimSpace(out), err
}

// goCommand runs the go command in root. `go test` puts its own GOROOT/bin first on PATH, so
// this is the toolchain that built the test.
func goCommand(root string, args ...string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		if goroot := os.Getenv("GOROOT"); goroot != "" {
			goBin = filepath.Join(goroot, "bin", "go")
		} else {
			return "", errors.New("no go command on PATH")
		}
	}
	cmd := exec.Command(goBin, args...)
	cmd.Dir = root
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
