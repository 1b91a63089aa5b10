package strictjson

import (
	"errors"
	"testing"
)

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
		{`{"a":1,`, ""}, // malformed: left to the decoder
		{`{"a" 1}`, ""},
		{``, ""},
	}
	for _, tc := range tests {
		err := CheckDuplicateKeys([]byte(tc.in))
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
	var v struct {
		A int `json:"a"`
	}
	for _, in := range []string{`{"a":1,"a":2}`, `{"a":1,"b":2}`, `{"a":1} {"a":2}`, `{"a":"x"}`} {
		if err := Decode([]byte(in), &v); err == nil {
			t.Errorf("%s decoded without error", in)
		}
	}
	if err := Decode([]byte(` {"a": 7} `), &v); err != nil || v.A != 7 {
		t.Fatalf("valid input: %v %v", err, v)
	}
}
