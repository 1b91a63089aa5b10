package pgdb_test

import (
	"context"
	"testing"

	"herald/devtools/testenv"
)

func TestTenantProvidersAreChecked(t *testing.T) {
	db := testenv.DB(t)
	ctx := context.Background()
	cases := []struct {
		providers string
		ok        bool
	}{
		{`{"email": ["esp", "smtp"]}`, true},
		{`{"email": ["smtp"], "onsite": ["onsite"], "ad": ["ads"]}`, true},
		{`{"email": ["ses", "sendgrid", "smtp"]}`, true},
		{`{}`, true},
		{`["esp"]`, false},                // not an object
		{`{"email": "esp"}`, false},       // not a list
		{`{"email": []}`, false},          // empty list
		{`{"email": ["mailgun"]}`, false}, // unknown kind
		{`{"email": ["onsite"]}`, false},  // another channel's kind
		{`{"sms": ["smtp"]}`, false},      // unknown channel
		{`{"email": ["esp", 3]}`, false},  // not a string
		{`{"email": ["esp"], "ad": [null]}`, false},
	}
	for _, c := range cases {
		_, err := db.Exec(ctx, `INSERT INTO tenants (id, providers) VALUES ('acme', $1)
			ON CONFLICT (id) DO UPDATE SET providers = EXCLUDED.providers`, c.providers)
		if c.ok != (err == nil) {
			t.Errorf("providers %s: error %v, want accepted %v", c.providers, err, c.ok)
		}
	}
	var got string
	if err := db.QueryRow(ctx, `SELECT providers::text FROM tenants WHERE id = 'acme'`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != `{}` {
		t.Errorf("after the rejected updates the tenant's providers are %s, want the last accepted, {}", got)
	}
}
