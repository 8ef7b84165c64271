package decode

import (
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	yaml "go.yaml.in/yaml/v3"
)

// An arena hands out zeroed nodes and child lists whose appends cannot reach a neighbour,
// and reset leaves nothing of the last decode behind.
func TestNodeArena(t *testing.T) {
	a := new(nodeArena)
	var handed []*yaml.Node
	for i := range 3*arenaChunk + 5 {
		n := a.node()
		if !reflect.DeepEqual(*n, yaml.Node{}) {
			t.Fatalf("node %d not zeroed: %+v", i, *n)
		}
		n.Value, n.Line = fmt.Sprint("secret-", i), i
		handed = append(handed, n)
	}
	small := a.clone(handed[:3])
	next := a.clone(handed[3:5])
	if len(small) != 3 || cap(small) != 3 {
		t.Fatalf("clone: len %d cap %d, want 3 and 3", len(small), cap(small))
	}
	_ = append(small, handed[9])
	if next[0] != handed[3] {
		t.Fatalf("appending to a clone overwrote the next list")
	}
	big := a.clone(handed[:2*arenaChunk]) // longer than a chunk
	if len(big) != 2*arenaChunk || big[2*arenaChunk-1] != handed[2*arenaChunk-1] {
		t.Fatalf("clone of %d children: got %d", 2*arenaChunk, len(big))
	}
	a.reset()
	for i, n := range handed {
		if !reflect.DeepEqual(*n, yaml.Node{}) {
			t.Fatalf("node %d survives reset: %+v", i, *n)
		}
	}
	if small[0] != nil || big[0] != nil {
		t.Fatal("child lists survive reset")
	}
	for i := range 3*arenaChunk + 5 {
		if n := a.node(); !reflect.DeepEqual(*n, yaml.Node{}) {
			t.Fatalf("node %d after reset not zeroed: %+v", i, *n)
		}
	}
	a.reset()
	if len(a.nodes) > arenaKeep || len(a.kids) > arenaKeep {
		t.Fatalf("idle arena keeps %d node and %d list chunks, want at most %d", len(a.nodes), len(a.kids), arenaKeep)
	}
}

// DecodeObject, whose trees live in pooled arenas, decodes what Decode (trees on the heap)
// decodes, for objects of different shapes decoded concurrently: nothing of one admission's
// tree leaks into another's object.
func TestDecodeObjectArenaIsolation(t *testing.T) {
	inputs := make([][]byte, 12)
	for i := range inputs {
		inputs[i] = []byte(arenaCase(i))
	}
	want := make([]any, len(inputs))
	for i, in := range inputs {
		objs, _, err := Decode("case.json", in)
		if err != nil || len(objs) != 1 {
			t.Fatalf("case %d: Decode: %v (%d objects)\n%s", i, err, len(objs), in)
		}
		want[i] = objs[0].Obj
	}
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 300 {
				i := (k*7 + g) % len(inputs)
				o, err := DecodeObject(inputs[i])
				if err != nil {
					errs <- fmt.Sprintf("case %d: %v", i, err)
					return
				}
				if !reflect.DeepEqual(o.Obj, want[i]) {
					errs <- fmt.Sprintf("case %d: DecodeObject gave\n%v\nwant\n%v", i, o.Obj, want[i])
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// arenaCase is object i of the isolation test: InferenceServices and VirtualServices of
// sizes from a few nodes to several arena chunks, with names and values unique to i.
func arenaCase(i int) string {
	if i%2 == 0 {
		var labels []string
		for j := range i * 5 {
			labels = append(labels, fmt.Sprintf(`"l%d-%d":"v%d"`, i, j, j))
		}
		return fmt.Sprintf(`{"apiVersion":"serving.kserve.io/v1beta1","kind":"InferenceService","metadata":{"name":"m%d","namespace":"ns%d","labels":{%s}},`+
			`"spec":{"predictor":{"minReplicas":%d,"model":{"modelFormat":{"name":"fmt%d"},"storageUri":"s3://b/%d"}}}}`, i, i, strings.Join(labels, ","), i, i, i)
	}
	var routes []string
	for j := range i * 3 {
		routes = append(routes, fmt.Sprintf(`{"name":"r%d-%d","match":[{"uri":{"prefix":"/v%d/%d"}}],"route":[{"destination":{"host":"m%d-predictor.ns%d.svc.cluster.local","port":{"number":80}}}]}`, i, j, i, j, i, i))
	}
	return fmt.Sprintf(`{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"vs%d","namespace":"ns%d"},`+
		`"spec":{"hosts":["h%d.example.com"],"gateways":["istio-system/public"],"http":[%s]}}`, i, i, i, strings.Join(routes, ","))
}
