package strictjson

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"herald/devtools/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestDuplicateKeys(t *testing.T) {
	tests := []struct {
		in      string
		wantKey string // "" for no duplicate
	}{
		{`{"a":1,"b":2}`, ""},
		{`{"a":1,"a":2}`, "a"},
		{`{"a":{"x":1},"b":{"x":2}}`, ""},
		{`{"a":{"x":1,"x":2}}`, "x"},
		{`[{"a":1},{"a":1}]`, ""},
		{`[{"a":1,"a":1}]`, "a"},
		{`{"a":"\"","\u0061":2}`, "a"},
		{`{"a\/b":1,"a/b":2}`, "a/b"},
		{`{"s":"}{\"a\":1,\"a\":2}"}`, ""},
		{`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"r":18,"a":19}`, "a"},
		// encoding/json matches names to fields regardless of case (as
		// bytes.EqualFold does), so these are the same member.
		{`{"channel":"email","CHANNEL":"ad"}`, "CHANNEL"},
		{`{"Channel":"email","chANNel":"ad"}`, "chANNel"},
		{`{"kind":1,"\u212aind":2}`, "\u212aind"}, // KELVIN SIGN folds to k
		{`{"strategy":1,"\u017ftrategy":2}`, "\u017ftrategy"},
		{`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"r":18,"A":19}`, "A"},
		{`{"straße":1,"STRASSE":2}`, ""}, // not equal under simple folding
		{`{"a":1,"b":{"A":2}}`, ""},
	}
	for _, tc := range tests {
		err := check([]byte(tc.in))
		var dup *DuplicateKeyError
		switch {
		case tc.wantKey == "" && err != nil:
			t.Errorf("%s: unexpected %v", tc.in, err)
		case tc.wantKey != "" && (!errors.As(err, &dup) || dup.Key != tc.wantKey):
			t.Errorf("%s: got %v, want duplicate %q", tc.in, err, tc.wantKey)
		}
	}
}

func TestDecodeIsStrict(t *testing.T) {
	type target struct {
		A int    `json:"a"`
		S string `json:"s"`
	}
	for _, in := range []string{
		`{"a":1,"a":2}`,
		`{"a":1,"A":2}`,
		`{"a":1,"b":2}`,
		`{"a":1} {"a":2}`,
		`{"a":1}}`,
		`{"a":1}]]`,
		`{"a":1}]`,
		`{"a":1},`,
		`{"a":1} x`,
		`{"a":"x"}`,
		`{"a":1`,
		`{"a":01}`,
		`{"a":1,}`,
		`{"s":"\x"}`,
		`{"s":"tab	inside"}`,
		`{"a":tru}`,
		``,
	} {
		var v target
		if err := Decode([]byte(in), &v); err == nil {
			t.Errorf("%q decoded without error into %+v", in, v)
		}
	}
	var v target
	if err := Decode([]byte(" {\"a\": 7, \"s\": \"caf\u00e9 \\ud83d\\ude00 \\u00e9\"}\n "), &v); err != nil || v.A != 7 || v.S != "café 😀 é" {
		t.Fatalf("valid input: %v %+v", err, v)
	}
}

// Trailing data is reported as such, not as some other error.
func TestTrailingData(t *testing.T) {
	for _, in := range []string{`{"a":1}}`, `{"a":1}]]`, `{} {}`, `[1] 2`, `"x""y"`} {
		var v any
		if err := Decode([]byte(in), &v); !errors.Is(err, ErrTrailingData) {
			t.Errorf("%s: %v, want trailing data", in, err)
		}
	}
}

// Values that PostgreSQL's text or jsonb refuse, or that encoding/json
// would silently replace by U+FFFD, are refused with where they are.
func TestRefusedValues(t *testing.T) {
	tests := []struct {
		in       string
		wantPath string
		wantIn   string // in the reason
	}{
		{`{"s":"a\u0000b"}`, "s", `\u0000`},
		{`{"attributes":{"nick":"\u0000"}}`, "attributes.nick", `\u0000`},
		{`{"attributes":{"\u0000":1}}`, "attributes", "member name"},
		{"{\"s\":\"caf\xe9\"}", "s", "UTF-8"},
		{"{\"s\":\"\xed\xa0\x80\"}", "s", "UTF-8"}, // a surrogate in UTF-8
		{"{\"s\":\"\xc0\xaf\"}", "s", "UTF-8"},     // overlong
		{"{\"caf\xe9\":1}", "", "member name"},
		{`{"s":"\ud800"}`, "s", "surrogate"},
		{`{"s":"\udc00"}`, "s", "surrogate"},
		{`{"s":"\ud800x"}`, "s", "surrogate"},
		{`{"s":"\ud800\u0041"}`, "s", "surrogate"},
		{`{"items":["a","\ud83d"]}`, "items[1]", "surrogate"},
		{`{"a":[[1],[2,{"b":["\u0000"]}]]}`, "a[1][1].b[0]", `\u0000`},
		{`{"n":1e1000000}`, "n", "beyond"},
		{`{"n":-1e131072}`, "n", "beyond"},
		{`{"n":1e-16384}`, "n", "beyond"},
		{`{"n":1.0e-16383}`, "n", "beyond"},
		{`{"n":0e-16384}`, "n", "beyond"},
		{`{"n":1e99999999999999999999}`, "n", "beyond"},
		{`[1e1000000]`, "[0]", "beyond"},
		{`"\u0000"`, "", `\u0000`},
	}
	for _, tc := range tests {
		var v any
		err := Decode([]byte(tc.in), &v)
		var refused *ValueError
		if !errors.As(err, &refused) {
			t.Errorf("%q: %v, want a refused value", tc.in, err)
			continue
		}
		if refused.Path != tc.wantPath || !strings.Contains(refused.Reason, tc.wantIn) {
			t.Errorf("%q: refused at %q for %q; want %q, with %q", tc.in, refused.Path, refused.Reason, tc.wantPath, tc.wantIn)
		}
	}
	for _, in := range []string{
		`{"s":"\ud83d\ude00","t":"\u00e9\u0001","u":"\uFFFD","n":[1e131071,9.9e131071,1e-16383,0e200000,-0,123.456e-16380]}`,
		"{\"s\":\"\xef\xbf\xbd caf\xc3\xa9\"}",
	} {
		var v json.RawMessage
		if err := Decode([]byte(in), &v); err != nil {
			t.Errorf("%q: %v", in, err)
		}
	}
}

// The number bounds are PostgreSQL's: every literal that jsonb takes is
// accepted and every one it refuses is refused.
func TestNumbersAgreeWithPostgreSQL(t *testing.T) {
	db := testenv.DB(t)
	literals := []string{
		"0", "-0", "1", "-1", "0.5", "1e5", "1E+5", "1e-5", "123.456e-16380", "123.456e-16381",
		"1e131071", "9.9999e131071", "1e131072", "10e131070", "10e131071", "-1e131072",
		"1e-16383", "1e-16384", "0e-16383", "0e-16384", "0.0e-16383", "1.5e-16382", "1.5e-16383",
		"0.00001e-16378", "0.00001e-16379", "0.00001e131076", "0.00001e131077",
		"0e200000", "0e1073741822", "0e1073741823", "0e-1073741823", "1e1000000", "1e-1000000",
		"1" + strings.Repeat("0", 131071), "1" + strings.Repeat("0", 131072),
		"0." + strings.Repeat("0", 16382) + "1", "0." + strings.Repeat("0", 16383) + "1",
		"0." + strings.Repeat("0", 16383), "0." + strings.Repeat("0", 16382),
	}
	type verdict struct {
		Literal  string
		Accepted bool
	}
	var ours, theirs []verdict
	for _, lit := range literals {
		var v json.RawMessage
		err := Decode([]byte(`{"n":`+lit+`}`), &v)
		var refused *ValueError
		if err != nil && !errors.As(err, &refused) {
			t.Fatalf("%s: %v", abbreviate([]byte(lit)), err)
		}
		ours = append(ours, verdict{abbreviate([]byte(lit)), err == nil})
		_, pgErr := db.Exec(context.Background(), `SELECT $1::jsonb`, `{"n":`+lit+`}`)
		theirs = append(theirs, verdict{abbreviate([]byte(lit)), pgErr == nil})
	}
	if diff := cmp.Diff(theirs, ours); diff != "" {
		t.Fatalf("accepted numbers (-PostgreSQL +strictjson):\n%s", diff)
	}
}
