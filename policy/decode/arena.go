package decode

import (
	"sync"

	yaml "go.yaml.in/yaml/v3"
)

// nodeArena lends the nodes and child lists of one admission object's tree. DecodeObject
// builds the tree, decodes the object from it and drops it; nothing decoded keeps a pointer
// into it (objects hold its strings, which are allocated apart). Reusing the memory for the
// next admission spares the collector the tree's many small allocations, the largest part of
// what a served admission allocates. An arena serves one decode at a time (see arenas).
type nodeArena struct {
	nodes  [][]yaml.Node // chunks: nodes[ni][nu] is the next node handed out
	ni, nu int
	kids   [][]*yaml.Node // chunks of child lists: kids[ki][ku:] is free
	ki, ku int
}

const (
	arenaChunk = 64 // nodes or child pointers per chunk: an InferenceService needs about 60
	// arenaKeep bounds the chunks an idle arena holds on to, so that one large object does
	// not keep its tree's memory in the pool.
	arenaKeep = 4
)

// arenas holds the idle arenas; sync.Pool lets the collector drop them.
var arenas = sync.Pool{New: func() any { return new(nodeArena) }}

// node returns a zeroed node (reset zeroes what was handed out).
func (a *nodeArena) node() *yaml.Node {
	if a.ni == len(a.nodes) {
		a.nodes = append(a.nodes, make([]yaml.Node, arenaChunk))
	}
	n := &a.nodes[a.ni][a.nu]
	if a.nu++; a.nu == len(a.nodes[a.ni]) {
		a.ni, a.nu = a.ni+1, 0
	}
	return n
}

// clone copies kids into a list of exactly their length and capacity, so that appending to it
// cannot write over the arena's next list.
func (a *nodeArena) clone(kids []*yaml.Node) []*yaml.Node {
	k := len(kids)
	for a.ki < len(a.kids) && a.ku+k > len(a.kids[a.ki]) {
		a.ki, a.ku = a.ki+1, 0
	}
	if a.ki == len(a.kids) {
		a.kids = append(a.kids, make([]*yaml.Node, max(arenaChunk, k)))
	}
	out := a.kids[a.ki][a.ku : a.ku+k : a.ku+k]
	copy(out, kids)
	a.ku += k
	return out
}

// reset zeroes everything handed out, so that no string or pointer of one admission survives
// into the next, and drops the chunks beyond arenaKeep.
func (a *nodeArena) reset() {
	for i := 0; i < a.ni && i < len(a.nodes); i++ {
		clear(a.nodes[i])
	}
	if a.ni < len(a.nodes) {
		clear(a.nodes[a.ni][:a.nu])
	}
	for i := 0; i < a.ki && i < len(a.kids); i++ {
		clear(a.kids[i])
	}
	if a.ki < len(a.kids) {
		clear(a.kids[a.ki][:a.ku])
	}
	a.nodes, a.kids = a.nodes[:min(len(a.nodes), arenaKeep)], a.kids[:min(len(a.kids), arenaKeep)]
	a.ni, a.nu, a.ki, a.ku = 0, 0, 0, 0
}
