package walarchive

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/planrun/planrun/engine"
	"github.com/planrun/planrun/steps/internal/artifact"
)

// LoadConfig reads and validates a config file; errors name the file, the
// line and the key. Relative paths in it (dir, key files) are relative to
// the file's directory: archive_command runs in the data directory.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("wal archive config: %w", err)
	}
	return ParseConfig(path, data)
}

var configSpec = sync.OnceValues(func() (*engine.Spec, error) { return engine.SpecOf(reflect.TypeOf(Config{})) })

// ParseConfig is LoadConfig on data already read from path.
func ParseConfig(path string, data []byte) (*Config, error) {
	spec, err := configSpec()
	if err != nil {
		return nil, err // a bug in the Config tags
	}
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil && err != io.EOF {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.DocumentNode { // empty file
		root = &yaml.Node{Kind: yaml.MappingNode, Line: 1, Column: 1}
	}
	cfg := &Config{File: path}
	var probs engine.Problems
	for _, p := range spec.Decode(root, reflect.ValueOf(cfg).Elem(), false) {
		p.File = path
		// A config file has keys, not step params.
		p.Msg = strings.Replace(p.Msg, "param ", "key ", 1)
		probs = append(probs, p)
	}
	at := func(key, format string, args ...any) {
		line, col := root.Line, root.Column
		for i := 0; i+1 < len(root.Content); i += 2 {
			if root.Content[i].Value == key {
				line, col = root.Content[i].Line, root.Content[i].Column
			}
		}
		probs = append(probs, engine.Problem{File: path, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)})
	}
	if len(probs) == 0 {
		wo := cfg.writeOptions("")
		if err := wo.Validate(); err != nil {
			key, _, _ := strings.Cut(err.Error(), ":")
			at(key, "key %s", err)
		}
	}
	if len(probs) > 0 {
		return nil, probs
	}
	base := filepath.Dir(path)
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	abs(&cfg.Dir)
	abs(&cfg.IdentityFile)
	abs(&cfg.ReadOptions.PassphraseFile)
	if cfg.Encrypt != nil {
		abs(&cfg.Encrypt.RecipientsFile)
		abs(&cfg.Encrypt.PassphraseFile)
	}
	return cfg, nil
}

// writeOptions are the artifact options for a file at output.
func (c *Config) writeOptions(output string) artifact.WriteOptions {
	return artifact.WriteOptions{Output: output, Compress: c.Compress, Level: c.Level, Encrypt: c.Encrypt}
}

// ext is the file name suffix of what the config writes: compression,
// then .age when encrypted.
func (c *Config) ext() string {
	e := ".zst"
	switch c.Compress {
	case "gzip":
		e = ".gz"
	case "none":
		e = ".raw"
	}
	if c.Encrypt != nil {
		e += ".age"
	}
	return e
}

// WriteOptions are the artifact writer's options for a file at output in
// this archive (compression and encryption as configured): the
// pg_basebackup step writes base.tar with them.
func (c *Config) WriteOptions(output string) artifact.WriteOptions { return c.writeOptions(output) }

// Ext is the suffix of files this config writes (".zst", ".gz.age", …):
// base.tar + Ext() is a base backup's file name.
func (c *Config) Ext() string { return c.ext() }
