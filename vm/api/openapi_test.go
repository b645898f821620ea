package api

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The subset of OpenAPI 3.0 that openapi.yaml uses. Decoding is strict
// (KnownFields), so a misspelt key in the document fails the test.
type oaDoc struct {
	OpenAPI string `yaml:"openapi"`
	Info    struct {
		Title       string `yaml:"title"`
		Description string `yaml:"description"`
		License     struct {
			Name string `yaml:"name"`
			URL  string `yaml:"url"`
		} `yaml:"license"`
		Version string `yaml:"version"`
	} `yaml:"info"`
	Servers []struct {
		URL string `yaml:"url"`
	} `yaml:"servers"`
	Paths      map[string]map[string]*oaOperation `yaml:"paths"`
	Components struct {
		Responses map[string]*oaResponse `yaml:"responses"`
		Schemas   map[string]*oaSchema   `yaml:"schemas"`
	} `yaml:"components"`
}

type oaOperation struct {
	Summary     string              `yaml:"summary"`
	OperationID string              `yaml:"operationId"`
	RequestBody *oaRequestBody      `yaml:"requestBody"`
	Responses   map[int]*oaResponse `yaml:"responses"`
}

type oaRequestBody struct {
	Description string                `yaml:"description"`
	Required    bool                  `yaml:"required"`
	Content     map[string]*oaContent `yaml:"content"`
}

type oaResponse struct {
	Ref         string                `yaml:"$ref"`
	Description string                `yaml:"description"`
	Headers     map[string]*oaHeader  `yaml:"headers"`
	Content     map[string]*oaContent `yaml:"content"`
}

type oaHeader struct {
	Description string    `yaml:"description"`
	Schema      *oaSchema `yaml:"schema"`
}

type oaContent struct {
	Schema *oaSchema `yaml:"schema"`
}

type oaSchema struct {
	Ref         string               `yaml:"$ref"`
	Type        string               `yaml:"type"`
	Format      string               `yaml:"format"`
	Description string               `yaml:"description"`
	Required    []string             `yaml:"required"`
	Properties  map[string]*oaSchema `yaml:"properties"`
	Items       *oaSchema            `yaml:"items"`
	Enum        []string             `yaml:"enum"`
	Minimum     *int                 `yaml:"minimum"`
	Default     yaml.Node            `yaml:"default"`
}

func loadOpenAPI(t testing.TB) *oaDoc {
	t.Helper()
	b, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var d oaDoc
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(d.OpenAPI, "3.0") {
		t.Fatalf("openapi.yaml: version %q, want 3.0.x", d.OpenAPI)
	}
	if len(d.Servers) != 1 || d.Servers[0].URL+"/" != "http://localhost"+Prefix {
		t.Fatalf("openapi.yaml: servers %+v, want http://localhost%s", d.Servers, strings.TrimSuffix(Prefix, "/"))
	}
	return &d
}

// fullPath turns a document path into a request path.
func fullPath(p string) string { return strings.TrimSuffix(Prefix, "/") + p }

// operation finds the document's operation for a request.
func (d *oaDoc) operation(method, path string) *oaOperation {
	ops := d.Paths[strings.TrimPrefix(path, strings.TrimSuffix(Prefix, "/"))]
	return ops[strings.ToLower(method)]
}

// documents reports whether the document lists status for method and path.
func (d *oaDoc) documents(method, path string, status int) bool {
	op := d.operation(method, path)
	return op != nil && op.Responses[status] != nil
}

// resolve follows a schema $ref within the document.
func (d *oaDoc) resolve(t *testing.T, s *oaSchema) *oaSchema {
	t.Helper()
	for s != nil && s.Ref != "" {
		name, ok := strings.CutPrefix(s.Ref, "#/components/schemas/")
		if !ok || d.Components.Schemas[name] == nil {
			t.Fatalf("unresolved $ref %q", s.Ref)
		}
		s = d.Components.Schemas[name]
	}
	return s
}

func (d *oaDoc) resolveResponse(t *testing.T, r *oaResponse) *oaResponse {
	t.Helper()
	if r.Ref == "" {
		return r
	}
	name, ok := strings.CutPrefix(r.Ref, "#/components/responses/")
	if !ok || d.Components.Responses[name] == nil {
		t.Fatalf("unresolved response $ref %q", r.Ref)
	}
	return d.Components.Responses[name]
}

// TestOpenAPIRoutesBothWays: every operation in the document is served, and
// every route the server has is in the document.
func TestOpenAPIRoutesBothWays(t *testing.T) {
	d := loadOpenAPI(t)
	s := NewServer(newFake(), ServerOptions{})
	var documented []Route
	for p, ops := range d.Paths {
		for m := range ops {
			documented = append(documented, Route{Method: strings.ToUpper(m), Path: fullPath(p)})
		}
	}
	for _, r := range documented {
		var body *strings.Reader
		if r.Method == http.MethodPut {
			body = strings.NewReader(`{}`)
		} else {
			body = strings.NewReader("")
		}
		req := httptest.NewRequest(r.Method, r.Path, body)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code == http.StatusNotFound || rec.Code == http.StatusMethodNotAllowed {
			t.Errorf("documented %s %s is not served: status %d %s", r.Method, r.Path, rec.Code, rec.Body)
		}
	}
	for _, r := range s.Routes() {
		if !slices.Contains(documented, r) {
			t.Errorf("served %s %s is not in openapi.yaml", r.Method, r.Path)
		}
	}
	if len(s.Routes()) != len(documented) {
		t.Errorf("server has %d routes, the document %d", len(s.Routes()), len(documented))
	}
}

// TestOpenAPIRequiredHasNoDefault: a required property with a default is a
// contradiction (Cloud Hypervisor removed such defaults in v40); every
// required name must also be a property.
func TestOpenAPIRequiredHasNoDefault(t *testing.T) {
	d := loadOpenAPI(t)
	var walk func(where string, s *oaSchema)
	walk = func(where string, s *oaSchema) {
		if s == nil {
			return
		}
		for _, name := range s.Required {
			p, ok := s.Properties[name]
			if !ok {
				t.Errorf("%s: required %q is not a property", where, name)
				continue
			}
			if p.Default.Kind != 0 {
				t.Errorf("%s: required property %q has a default (%s)", where, name, p.Default.Value)
			}
		}
		for name, p := range s.Properties {
			walk(where+"."+name, p)
		}
		walk(where+"[]", s.Items)
	}
	checked := 0
	for name, s := range d.Components.Schemas {
		walk(name, s)
		checked++
	}
	for p, ops := range d.Paths {
		for m, op := range ops {
			if op.RequestBody != nil {
				for _, c := range op.RequestBody.Content {
					walk(m+" "+p+" request", c.Schema)
				}
			}
			for code, r := range op.Responses {
				for _, c := range r.Content {
					walk(m+" "+p+" response "+http.StatusText(code), c.Schema)
				}
			}
		}
	}
	if checked < 5 {
		t.Errorf("only %d schemas checked", checked)
	}
}

// bodyTypes names the Go type of each request and success response body.
var bodyTypes = map[Route]struct{ req, resp reflect.Type }{
	{"GET", "/api/v1/vmm.ping"}:           {resp: reflect.TypeFor[PingResponse]()},
	{"GET", "/api/v1/vm.info"}:            {resp: reflect.TypeFor[VMInfo]()},
	{"PUT", "/api/v1/vm.snapshot"}:        {req: reflect.TypeFor[SnapshotConfig]()},
	{"PUT", "/api/v1/vm.snapshot.stream"}: {req: reflect.TypeFor[StreamConfig]()},
	{"PUT", "/api/v1/vm.restore"}:         {req: reflect.TypeFor[RestoreConfig]()},
	{"PUT", "/api/v1/vm.pause"}:           {},
	{"PUT", "/api/v1/vm.resume"}:          {},
	{"PUT", "/api/v1/vmm.shutdown"}:       {},
}

// TestOpenAPISchemasMatchGo: each request body and JSON response schema has
// exactly the JSON fields of its Go struct, with matching types, and every
// error response is an ErrorResponse.
func TestOpenAPISchemasMatchGo(t *testing.T) {
	d := loadOpenAPI(t)
	errType := reflect.TypeFor[ErrorResponse]()
	for p, ops := range d.Paths {
		for m, op := range ops {
			r := Route{Method: strings.ToUpper(m), Path: fullPath(p)}
			types, ok := bodyTypes[r]
			if !ok {
				t.Errorf("%s %s: no entry in bodyTypes", r.Method, r.Path)
				continue
			}
			if (op.RequestBody != nil) != (types.req != nil) {
				t.Errorf("%s %s: requestBody in the document %v, Go request type %v", r.Method, r.Path, op.RequestBody != nil, types.req)
			}
			if op.RequestBody != nil && types.req != nil {
				c := op.RequestBody.Content["application/json"]
				if c == nil {
					t.Errorf("%s %s: request body is not application/json", r.Method, r.Path)
				} else {
					matchSchema(t, d, r.Path+" request", c.Schema, types.req)
				}
			}
			for code, resp := range op.Responses {
				resp = d.resolveResponse(t, resp)
				c := resp.Content["application/json"]
				switch {
				case code >= 400:
					if c == nil {
						t.Errorf("%s %s %d: error response is not application/json", r.Method, r.Path, code)
					} else {
						matchSchema(t, d, r.Path+" error", c.Schema, errType)
					}
				case code == 204:
					if len(resp.Content) != 0 {
						t.Errorf("%s %s: 204 with content", r.Method, r.Path)
					}
				case c != nil:
					if types.resp == nil {
						t.Errorf("%s %s %d: JSON response without a Go type", r.Method, r.Path, code)
					} else {
						matchSchema(t, d, r.Path+" response", c.Schema, types.resp)
					}
				}
			}
		}
	}
}

// matchSchema checks schema s against Go type typ, recursively.
func matchSchema(t *testing.T, d *oaDoc, where string, s *oaSchema, typ reflect.Type) {
	t.Helper()
	s = d.resolve(t, s)
	if s == nil {
		t.Errorf("%s: no schema", where)
		return
	}
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	want := map[reflect.Kind]string{
		reflect.Struct: "object", reflect.String: "string", reflect.Bool: "boolean", reflect.Slice: "array",
		reflect.Int: "integer", reflect.Int64: "integer", reflect.Uint64: "integer", reflect.Uint32: "integer",
	}[typ.Kind()]
	if want == "" {
		t.Errorf("%s: Go kind %v has no schema type in this test", where, typ.Kind())
		return
	}
	if s.Type != want {
		t.Errorf("%s: schema type %q, Go %v wants %q", where, s.Type, typ, want)
		return
	}
	switch typ.Kind() {
	case reflect.Slice:
		matchSchema(t, d, where+"[]", s.Items, typ.Elem())
	case reflect.Struct:
		fields := map[string]reflect.Type{}
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			fields[name] = f.Type
		}
		var goNames, docNames []string
		for n := range fields {
			goNames = append(goNames, n)
		}
		for n := range s.Properties {
			docNames = append(docNames, n)
		}
		sort.Strings(goNames)
		sort.Strings(docNames)
		if !slices.Equal(goNames, docNames) {
			t.Errorf("%s: schema properties %v, Go %v fields %v", where, docNames, typ, goNames)
			return
		}
		for n, ft := range fields {
			matchSchema(t, d, where+"."+n, s.Properties[n], ft)
		}
	}
}
