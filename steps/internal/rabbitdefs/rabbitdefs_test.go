package rabbitdefs

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

const defs = `{"rabbit_version":"3.13.7","rabbitmq_version":"3.13.7","product_name":"RabbitMQ",
 "users":[{"name":"admin","tags":["administrator"]},{"name":"app","tags":[]}],
 "vhosts":[{"name":"/"}],"permissions":[{"user":"admin","vhost":"/"}],"topic_permissions":[],
 "parameters":[],"global_parameters":[{"name":"cluster_name","value":"r@h"}],
 "policies":[],
 "queues":[{"name":"q1","vhost":"/","arguments":{"x-max-length":1000,"nested":[1,[2,{"a":[]}]]}},{"name":"q2"},{"name":"q3"}],
 "exchanges":[{"name":"ex","type":"topic"}],
 "bindings":[{"source":"ex","destination":"q1"},{"source":"ex","destination":"q2"}],
 "future_key":{"queues":[1,2,3]}}`

func TestCount(t *testing.T) {
	info, err := Count(strings.NewReader(defs))
	if err != nil {
		t.Fatal(err)
	}
	got := info.Counts
	if info.Version != "3.13.7" {
		t.Errorf("version %q", info.Version)
	}
	want := map[string]int64{"users": 2, "vhosts": 1, "policies": 0, "queues": 3, "exchanges": 1, "bindings": 2}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("counts %v, want %v", got, want)
	}
	// Elements that are not objects count too.
	if info, err := Count(strings.NewReader(`{"rabbit_version":"3","queues":["a",[1],2,null,{"x":1}]}`)); err != nil || info.Counts["queues"] != 5 {
		t.Fatalf("mixed list: %v %v", info, err)
	}
	// A vhost export has no users or vhosts: no key, not a zero.
	info, err = Count(strings.NewReader(`{"rabbit_version":"3.13.7","queues":[{"name":"a"}],"exchanges":[],"bindings":[],"policies":[],"parameters":[]}`))
	if got = info.Counts; err != nil || !reflect.DeepEqual(got, map[string]int64{"queues": 1, "exchanges": 0, "bindings": 0, "policies": 0}) {
		t.Fatalf("vhost export: %v %v", got, err)
	}
}

func TestCountRejects(t *testing.T) {
	for body, want := range map[string]error{
		`[1,2]`:                              ErrNotDefinitions,
		`{"status":"ok","queues":[]}`:        ErrNotDefinitions,
		`{"queues":[],"exchanges":[]}`:       ErrNotDefinitions, // no version
		`{"rabbit_version":"3","queues":[`:   io.ErrUnexpectedEOF,
		`{"rabbit_version":"3"} {}`:          nil, // trailing document: error, checked below
		`{"rabbit_version":"3","queues":{}}`: nil,
	} {
		_, err := Count(strings.NewReader(body))
		if err == nil || want != nil && !errors.Is(err, want) {
			t.Errorf("%s: err = %v, want %v", body, err, want)
		}
	}
}

// The counter stops reading a foreign document after its first key, so a
// big body that is not definitions costs nothing.
func TestCounterStopsEarly(t *testing.T) {
	c := NewCounter()
	io.WriteString(c, `{"items":[`)
	for i := 0; i < 10000; i++ {
		if _, err := io.WriteString(c, `{"x":"`+strings.Repeat("y", 100)+`"},`); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Result(); !errors.Is(err, ErrNotDefinitions) {
		t.Fatalf("err = %v", err)
	}
	c = NewCounter()
	for _, chunk := range strings.SplitAfter(defs, ",") {
		io.WriteString(c, chunk)
	}
	if got, err := c.Result(); err != nil || got.Counts["queues"] != 3 {
		t.Fatalf("counter: %v %v", got, err)
	}
}

func TestObjectsFound(t *testing.T) {
	want, err := Objects(strings.NewReader(defs))
	if err != nil {
		t.Fatal(err)
	}
	// The broker lists the same binding with its arguments in another key
	// order, lacks q3, and has an extra queue of its own.
	have, err := Objects(strings.NewReader(`{"rabbitmq_version":"3.13.7",
	 "queues":[{"name":"q1","vhost":"/","durable":true},{"name":"q2"},{"name":"other"}],
	 "bindings":[{"source":"ex","destination":"q1"},{"destination":"q2","source":"ex"}],
	 "users":[{"name":"admin"},{"name":"app"}],"vhosts":[{"name":"/"}],"policies":[],"exchanges":[{"name":"ex"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	got := Found(want, have)
	exp := map[string]int64{"users": 2, "vhosts": 1, "policies": 0, "queues": 2, "exchanges": 1, "bindings": 2}
	if !reflect.DeepEqual(got, exp) {
		t.Fatalf("found %v, want %v", got, exp)
	}
	if _, err := Objects(strings.NewReader(`{"queues":[]}`)); !errors.Is(err, ErrNotDefinitions) {
		t.Fatalf("err = %v", err)
	}
}

// BenchmarkCount measures counting a 10,000-queue export (≈2 MB).
func BenchmarkCount(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"rabbit_version":"3.13.7","queues":[`)
	for i := 0; i < 10000; i++ {
		if i > 0 {
			sb.WriteString(",")
		}
		sb.WriteString(`{"name":"queue-` + strings.Repeat("x", 40) + `","vhost":"/","durable":true,"auto_delete":false,"arguments":{"x-queue-type":"quorum","x-max-length":100000}}`)
	}
	sb.WriteString(`],"exchanges":[],"bindings":[]}`)
	doc := sb.String()
	b.SetBytes(int64(len(doc)))
	for i := 0; i < b.N; i++ {
		if info, err := Count(strings.NewReader(doc)); err != nil || info.Counts["queues"] != 10000 {
			b.Fatal(info, err)
		}
	}
}
