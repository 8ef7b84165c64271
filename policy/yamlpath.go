package policy

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"strconv"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
)

// countDocuments counts the non-empty YAML documents in data (-1 when it does not parse).
func countDocuments(data []byte) int {
	dec := yamlv3.NewDecoder(bytes.NewReader(data))
	n := 0
	for {
		var node yamlv3.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			return -1
		}
		if len(node.Content) > 0 {
			n++
		}
	}
}

// lineOfPath finds the line of a field path such as "rules[0].inject.jwksUri" in a YAML
// document, falling back to the deepest ancestor found (line 1 when nothing matches), so that
// errors about a decoded value point the user at the text they wrote.
func lineOfPath(data []byte, path string) int {
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal(data, &doc); err != nil || len(doc.Content) == 0 {
		return 1
	}
	node := doc.Content[0]
	line := node.Line
	for _, step := range splitPath(path) {
		next := childNode(node, step)
		if next == nil {
			break
		}
		node, line = next, next.Line
	}
	return line
}

// splitPath turns "a.b[2].c" into ["a","b","[2]","c"].
func splitPath(path string) []string {
	var steps []string
	for _, part := range strings.Split(path, ".") {
		for part != "" {
			i := strings.IndexByte(part, '[')
			switch {
			case i < 0:
				steps = append(steps, part)
				part = ""
			case i == 0:
				j := strings.IndexByte(part, ']')
				if j < 0 {
					return append(steps, part)
				}
				steps = append(steps, part[:j+1])
				part = part[j+1:]
			default:
				steps = append(steps, part[:i])
				part = part[i:]
			}
		}
	}
	return steps
}

func childNode(n *yamlv3.Node, step string) *yamlv3.Node {
	if strings.HasPrefix(step, "[") {
		idx, err := strconv.Atoi(strings.Trim(step, "[]"))
		if err != nil || n.Kind != yamlv3.SequenceNode || idx < 0 || idx >= len(n.Content) {
			return nil
		}
		return n.Content[idx]
	}
	if n.Kind != yamlv3.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == step {
			// Point at the key: that is the text a user wrote wrong.
			k := *n.Content[i+1]
			k.Line = n.Content[i].Line
			return &k
		}
	}
	return nil
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

// yamlErrorLine extracts the line number a YAML parser error mentions (1 if none).
func yamlErrorLine(err error) int {
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		if n, convErr := strconv.Atoi(m[1]); convErr == nil {
			return n
		}
	}
	return 1
}
