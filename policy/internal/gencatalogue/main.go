// Command gencatalogue rewrites the findings section of README.md from policy.Catalogue, so
// that the documented codes are always the ones the engine emits.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/modelguard/modelguard/policy"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gencatalogue README.md")
		os.Exit(2)
	}
	if err := rewrite(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "gencatalogue:", err)
		os.Exit(1)
	}
}

func rewrite(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	text := string(data)
	begin := strings.Index(text, policy.CatalogueBegin)
	end := strings.Index(text, policy.CatalogueEnd)
	if begin < 0 || end < begin {
		return fmt.Errorf("%s: markers %q and %q not found in order", path, policy.CatalogueBegin, policy.CatalogueEnd)
	}
	out := text[:begin+len(policy.CatalogueBegin)] + "\n" + policy.CatalogueMarkdown() + text[end:]
	return os.WriteFile(path, []byte(out), 0o644)
}
