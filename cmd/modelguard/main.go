// Command modelguard checks Kubernetes manifests for ML model endpoints exposed without JWT
// and mTLS, with the same policy engine as the admission webhook.
//
// It is also installed as kubectl-modelguard, so that `kubectl modelguard check -f DIR` works
// as a kubectl plugin; both names behave identically.
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

// Exit codes: the contract CI pipelines rely on.
const (
	exitOK     = 0 // nothing denied
	exitDenied = 1 // at least one object denied
	exitUsage  = 2 // input or usage error
)

// command is one subcommand. run gets the arguments after the subcommand's name.
type command struct {
	summary string
	run     func(args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

// commands lists the subcommands; adding one is adding an entry here.
var commands = map[string]command{
	"check":   {summary: "judge manifests against the policy, as the admission webhook would", run: runCheck},
	"version": {summary: "print the version", run: runVersion},
}

func main() {
	os.Exit(run(os.Args[0], os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run dispatches to a subcommand. argv0 only changes how the usage text names the program.
func run(argv0 string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	prog := programName(argv0)
	if len(args) == 0 {
		usage(stderr, prog)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		usage(stdout, prog)
		return exitOK
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "modelguard: unknown command %q\n", args[0])
		usage(stderr, prog)
		return exitUsage
	}
	return cmd.run(args[1:], stdin, stdout, stderr)
}

// programName is how usage text names the program: "kubectl modelguard" when kubectl runs
// it as a plugin, "modelguard" otherwise.
func programName(argv0 string) string {
	base := strings.TrimSuffix(filepath.Base(argv0), ".exe")
	if base == "kubectl-modelguard" {
		return "kubectl modelguard"
	}
	return "modelguard"
}

func usage(w io.Writer, prog string) {
	fmt.Fprintf(w, "Usage: %s COMMAND [flags]\n\nCommands:\n", prog)
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(w, "  %-8s %s\n", name, commands[name].summary)
	}
	fmt.Fprintf(w, "\nRun '%s COMMAND -h' for a command's flags.\n", prog)
}

func runVersion(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintf(stderr, "modelguard: version takes no arguments\n")
		return exitUsage
	}
	fmt.Fprintln(stdout, version)
	return exitOK
}
