// Package mongoarchive reads the mongodump --archive format as it streams
// past, to measure what an archive holds (documents per namespace) without
// keeping it. The format is mongo-tools' common/archive (spec.md there):
//
//	magic number 0x8199e26d (little-endian)
//	prelude: header doc, one metadata doc per collection, terminator
//	blocks:  namespace header {db, collection, EOF: false, CRC: 0},
//	         documents..., terminator
//	         or an EOF header {db, collection, EOF: true, CRC}, terminator
//
// where terminator is 0xffffffff. Headers are BSON read with the Go
// driver's bson/bsoncore; of a document only its length is needed. The
// per-namespace CRC is not recomputed: at ~5x the cost of the framing it
// would make the parse the slowest stage of a dump, and mongorestore checks
// it on every restore anyway.
package mongoarchive

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// MagicNumber starts every mongodump archive.
const MagicNumber uint32 = 0x8199e26d

// MaxBSONSize is the largest document mongo-tools' archive parser accepts
// (its db.MaxBSONSize); anything larger mongorestore could not read either.
const MaxBSONSize = 16 * 1024 * 1024

const terminator = -1 // 0xffffffff read as a BSON int32 length

// Header is the archive's prelude header.
type Header struct {
	FormatVersion string `bson:"version"`
	ServerVersion string `bson:"server_version"`
	ToolVersion   string `bson:"tool_version"`
}

// Collection is one prelude metadata entry.
type Collection struct {
	DB         string `bson:"db"`
	Collection string `bson:"collection"`
	Type       string `bson:"type"` // "collection" (or "" from old tools), "view", "timeseries"
}

// namespaceHeader starts a block (its CRC field is not needed).
type namespaceHeader struct {
	DB         string `bson:"db"`
	Collection string `bson:"collection"`
	EOF        bool   `bson:"EOF"`
}

// Summary is what a complete archive holds.
type Summary struct {
	Header      Header
	Collections []Collection
	// Documents counts the documents of every namespace ("db.collection")
	// whose data stream the archive closes with an EOF header, also 0.
	Documents map[string]int64
	// Oplog counts the entries of the oplog stream (mongodump --oplog).
	Oplog int64
	// DocumentBytes is the size of all documents.
	DocumentBytes int64
}

// Total is the number of documents over all namespaces (oplog excluded).
func (s *Summary) Total() int64 {
	var n int64
	for _, v := range s.Documents {
		n += v
	}
	return n
}

// Namespaces returns the namespaces with data streams, sorted.
func (s *Summary) Namespaces() []string {
	out := make([]string, 0, len(s.Documents))
	for k := range s.Documents {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

type nsState struct {
	docs int64
	done bool
}

type parser struct {
	r   *bufio.Reader
	buf []byte
	off int64 // bytes consumed, for error messages
}

// Parse reads a whole archive from r and checks its structure: every
// block well formed, every namespace closed by an EOF header, every
// collection of the prelude present. A truncated archive, or one whose
// framing is damaged, is an error.
func Parse(r io.Reader) (*Summary, error) {
	p := &parser{r: bufio.NewReaderSize(r, 64<<10)}
	var magic [4]byte
	if _, err := io.ReadFull(p.r, magic[:]); err != nil {
		return nil, fmt.Errorf("mongodump archive: reading magic number: %w", unexpected(err))
	}
	p.off = 4
	if got := binary.LittleEndian.Uint32(magic[:]); got != MagicNumber {
		return nil, fmt.Errorf("not a mongodump archive (magic number %#08x, want %#08x)", got, MagicNumber)
	}
	s := &Summary{Documents: map[string]int64{}}

	// Prelude: header, metadata documents, terminator.
	doc, err := p.next()
	if err != nil {
		return nil, p.fail("prelude header", err)
	}
	if doc == nil {
		return nil, p.fail("prelude", errors.New("no header before the terminator"))
	}
	if err := unmarshal(doc, &s.Header); err != nil {
		return nil, p.fail("prelude header", err)
	}
	for {
		doc, err := p.next()
		if err != nil {
			return nil, p.fail("prelude metadata", err)
		}
		if doc == nil {
			break
		}
		var c Collection
		if err := unmarshal(doc, &c); err != nil {
			return nil, p.fail("prelude metadata", err)
		}
		s.Collections = append(s.Collections, c)
	}

	// Namespace blocks until a clean end of input between blocks.
	ns := map[string]*nsState{}
	for {
		doc, err := p.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, p.fail("block header", err)
		}
		if doc == nil {
			return nil, p.fail("block header", errors.New("terminator without a namespace header"))
		}
		var h namespaceHeader
		if err := unmarshal(doc, &h); err != nil {
			return nil, p.fail("namespace header", err)
		}
		name := h.DB + "." + h.Collection
		st := ns[name]
		if st == nil {
			st = &nsState{}
			ns[name] = st
		}
		if st.done {
			return nil, p.fail(name, errors.New("block after the namespace's EOF header"))
		}
		if h.EOF {
			size, err := p.length()
			if err != nil {
				return nil, p.fail(name+" EOF block", err)
			}
			if size != 0 {
				return nil, p.fail(name, errors.New("documents after the EOF header"))
			}
			st.done = true
			if h.DB == "" {
				s.Oplog = st.docs
			} else {
				s.Documents[name] = st.docs
			}
			continue
		}
		for {
			size, err := p.skip()
			if err != nil {
				return nil, p.fail(name+" documents", err)
			}
			if size == 0 {
				break
			}
			st.docs++
			s.DocumentBytes += int64(size)
		}
	}
	for name, st := range ns {
		if !st.done {
			return nil, fmt.Errorf("mongodump archive ends before namespace %s is complete (truncated?)", name)
		}
	}
	for _, c := range s.Collections {
		if c.Type != "" && c.Type != "collection" {
			continue // views have no data; timeseries data lives under system.buckets.*
		}
		if name := c.DB + "." + c.Collection; ns[name] == nil {
			return nil, fmt.Errorf("mongodump archive ends before collection %s (listed in its prelude) appears (truncated?)", name)
		}
	}
	return s, nil
}

// length reads a document's length, or the terminator (0). It returns
// io.EOF only when the input ends exactly before it.
func (p *parser) length() (int, error) {
	var lb [4]byte
	if n, err := io.ReadFull(p.r, lb[:]); err != nil {
		if err == io.EOF && n == 0 {
			return 0, io.EOF
		}
		return 0, unexpected(err)
	}
	p.off += 4
	// ReadLength reports a negative length, such as the terminator, as !ok.
	size, _, ok := bsoncore.ReadLength(lb[:])
	if size == terminator {
		return 0, nil
	}
	if !ok || size < 5 || size > MaxBSONSize {
		return 0, fmt.Errorf("%d is neither a BSON document length nor a terminator", size)
	}
	return int(size), nil
}

// next reads one whole BSON document, or the terminator (nil, nil).
func (p *parser) next() ([]byte, error) {
	size, err := p.length()
	if err != nil || size == 0 {
		return nil, err
	}
	if cap(p.buf) < size {
		p.buf = make([]byte, size)
	}
	b := p.buf[:size]
	binary.LittleEndian.PutUint32(b, uint32(size))
	if _, err := io.ReadFull(p.r, b[4:]); err != nil {
		return nil, unexpected(err)
	}
	p.off += int64(size - 4)
	if b[size-1] != 0 {
		return nil, fmt.Errorf("BSON document of %d bytes does not end with a null byte", size)
	}
	return b, nil
}

// skip passes over one document without copying it and returns its size,
// or 0 for the terminator.
func (p *parser) skip() (int, error) {
	size, err := p.length()
	if err != nil || size == 0 {
		return 0, err
	}
	if _, err := p.r.Discard(size - 5); err != nil {
		return 0, unexpected(err)
	}
	last, err := p.r.ReadByte()
	if err != nil {
		return 0, unexpected(err)
	}
	p.off += int64(size - 4)
	if last != 0 {
		return 0, fmt.Errorf("BSON document of %d bytes does not end with a null byte", size)
	}
	return size, nil
}

func (p *parser) fail(what string, err error) error {
	return fmt.Errorf("mongodump archive: %s at byte %d: %w", what, p.off, unexpected(err))
}

// unexpected turns an end of input inside a structure into a clear error.
func unexpected(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errors.New("unexpected end of archive (truncated?)")
	}
	return err
}

func unmarshal(doc []byte, v any) error {
	if err := bsoncore.Document(doc).Validate(); err != nil {
		return fmt.Errorf("invalid BSON: %w", err)
	}
	return bson.Unmarshal(doc, v)
}
