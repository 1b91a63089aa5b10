package api_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"herald/devtools/testenv"
	"herald/ingest/internal/api"
	"herald/ingest/internal/store"
)

// BenchmarkBulkCustomerUpsert measures POST /v1/customers end to end:
// HTTP, NDJSON decoding and validation, COPY into staging and the merge
// into customers, on the real PostgreSQL. "insert" loads new customers,
// "update" loads the same customers again (every row an update). The
// figure to watch is rows/s; perf/README.md records it.
func BenchmarkBulkCustomerUpsert(b *testing.B) {
	const rows = 100_000
	db := testenv.DB(b)
	a := api.New(store.New(db), slog.New(slog.DiscardHandler), prometheus.NewRegistry(), api.Config{Limits: api.DefaultLimits})
	srv := httptest.NewServer(withTenants(b, db, a.Handler()))
	defer srv.Close()
	body := func(batch int) []byte {
		var buf bytes.Buffer
		for i := range rows {
			fmt.Fprintf(&buf, `{"id":"c%d-%08d","email":"customer.%d.%d@example.com","first_name":"Ada","last_name":"Lovelace","locale":"en-GB","timezone":"Europe/London","consent":{"email":true,"ads":false},"attributes":{"tier":"gold","ltv":%d}}`+"\n",
				batch, i, batch, i, i%1000)
		}
		return buf.Bytes()
	}
	upload := func(b *testing.B, data []byte) {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/customers", bytes.NewReader(data))
		req.Header.Set(api.TenantHeader, "bench")
		req.Header.Set("Content-Type", "application/x-ndjson")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("upload: HTTP %d", resp.StatusCode)
		}
	}
	b.Run("insert", func(b *testing.B) {
		bodies := make([][]byte, b.N)
		for i := range bodies {
			bodies[i] = body(1000 + i)
		}
		b.SetBytes(int64(len(bodies[0])))
		b.ResetTimer()
		for i := range b.N {
			upload(b, bodies[i])
		}
		b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
	})
	b.Run("update", func(b *testing.B) {
		data := body(0)
		upload(b, data)
		b.SetBytes(int64(len(data)))
		b.ResetTimer()
		for range b.N {
			upload(b, data)
		}
		b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
	})
}
