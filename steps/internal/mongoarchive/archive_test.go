package mongoarchive

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc64"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// builder writes archives the way mongo-tools' Prelude.Write and
// Multiplexer do (CRCs included), so the parser is tested against the
// documented layout.
type builder struct {
	t   testing.TB
	buf bytes.Buffer
	cur string
}

var term = []byte{0xff, 0xff, 0xff, 0xff}

func newBuilder(t testing.TB, colls ...[2]string) *builder {
	b := &builder{t: t}
	binary.Write(&b.buf, binary.LittleEndian, MagicNumber)
	b.doc(bson.D{{Key: "concurrent_collections", Value: int32(4)}, {Key: "version", Value: "0.1"},
		{Key: "server_version", Value: "7.0.14"}, {Key: "tool_version", Value: "100.10.0"}})
	for _, c := range colls {
		b.doc(bson.D{{Key: "db", Value: c[0]}, {Key: "collection", Value: c[1]},
			{Key: "metadata", Value: `{"indexes":[]}`}, {Key: "size", Value: int32(0)}, {Key: "type", Value: "collection"}})
	}
	b.buf.Write(term)
	return b
}

func (b *builder) doc(v any) []byte {
	raw, err := bson.Marshal(v)
	if err != nil {
		b.t.Fatal(err)
	}
	b.buf.Write(raw)
	return raw
}

// header writes a namespace header as MarshalBSON in mongo-tools does.
func (b *builder) header(db, coll string, eof bool, crc uint64) {
	b.buf.Write(bsoncore.NewDocumentBuilder().AppendString("db", db).AppendString("collection", coll).
		AppendBoolean("EOF", eof).AppendInt64("CRC", int64(crc)).Build())
}

func (b *builder) docs(db, coll string, docs ...any) {
	ns := db + "." + coll
	if b.cur != ns {
		if b.cur != "" {
			b.buf.Write(term)
		}
		b.header(db, coll, false, 0)
		b.cur = ns
	}
	for _, d := range docs {
		b.doc(d)
	}
}

func (b *builder) eof(db, coll string, crc uint64) {
	if b.cur != "" {
		b.buf.Write(term)
	}
	b.cur = ""
	b.header(db, coll, true, crc)
	b.buf.Write(term)
}

func doc(i int) bson.D {
	return bson.D{{Key: "_id", Value: i}, {Key: "name", Value: fmt.Sprintf("n-%d", i)}, {Key: "pad", Value: strings.Repeat("x", i%97)}}
}

func crcOf(t testing.TB, docs ...any) uint64 {
	h := crc64.New(crc64.MakeTable(crc64.ECMA))
	for _, d := range docs {
		raw, err := bson.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		h.Write(raw)
	}
	return h.Sum64()
}

// sample is an archive of app.users (3 documents in two segments,
// interleaved with app.orders), app.orders (2), app.empty (0) and an
// oplog of 1 entry.
func sample(t testing.TB) []byte { return sampleArchive(t, true) }

func sampleArchive(t testing.TB, oplog bool) []byte {
	b := newBuilder(t, [2]string{"app", "users"}, [2]string{"app", "orders"}, [2]string{"app", "empty"})
	b.docs("app", "users", doc(1), doc(2))
	b.docs("app", "orders", doc(10))
	b.docs("app", "users", doc(3))
	b.eof("app", "users", crcOf(t, doc(1), doc(2), doc(3)))
	b.docs("app", "orders", doc(11))
	b.eof("app", "empty", 0)
	b.eof("app", "orders", crcOf(t, doc(10), doc(11)))
	if !oplog {
		return b.buf.Bytes()
	}
	b.docs("", "oplog", bson.D{{Key: "op", Value: "n"}})
	b.eof("", "oplog", crcOf(t, bson.D{{Key: "op", Value: "n"}}))
	return b.buf.Bytes()
}

func TestParseCounts(t *testing.T) {
	s, err := Parse(bytes.NewReader(sample(t)))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"app.users": 3, "app.orders": 2, "app.empty": 0}
	if fmt.Sprint(s.Documents) != fmt.Sprint(want) || s.Oplog != 1 || s.Total() != 5 {
		t.Errorf("documents %v oplog %d, want %v and 1", s.Documents, s.Oplog, want)
	}
	if s.Header.ServerVersion != "7.0.14" || s.Header.ToolVersion != "100.10.0" || s.Header.FormatVersion != "0.1" || len(s.Collections) != 3 {
		t.Errorf("header %+v, collections %v", s.Header, s.Collections)
	}
}

// Every strict prefix of an archive is an error, never a smaller count.
// (Up to the last collection's EOF block: the oplog, which the prelude
// does not list, comes last, and a cut just before it is only caught by
// mongodump's exit status and the artifact's checksum.)
func TestParseEveryTruncationFails(t *testing.T) {
	full := sample(t)
	end := len(sampleArchive(t, false))
	if s, err := Parse(bytes.NewReader(full[:end])); err != nil || s.Oplog != 0 || s.Total() != 5 {
		t.Fatalf("archive cut before the oplog: %v, %v", s, err)
	}
	for n := 0; n < end; n++ {
		if s, err := Parse(bytes.NewReader(full[:n])); err == nil {
			t.Fatalf("prefix of %d/%d bytes parsed: %v", n, len(full), s.Documents)
		}
	}
}

func TestParseRejectsDamage(t *testing.T) {
	full := sample(t)
	// A document length off by one: the framing falls apart.
	pre := newBuilder(t, [2]string{"app", "users"}, [2]string{"app", "orders"}, [2]string{"app", "empty"}).buf.Len()
	first := pre + int(binary.LittleEndian.Uint32(full[pre:]))
	bad := bytes.Clone(full)
	binary.LittleEndian.PutUint32(bad[first:], binary.LittleEndian.Uint32(bad[first:])+1)
	if _, err := Parse(bytes.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "app.users documents") {
		t.Errorf("damaged length: %v", err)
	}
	if _, err := Parse(strings.NewReader("\x00\x00\x00\x00 not an archive")); err == nil || !strings.Contains(err.Error(), "not a mongodump archive") {
		t.Errorf("wrong magic: %v", err)
	}
	// Garbage appended after the last block.
	if _, err := Parse(bytes.NewReader(append(bytes.Clone(full), 1, 2, 3, 4, 5))); err == nil {
		t.Error("trailing garbage accepted")
	}
	// A collection of the prelude that never appears.
	b := newBuilder(t, [2]string{"app", "users"}, [2]string{"app", "lost"})
	b.docs("app", "users", doc(1))
	b.eof("app", "users", crcOf(t, doc(1)))
	if _, err := Parse(bytes.NewReader(b.buf.Bytes())); err == nil || !strings.Contains(err.Error(), "app.lost") {
		t.Errorf("missing collection: %v", err)
	}
}

// The tee passes the bytes through untouched whatever it is given, in any
// chunking, and parses them on the side.
func TestTee(t *testing.T) {
	full := sample(t)
	for _, input := range [][]byte{full, bytes.Repeat([]byte("garbage!"), 3*teeChunks*teeChunk/8)} {
		var dst bytes.Buffer
		tee := NewTee(&dst)
		rest := input
		for len(rest) > 0 {
			n := min(len(rest), 1+rand.IntN(3*teeChunk/2))
			if _, err := tee.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		s, err := tee.Finish()
		if !bytes.Equal(dst.Bytes(), input) {
			t.Fatalf("destination got %d bytes, want the %d written", dst.Len(), len(input))
		}
		if &input[0] == &full[0] {
			if err != nil || s.Documents["app.users"] != 3 {
				t.Errorf("archive through tee: %v %v", s, err)
			}
		} else if err == nil {
			t.Error("garbage through tee parsed")
		}
	}
}

func TestRenamer(t *testing.T) {
	for _, c := range []struct {
		from, to []string
		in, want string
	}{
		{[]string{"app.*"}, []string{"app_drill_1.*"}, "app.users", "app_drill_1.users"},
		{[]string{"app.*"}, []string{"app_drill_1.*"}, "other.users", "other.users"},
		{[]string{"$db$.$c$"}, []string{"$db$_x.$c$"}, "a.b.c", "a_x.b.c"},
		{[]string{"a.*", "a.special"}, []string{"x.*", "y.special"}, "a.special", "y.special"}, // last pair wins
		{[]string{`a.st\*r`}, []string{`b.st\*r`}, "a.st*r", "b.st*r"},
	} {
		r, err := NewRenamer(c.from, c.to)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Get(c.in); got != c.want {
			t.Errorf("%v→%v: %s became %s, want %s", c.from, c.to, c.in, got, c.want)
		}
		back, err := NewRenamer(c.to, c.from)
		if err != nil {
			t.Fatal(err)
		}
		if got := back.Get(c.want); got != c.in {
			t.Errorf("reverse %v→%v: %s became %s, want %s", c.to, c.from, c.want, got, c.in)
		}
	}
	if _, err := NewRenamer([]string{"a.*"}, []string{"b.c"}); err == nil {
		t.Error("unbalanced asterisks accepted")
	}
	if got := Escape(`we*rd\name`); got != `we\*rd\\name` {
		t.Errorf("Escape: %s", got)
	}
}

// BenchmarkTee measures the parse rate next to a discarding writer.
func BenchmarkTee(b *testing.B) {
	bl := newBuilder(b, [2]string{"app", "c"})
	var all []any
	for i := 0; i < 20000; i++ {
		d := bson.D{{Key: "_id", Value: i}, {Key: "body", Value: strings.Repeat("y", 200+i%300)}}
		all = append(all, d)
	}
	bl.docs("app", "c", all...)
	bl.eof("app", "c", crcOf(b, all...))
	data := bl.buf.Bytes()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for range b.N {
		tee := NewTee(io.Discard)
		for off := 0; off < len(data); off += 32 << 10 {
			tee.Write(data[off:min(len(data), off+32<<10)])
		}
		if s, err := tee.Finish(); err != nil || s.Documents["app.c"] != 20000 {
			b.Fatal(s, err)
		}
	}
}
