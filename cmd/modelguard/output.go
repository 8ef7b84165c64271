package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/modelguard/modelguard/policy"
)

// ---- text: for people ----

// writeText writes one block per judged object, then a summary line. Info findings are only
// shown with verbose; fixes only for errors and warnings.
func writeText(w io.Writer, rs []result, verbose bool) error {
	bw := bufio.NewWriter(w)
	for _, r := range rs {
		writeTextResult(bw, r, verbose)
		bw.WriteString("\n")
	}
	s := summarize(rs)
	fmt.Fprintf(bw, "checked %d, denied %d, warned %d\n", s.Checked, s.Denied, s.Warned)
	return bw.Flush()
}

func writeTextResult(w *bufio.Writer, r result, verbose bool) {
	v := r.verdict
	fmt.Fprintf(w, "%s %s/%s (%s): %s", r.obj.Kind, r.obj.Obj.GetNamespace(), r.obj.Obj.GetName(), r.obj.Source, strings.ToUpper(v.Decision()))
	var ctx []string
	if v.Mode != "" {
		ctx = append(ctx, string(v.Mode))
	}
	if v.Rule != "" {
		ctx = append(ctx, v.Rule)
	}
	if len(ctx) > 0 {
		fmt.Fprintf(w, " [%s]", strings.Join(ctx, ", "))
	}
	w.WriteString("\n")
	for _, f := range v.Findings {
		if f.Severity == policy.SeverityInfo && !verbose {
			continue
		}
		fmt.Fprintf(w, "  %s %s: %s\n", f.Severity, f.Code, f.Message)
		if f.Route != "" {
			fmt.Fprintf(w, "    route: %s\n", f.Route)
		}
		if f.Fix != "" && f.Severity != policy.SeverityInfo {
			w.WriteString("    fix:\n")
			writeIndented(w, f.Fix, "      ")
		}
	}
}

// writeIndented writes each line of s with the prefix (empty lines stay empty).
func writeIndented(w *bufio.Writer, s, prefix string) {
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if line != "" {
			w.WriteString(prefix)
			w.WriteString(line)
		}
		w.WriteString("\n")
	}
}

// ---- JSON: the stable machine-readable report ----

type jsonReport struct {
	Results []jsonResult `json:"results"`
	Summary summary      `json:"summary"`
}

type jsonResult struct {
	Kind       string        `json:"kind"`
	APIVersion string        `json:"apiVersion"`
	Namespace  string        `json:"namespace"`
	Name       string        `json:"name"`
	Source     string        `json:"source"`
	Allowed    bool          `json:"allowed"`
	Mode       string        `json:"mode"`
	Findings   []jsonFinding `json:"findings"`
}

// jsonFinding spells out every field: route and fix are present even when empty.
type jsonFinding struct {
	Code     string `json:"code"`
	Severity string `json:"severity"`
	Message  string `json:"message"`
	Route    string `json:"route"`
	Fix      string `json:"fix"`
}

// writeJSON writes every finding, info included: programs filter by severity themselves.
func writeJSON(w io.Writer, rs []result, _ bool) error {
	rep := jsonReport{Results: make([]jsonResult, 0, len(rs)), Summary: summarize(rs)}
	for _, r := range rs {
		jr := jsonResult{
			Kind: r.obj.Kind, APIVersion: r.obj.APIVersion,
			Namespace: r.obj.Obj.GetNamespace(), Name: r.obj.Obj.GetName(),
			Source: r.obj.Source.String(), Allowed: r.verdict.Allowed, Mode: string(r.verdict.Mode),
			Findings: make([]jsonFinding, 0, len(r.verdict.Findings)),
		}
		for _, f := range r.verdict.Findings {
			jr.Findings = append(jr.Findings, jsonFinding{Code: string(f.Code), Severity: string(f.Severity),
				Message: f.Message, Route: f.Route, Fix: f.Fix})
		}
		rep.Results = append(rep.Results, jr)
	}
	return encodeJSON(w, rep)
}

// encodeJSON writes v indented, without escaping <, > and & (routes read "a -> b").
func encodeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// ---- SARIF 2.1.0: for code-scanning dashboards ----

const (
	sarifVersion = "2.1.0"
	sarifSchema  = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
	sarifToolURI = "https://github.com/modelguard/modelguard"
)

type sarifLog struct {
	Version string     `json:"version"`
	Schema  string     `json:"$schema"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool    sarifTool     `json:"tool"`
	Results []sarifResult `json:"results"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	Version        string      `json:"version"`
	InformationURI string      `json:"informationUri"`
	Rules          []sarifRule `json:"rules"`
}

type sarifRule struct {
	ID                   string       `json:"id"`
	ShortDescription     sarifText    `json:"shortDescription"`
	FullDescription      sarifText    `json:"fullDescription"`
	DefaultConfiguration sarifDefault `json:"defaultConfiguration"`
}

type sarifText struct {
	Text string `json:"text"`
}

type sarifDefault struct {
	Level string `json:"level"`
}

type sarifResult struct {
	RuleID    string          `json:"ruleId"`
	RuleIndex int             `json:"ruleIndex"`
	Level     string          `json:"level"`
	Message   sarifText       `json:"message"`
	Locations []sarifLocation `json:"locations"`
}

type sarifLocation struct {
	PhysicalLocation sarifPhysical `json:"physicalLocation"`
}

type sarifPhysical struct {
	ArtifactLocation sarifArtifact `json:"artifactLocation"`
	Region           *sarifRegion  `json:"region,omitempty"`
}

type sarifArtifact struct {
	URI string `json:"uri"`
}

type sarifRegion struct {
	StartLine int `json:"startLine"`
}

// sarifLevel maps a severity to a SARIF level.
func sarifLevel(s policy.Severity) string {
	switch s {
	case policy.SeverityError:
		return "error"
	case policy.SeverityWarning:
		return "warning"
	}
	return "note"
}

// writeSARIF writes one run whose rules are the finding catalogue and whose results are the
// error and warning findings, located at the judged object.
func writeSARIF(w io.Writer, rs []result, _ bool) error {
	rules := make([]sarifRule, 0, len(policy.Catalogue))
	index := make(map[policy.Code]int, len(policy.Catalogue))
	for i, e := range policy.Catalogue {
		index[e.Code] = i
		rules = append(rules, sarifRule{ID: string(e.Code), ShortDescription: sarifText{e.Title},
			FullDescription: sarifText{e.Meaning}, DefaultConfiguration: sarifDefault{sarifLevel(e.Severity)}})
	}
	run := sarifRun{
		Tool:    sarifTool{Driver: sarifDriver{Name: "modelguard", Version: version, InformationURI: sarifToolURI, Rules: rules}},
		Results: []sarifResult{},
	}
	for _, r := range rs {
		for _, f := range r.verdict.Findings {
			if f.Severity != policy.SeverityError && f.Severity != policy.SeverityWarning {
				continue
			}
			i, ok := index[f.Code]
			if !ok {
				return fmt.Errorf("finding code %s is not in the catalogue", f.Code)
			}
			run.Results = append(run.Results, sarifResult{RuleID: string(f.Code), RuleIndex: i, Level: sarifLevel(f.Severity),
				Message: sarifText{sarifMessage(f)}, Locations: []sarifLocation{sarifLocationOf(r)}})
		}
	}
	return encodeJSON(w, sarifLog{Version: sarifVersion, Schema: sarifSchema, Runs: []sarifRun{run}})
}

// sarifMessage is the finding's message, then its route on a line of its own.
func sarifMessage(f policy.Finding) string {
	var b strings.Builder
	b.WriteString(f.Message)
	if f.Route != "" {
		fmt.Fprintf(&b, "\nroute: %s", f.Route)
	}
	return b.String()
}

func sarifLocationOf(r result) sarifLocation {
	loc := sarifLocation{PhysicalLocation: sarifPhysical{ArtifactLocation: sarifArtifact{URI: artifactURI(r.obj.Source.File)}}}
	if r.obj.Source.Line > 0 {
		loc.PhysicalLocation.Region = &sarifRegion{StartLine: r.obj.Source.Line}
	}
	return loc
}

// artifactURI is the file path as given, with forward slashes, as a relative or absolute URI
// reference (characters that are not allowed in a URI are percent-encoded).
func artifactURI(file string) string {
	u := url.URL{Path: filepath.ToSlash(file)}
	return u.String()
}
