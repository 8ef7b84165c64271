package decode

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
)

// DecodePaths decodes files, directories and "-" (stdin, read from the
// given reader). Directories are walked recursively in lexical order and
// only .yaml, .yml and .json files in them are read; symlinks are followed,
// and a directory already walked is not walked again (no symlink loops).
// A file named explicitly is read whatever its extension. The first error
// fails the whole call.
//
// The walk lists the inputs first; they are then read and decoded on
// several goroutines (parsing YAML is the costliest step of `modelguard
// check` on a large tree), with the outcome of a sequential decode: objects
// in input order, and the error of the earliest input that fails.
func DecodePaths(paths []string, stdin io.Reader) (objs []Object, st Stats, err error) {
	defer guard("", &err)
	c := &collector{}
	for _, p := range paths {
		if !c.path(p, stdin) {
			break
		}
	}
	return c.decodeAll()
}

// collector lists the inputs of DecodePaths in order. The walk stops at its
// first error, which becomes the last input: nothing after it can matter.
type collector struct {
	inputs    []*input
	usedStdin bool
	seenDirs  []os.FileInfo // directories walked, to break symlink loops
}

// input is one stream to decode: a file to read, stdin's data, or the walk's
// error at that point.
type input struct {
	name string
	fi   os.FileInfo // a regular file to read; nil for stdin
	data []byte
	err  error
	// results
	objs  []Object
	stats Stats
}

func (c *collector) add(in *input) bool {
	c.inputs = append(c.inputs, in)
	return in.err == nil
}

func (c *collector) fail(err error) bool { return c.add(&input{err: err}) }

func (c *collector) path(p string, stdin io.Reader) bool {
	if p == "-" {
		return c.stdin(stdin)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return c.fail(fileError(p, err))
	}
	if fi.IsDir() {
		return c.dir(p, fi)
	}
	return c.add(&input{name: p, fi: fi})
}

func (c *collector) stdin(r io.Reader) bool {
	if r == nil {
		return c.fail(&Error{File: "-", Msg: "no standard input available"})
	}
	if c.usedStdin {
		return c.fail(&Error{File: "-", Msg: `"-" (standard input) given more than once`})
	}
	c.usedStdin = true
	data, err := io.ReadAll(io.LimitReader(r, MaxStreamSize+1))
	if err != nil {
		return c.fail(fileError("-", err))
	}
	return c.add(&input{name: "-", data: data})
}

// dir walks a directory; os.ReadDir sorts entries by name, which makes the
// order deterministic.
func (c *collector) dir(p string, fi os.FileInfo) bool {
	for _, seen := range c.seenDirs {
		if os.SameFile(seen, fi) {
			return true
		}
	}
	c.seenDirs = append(c.seenDirs, fi)
	entries, err := os.ReadDir(p)
	if err != nil {
		return c.fail(fileError(p, err))
	}
	for _, e := range entries {
		full := filepath.Join(p, e.Name())
		if !e.IsDir() && e.Type()&os.ModeSymlink == 0 && !manifestExt(e.Name()) {
			continue
		}
		fi, err := os.Stat(full) // follows symlinks
		if err != nil {
			if !manifestExt(e.Name()) {
				continue // a dangling link that would not be read anyway
			}
			return c.fail(fileError(full, err))
		}
		ok := true
		switch {
		case fi.IsDir():
			ok = c.dir(full, fi)
		case manifestExt(e.Name()):
			ok = c.add(&input{name: full, fi: fi})
		}
		if !ok {
			return false
		}
	}
	return true
}

// decodeAll reads and decodes the inputs on up to GOMAXPROCS goroutines, skipping those after
// the earliest failure, and merges the results in input order.
func (c *collector) decodeAll() ([]Object, Stats, error) {
	failed := newEarliestFailure()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(c.inputs)) {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(c.inputs)); i = next.Add(1) - 1 {
				if failed.after(i) {
					continue
				}
				in := c.inputs[i]
				if in.err == nil {
					in.objs, in.stats, in.err = in.decode()
				}
				if in.err != nil {
					failed.record(i)
				}
			}
		})
	}
	wg.Wait()
	st := Stats{Ignored: map[string]int{}}
	var objs []Object
	for _, in := range c.inputs {
		if in.err != nil {
			return nil, Stats{}, in.err
		}
		objs = append(objs, in.objs...)
		st.Decoded += in.stats.Decoded
		for k, v := range in.stats.Ignored {
			st.Ignored[k] += v
		}
	}
	return objs, st, nil
}

// decode reads the input (a file) if needed and decodes it; the data is not kept.
func (in *input) decode() ([]Object, Stats, error) {
	data := in.data
	in.data = nil
	if in.fi != nil {
		var err error
		if data, err = readFile(in.name, in.fi); err != nil {
			return nil, Stats{}, err
		}
	}
	return Decode(in.name, data)
}

func readFile(p string, fi os.FileInfo) ([]byte, error) {
	if !fi.Mode().IsRegular() {
		return nil, &Error{File: p, Msg: "not a regular file"}
	}
	if fi.Size() > MaxStreamSize {
		return nil, &Error{File: p, Msg: fmt.Sprintf("file exceeds the maximum size of %d bytes", MaxStreamSize)}
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fileError(p, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxStreamSize+1))
	if err != nil {
		return nil, fileError(p, err)
	}
	return data, nil
}

func manifestExt(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

func fileError(name string, err error) *Error {
	msg := err.Error()
	if pe, ok := errors.AsType[*os.PathError](err); ok {
		msg = pe.Err.Error() // the path is already in File
	}
	return &Error{File: name, Msg: msg, Err: err}
}
