// Command dashboard writes Herald's Grafana dashboard as JSON. The dashboard
// is built in Go with the Grafana Foundation SDK (herald.go) and the JSON is
// committed as deploy/monitoring/dashboards/herald.json, ready to import or
// provision. Regenerate it after changing herald.go with
//
//	go generate ./deploy/monitoring/...
//
// A test fails when the committed JSON differs from what this program makes.
package main

//go:generate go run . -out ../dashboards/herald.json

import (
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "dashboard:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("dashboard", flag.ContinueOnError)
	out := fs.String("out", "", "write the dashboard JSON to this file instead of standard output")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	b, err := dashboardJSON()
	if err != nil {
		return err
	}
	if *out == "" {
		_, err = stdout.Write(b)
		return err
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		return fmt.Errorf("write dashboard: %w", err)
	}
	return nil
}
