package decode

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// DecodePaths decodes files, directories and "-" (stdin, read from the
// given reader). Directories are walked recursively in lexical order and
// only .yaml, .yml and .json files in them are read; symlinks are followed,
// and a directory already walked is not walked again (no symlink loops).
// A file named explicitly is read whatever its extension. The first error
// fails the whole call.
func DecodePaths(paths []string, stdin io.Reader) (objs []Object, st Stats, err error) {
	defer guard("", &err)
	st.Ignored = map[string]int{}
	c := &collector{stats: &st}
	for _, p := range paths {
		if err := c.path(p, stdin); err != nil {
			return nil, Stats{}, err
		}
	}
	return c.objs, st, nil
}

// collector accumulates the results of several streams.
type collector struct {
	objs      []Object
	stats     *Stats
	usedStdin bool
	seenDirs  []os.FileInfo // directories walked, to break symlink loops
}

func (c *collector) path(p string, stdin io.Reader) error {
	if p == "-" {
		return c.stdin(stdin)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return fileError(p, err)
	}
	if fi.IsDir() {
		return c.dir(p, fi)
	}
	return c.file(p, fi)
}

func (c *collector) stdin(r io.Reader) error {
	if r == nil {
		return &Error{File: "-", Msg: "no standard input available"}
	}
	if c.usedStdin {
		return &Error{File: "-", Msg: `"-" (standard input) given more than once`}
	}
	c.usedStdin = true
	data, err := io.ReadAll(io.LimitReader(r, MaxStreamSize+1))
	if err != nil {
		return fileError("-", err)
	}
	return c.decode("-", data)
}

func (c *collector) file(p string, fi os.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return &Error{File: p, Msg: "not a regular file"}
	}
	if fi.Size() > MaxStreamSize {
		return &Error{File: p, Msg: fmt.Sprintf("file exceeds the maximum size of %d bytes", MaxStreamSize)}
	}
	f, err := os.Open(p)
	if err != nil {
		return fileError(p, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxStreamSize+1))
	if err != nil {
		return fileError(p, err)
	}
	return c.decode(p, data)
}

func (c *collector) decode(name string, data []byte) error {
	objs, st, err := Decode(name, data)
	if err != nil {
		return err
	}
	c.objs = append(c.objs, objs...)
	c.stats.Decoded += st.Decoded
	for k, v := range st.Ignored {
		c.stats.Ignored[k] += v
	}
	return nil
}

// dir walks a directory; os.ReadDir sorts entries by name, which makes the
// order deterministic.
func (c *collector) dir(p string, fi os.FileInfo) error {
	for _, seen := range c.seenDirs {
		if os.SameFile(seen, fi) {
			return nil
		}
	}
	c.seenDirs = append(c.seenDirs, fi)
	entries, err := os.ReadDir(p)
	if err != nil {
		return fileError(p, err)
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
			return fileError(full, err)
		}
		switch {
		case fi.IsDir():
			err = c.dir(full, fi)
		case manifestExt(e.Name()):
			err = c.file(full, fi)
		}
		if err != nil {
			return err
		}
	}
	return nil
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
