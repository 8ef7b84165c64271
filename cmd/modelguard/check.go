package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/modelguard/modelguard/policy"
	"github.com/modelguard/modelguard/policy/decode"
)

// pathsFlag collects the values of a repeatable -f flag.
type pathsFlag []string

func (p *pathsFlag) String() string { return strings.Join(*p, ",") }

func (p *pathsFlag) Set(v string) error {
	if v == "" {
		return errors.New("empty path")
	}
	*p = append(*p, v)
	return nil
}

// checkOptions are the parsed flags of `modelguard check`.
type checkOptions struct {
	paths   []string
	config  string
	output  string
	verbose bool
}

// result is the verdict on one judged object, with where the object was read.
type result struct {
	obj     decode.Object
	verdict policy.Verdict
}

// summary counts the results as the reports show them.
type summary struct {
	Checked int `json:"checked"`
	Denied  int `json:"denied"`
	Warned  int `json:"warned"`
}

// writers render a report; each writes the complete report or nothing useful.
var writers = map[string]func(w io.Writer, rs []result, verbose bool) error{
	"text":  writeText,
	"json":  writeJSON,
	"sarif": writeSARIF,
}

// runCheck is `modelguard check`: it reads the manifests, judges every Model,
// InferenceService and VirtualService against the mesh state they describe, writes the
// report and returns the exit code (0 nothing denied, 1 something denied, 2 input or usage
// error). It writes no report at all when any input is invalid.
func runCheck(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	opts, code, ok := parseCheckFlags(args, stderr)
	if !ok {
		return code
	}
	cfg, err := loadConfig(opts.config)
	if err != nil {
		fmt.Fprintf(stderr, "modelguard: %v\n", err)
		return exitUsage
	}
	objs, stats, err := decode.DecodePaths(opts.paths, stdin)
	if err != nil {
		fmt.Fprintf(stderr, "modelguard: %v\n", err)
		return exitUsage
	}
	if opts.verbose {
		reportIgnored(stderr, stats)
	}
	results, err := judge(cfg, objs)
	if err != nil {
		fmt.Fprintf(stderr, "modelguard: %v\n", err)
		return exitUsage
	}
	if len(results) == 0 {
		fmt.Fprintf(stderr, "modelguard: no Model, InferenceService or VirtualService in the input: nothing to judge\n")
	}
	if err := writers[opts.output](stdout, results, opts.verbose); err != nil {
		fmt.Fprintf(stderr, "modelguard: writing the report: %v\n", err)
		return exitUsage
	}
	if summarize(results).Denied > 0 {
		return exitDenied
	}
	return exitOK
}

// parseCheckFlags parses the flags; when ok is false the caller returns code (0 after -h).
func parseCheckFlags(args []string, stderr io.Writer) (opts checkOptions, code int, ok bool) {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var paths pathsFlag
	fs.Var(&paths, "f", "`PATH` of a manifest file, a directory (read recursively: .yaml, .yml, .json) or - for stdin; repeatable")
	fs.StringVar(&opts.config, "config", "", "GuardConfig `FILE` (default: the built-in configuration)")
	fs.StringVar(&opts.output, "o", "text", "output `FORMAT`: text, json or sarif")
	fs.BoolVar(&opts.verbose, "v", false, "verbose: show info findings and count the documents of ignored kinds")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: modelguard check -f PATH [-f PATH...] [--config FILE] [-o text|json|sarif] [-v]\n\n"+
			"The manifests hold both the objects to judge (Models, InferenceServices, VirtualServices)\n"+
			"and the mesh state they are judged against. Exit status: 0 nothing denied, 1 something\n"+
			"denied, 2 input or usage error.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return opts, exitOK, false
		}
		return opts, exitUsage, false // the flag package has printed the error and usage
	}
	opts.paths = paths
	var problem string
	switch {
	case fs.NArg() > 0:
		problem = fmt.Sprintf("unexpected argument %q: give paths with -f", fs.Arg(0))
	case len(opts.paths) == 0:
		problem = "no input: give at least one -f PATH (- reads stdin)"
	case writers[opts.output] == nil:
		problem = fmt.Sprintf("unknown output format %q: use text, json or sarif", opts.output)
	}
	if problem != "" {
		fmt.Fprintf(stderr, "modelguard check: %s\nRun 'modelguard check -h' for usage.\n", problem)
		return opts, exitUsage, false
	}
	return opts, 0, true
}

func loadConfig(path string) (*policy.GuardConfig, error) {
	if path == "" {
		return policy.DefaultConfig(), nil
	}
	return policy.LoadConfig(path)
}

func reportIgnored(stderr io.Writer, stats decode.Stats) {
	kinds := make([]string, 0, len(stats.Ignored))
	for k := range stats.Ignored {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(stderr, "modelguard: ignored %d %s (kind not read by modelguard)\n", stats.Ignored[k], plural(stats.Ignored[k], k))
	}
}

func plural(n int, kind string) string {
	if n == 1 {
		return "object of kind " + kind
	}
	return "objects of kind " + kind
}

// clusterScoped are the kinds read from manifests that have no namespace.
var clusterScoped = map[string]bool{"Namespace": true}

// judge puts every object into one snapshot, the mesh state, then judges the judgeable
// objects in input order.
func judge(cfg *policy.GuardConfig, objs []decode.Object) ([]result, error) {
	snap := policy.NewSnapshot(cfg)
	for _, o := range objs {
		// kubectl puts a namespaced object without a namespace into "default"; so does this.
		if o.Obj.GetNamespace() == "" && !clusterScoped[o.Kind] {
			o.Obj.SetNamespace("default")
		}
		if err := snap.Upsert(o.Obj); err != nil {
			return nil, fmt.Errorf("%s: %s %s: %w", o.Source, o.Kind, o.Obj.GetName(), err)
		}
	}
	results := make([]result, 0, len(objs))
	opts := policy.Options{SimulateMutation: true}
	for _, o := range objs {
		if policy.Judgeable(o.Obj) {
			results = append(results, result{obj: o, verdict: policy.Evaluate(cfg, snap, o.Obj, opts)})
		}
	}
	return results, nil
}

func summarize(rs []result) summary {
	s := summary{Checked: len(rs)}
	for _, r := range rs {
		if !r.verdict.Allowed {
			s.Denied++
		}
		if r.verdict.Decision() == "warned" {
			s.Warned++
		}
	}
	return s
}
