package api

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the partner API's OpenAPI 3 document, served at
// /v1/openapi.json. Tests check that it names exactly the routes Handler
// serves and hold every request and answer of the API tests to it
// (devtools/openapicheck).
//
//go:embed openapi.json
var OpenAPI []byte

func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(OpenAPI)
}
