package decode

import (
	"encoding"
	"encoding/base64"
	"encoding/json"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"

	yaml "go.yaml.in/yaml/v3"
)

// The Go-type walker checks a YAML tree against a Kubernetes Go type the way
// sigs.k8s.io/json's strict, case-sensitive decoder would, but reports the
// YAML line and the full path (with list indices) of the first problem.
// sigs.k8s.io/json still does the real decoding afterwards; the walker only
// exists so errors are precise.

// goType is the cached, decoder-relevant shape of a Go type.
type goType struct {
	t           reflect.Type
	kind        reflect.Kind
	unmarshaler bool               // *T implements json.Unmarshaler: validated by calling it
	textKey     bool               // map key type implements encoding.TextUnmarshaler
	elem        *goType            // pointer, slice, array and map element
	key         reflect.Type       // map key
	fields      map[string]*goType // struct fields by JSON name
	names       []string           // struct field names, for suggestions
}

var (
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()

	goTypesMu sync.Mutex
	goTypes   sync.Map // reflect.Type -> *goType
)

// goTypeOf returns the cached shape of t, building it on first use.
func goTypeOf(t reflect.Type) *goType {
	if gt, ok := goTypes.Load(t); ok {
		return gt.(*goType)
	}
	goTypesMu.Lock()
	defer goTypesMu.Unlock()
	building := map[reflect.Type]*goType{}
	gt := buildGoType(t, building)
	for bt, g := range building {
		goTypes.LoadOrStore(bt, g)
	}
	return gt
}

// buildGoType fills the shape of t; building breaks cycles in recursive
// types (e.g. JSONSchemaProps).
func buildGoType(t reflect.Type, building map[reflect.Type]*goType) *goType {
	if gt, ok := goTypes.Load(t); ok {
		return gt.(*goType)
	}
	if gt, ok := building[t]; ok {
		return gt
	}
	gt := &goType{t: t, kind: t.Kind()}
	building[t] = gt
	if t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(jsonUnmarshalerType) {
		gt.unmarshaler = true
		return gt
	}
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		gt.elem = buildGoType(t.Elem(), building)
	case reflect.Map:
		gt.key = t.Key()
		gt.textKey = reflect.PointerTo(t.Key()).Implements(textUnmarshalerType)
		gt.elem = buildGoType(t.Elem(), building)
	case reflect.Struct:
		gt.fields = map[string]*goType{}
		for name, f := range structFields(t) {
			gt.fields[name] = buildGoType(f, building)
			gt.names = append(gt.names, name)
		}
		sort.Strings(gt.names)
	}
	return gt
}

// fieldCand is a candidate JSON field while resolving embedded structs.
type fieldCand struct {
	t      reflect.Type
	depth  int
	tagged bool
	dup    bool
}

// structFields resolves the JSON field names of t following encoding/json's
// rules: untagged embedded structs are inlined, the shallowest field wins,
// a tagged field beats an untagged one at the same depth, and remaining ties
// make the name unusable.
func structFields(t reflect.Type) map[string]reflect.Type {
	cands := map[string]*fieldCand{}
	collectFields(t, 0, cands, map[reflect.Type]bool{})
	out := make(map[string]reflect.Type, len(cands))
	for name, c := range cands {
		if !c.dup {
			out[name] = c.t
		}
	}
	return out
}

func collectFields(t reflect.Type, depth int, cands map[string]*fieldCand, seen map[reflect.Type]bool) {
	if seen[t] {
		return
	}
	seen[t] = true
	defer delete(seen, t)
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		ft := sf.Type
		if sf.Anonymous {
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if !sf.IsExported() && ft.Kind() != reflect.Struct {
				continue
			}
			if name == "" && ft.Kind() == reflect.Struct {
				collectFields(ft, depth+1, cands, seen)
				continue
			}
		} else if !sf.IsExported() {
			continue
		}
		tagged := name != ""
		if !tagged {
			name = sf.Name
		}
		addCand(cands, name, &fieldCand{t: sf.Type, depth: depth, tagged: tagged})
	}
}

func addCand(cands map[string]*fieldCand, name string, c *fieldCand) {
	old, ok := cands[name]
	switch {
	case !ok || c.depth < old.depth:
		cands[name] = c
	case c.depth > old.depth:
	case c.tagged && !old.tagged:
		cands[name] = c
	case c.tagged == old.tagged:
		old.dup = true
	}
}

// walkGo checks n against gt.
func (w *walker) walkGo(n *yaml.Node, gt *goType) *Error {
	if isNull(n) {
		return nil // JSON null is accepted for every Go type
	}
	for gt.kind == reflect.Pointer {
		gt = gt.elem
	}
	if gt.unmarshaler {
		return w.callUnmarshaler(n, gt)
	}
	switch gt.kind {
	case reflect.Struct:
		return w.walkStruct(n, gt)
	case reflect.Map:
		return w.walkMap(n, gt)
	case reflect.Slice, reflect.Array:
		return w.walkList(n, gt)
	case reflect.Interface:
		if gt.t.NumMethod() > 0 {
			return w.fail(n, "cannot decode into %s", gt.t)
		}
		return w.checkGeneric(n)
	}
	return w.walkGoScalar(n, gt)
}

func (w *walker) walkStruct(n *yaml.Node, gt *goType) *Error {
	if n.Kind != yaml.MappingNode {
		return w.fail(n, "expected a mapping, got %s", describe(n))
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		w.path.pushKey(k.Value)
		ft, ok := gt.fields[k.Value]
		if !ok {
			return w.fail(k, "unknown field %q%s", clip(k.Value), suggest(k.Value, gt.names))
		}
		if err := w.walkGo(v, ft); err != nil {
			return err
		}
		w.path.pop()
	}
	return nil
}

func (w *walker) walkMap(n *yaml.Node, gt *goType) *Error {
	if n.Kind != yaml.MappingNode {
		return w.fail(n, "expected a mapping, got %s", describe(n))
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		w.path.pushKey(k.Value)
		if err := w.checkGoMapKey(k, gt); err != nil {
			return err
		}
		if err := w.walkGo(v, gt.elem); err != nil {
			return err
		}
		w.path.pop()
	}
	return nil
}

// checkGoMapKey mirrors encoding/json's map key rules: string kinds take any
// key, TextUnmarshaler keys must parse, integer kinds must be decimal.
func (w *walker) checkGoMapKey(k *yaml.Node, gt *goType) *Error {
	if gt.key.Kind() == reflect.String && !gt.textKey {
		return nil
	}
	var err error
	switch {
	case gt.textKey:
		err = reflect.New(gt.key).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(k.Value))
	case gt.key.Kind() >= reflect.Int && gt.key.Kind() <= reflect.Int64:
		_, err = strconv.ParseInt(k.Value, 10, gt.key.Bits())
	case gt.key.Kind() >= reflect.Uint && gt.key.Kind() <= reflect.Uintptr:
		_, err = strconv.ParseUint(k.Value, 10, gt.key.Bits())
	default:
		return w.fail(k, "unsupported map key type %s", gt.key)
	}
	if err != nil {
		return w.fail(k, "invalid map key %q", clip(k.Value))
	}
	return nil
}

func (w *walker) walkList(n *yaml.Node, gt *goType) *Error {
	if gt.kind == reflect.Slice && gt.elem.kind == reflect.Uint8 && !gt.elem.unmarshaler {
		if !isString(n) {
			return w.fail(n, "expected a base64 string, got %s", describe(n))
		}
		if _, err := base64.StdEncoding.DecodeString(n.Value); err != nil {
			return w.fail(n, "invalid base64 data: %v", err)
		}
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return w.fail(n, "expected a list, got %s", describe(n))
	}
	for i, c := range n.Content {
		w.path.pushIdx(i)
		if err := w.walkGo(c, gt.elem); err != nil {
			return err
		}
		w.path.pop()
	}
	return nil
}

func (w *walker) walkGoScalar(n *yaml.Node, gt *goType) *Error {
	switch k := gt.kind; {
	case k == reflect.String:
		if !isString(n) {
			return w.fail(n, "expected a string, got %s", describe(n))
		}
	case k == reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != tagBool {
			return w.fail(n, "expected a boolean, got %s", describe(n))
		}
	case k >= reflect.Int && k <= reflect.Int64:
		if n.Kind != yaml.ScalarNode || n.Tag != tagInt {
			return w.fail(n, "expected an integer, got %s", describe(n))
		}
		if _, err := strconv.ParseInt(mustInt(n), 10, gt.t.Bits()); err != nil {
			return w.fail(n, "integer %s is out of range for %s", clip(n.Value), gt.t)
		}
	case k >= reflect.Uint && k <= reflect.Uintptr:
		if n.Kind != yaml.ScalarNode || n.Tag != tagInt {
			return w.fail(n, "expected an integer, got %s", describe(n))
		}
		if _, err := strconv.ParseUint(mustInt(n), 10, gt.t.Bits()); err != nil {
			return w.fail(n, "integer %s is out of range for %s", clip(n.Value), gt.t)
		}
	case k == reflect.Float32 || k == reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.Tag != tagInt && n.Tag != tagFloat) {
			return w.fail(n, "expected a number, got %s", describe(n))
		}
		text, special := numberText(n)
		f, err := strconv.ParseFloat(text, gt.t.Bits())
		if special || err != nil || math.IsInf(f, 0) {
			return w.fail(n, "number %s is out of range for %s", clip(n.Value), gt.t)
		}
	default:
		return w.fail(n, "cannot decode into %s", gt.t)
	}
	return nil
}

func mustInt(n *yaml.Node) string {
	t, _ := intText(n.Value)
	return t
}

// callUnmarshaler validates a value of a type with its own UnmarshalJSON
// (Quantity, Time, IntOrString, FieldsV1, ...) by running it on the value.
func (w *walker) callUnmarshaler(n *yaml.Node, gt *goType) (e *Error) {
	defer func() {
		if r := recover(); r != nil {
			e = w.fail(n, "invalid value for %s", gt.t)
		}
	}()
	if err := w.checkGeneric(n); err != nil {
		return err
	}
	u := reflect.New(gt.t).Interface().(json.Unmarshaler)
	if err := u.UnmarshalJSON(appendJSON(nil, n)); err != nil {
		return w.fail(n, "invalid value for %s: %v", gt.t, err)
	}
	return nil
}

// suggest proposes the closest known name for a misspelt field.
func suggest(name string, names []string) string {
	if len(name) > maxShown {
		return "" // also keeps the quadratic distance cheap
	}
	best, bestDist := "", len(name)/3+2
	for _, c := range names {
		if d := editDistance(strings.ToLower(name), strings.ToLower(c)); d < bestDist {
			best, bestDist = c, d
		}
	}
	if best == "" {
		return ""
	}
	return " (did you mean " + strconv.Quote(best) + "?)"
}

// editDistance is the Levenshtein distance; only used on error paths.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
