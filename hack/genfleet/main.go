// Command genfleet writes a synthetic cluster (see package test/fleet) into a directory, for
// timing `modelguard check` from the shell:
//
//	go run ./hack/genfleet -namespaces 1000 -out /tmp/fleet && time bin/modelguard check -f /tmp/fleet -o json >/dev/null
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/modelguard/modelguard/test/fleet"
)

func main() {
	namespaces := flag.Int("namespaces", 1000, "namespaces to generate (10 objects each)")
	out := flag.String("out", "", "output `DIR` (created; must not exist)")
	flag.Parse()
	if *out == "" || *namespaces < 1 {
		fmt.Fprintln(os.Stderr, "usage: genfleet -namespaces N -out DIR")
		os.Exit(2)
	}
	if err := os.Mkdir(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "genfleet:", err)
		os.Exit(1)
	}
	n, err := fleet.Generate(*out, *namespaces)
	if err != nil {
		fmt.Fprintln(os.Stderr, "genfleet:", err)
		os.Exit(1)
	}
	fmt.Printf("%d objects in %s\n", n, *out)
}
