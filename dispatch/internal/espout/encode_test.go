package espout

import (
	"encoding/json"
	"testing"
)

func TestAppendStringIsJSON(t *testing.T) {
	for _, s := range []string{
		"", "plain@example.com", `quote " and backslash \`, "tab\tnewline\ncr\rnul\x00del\x7f",
		"ünïcødé ✉ 𝄞", "invalid \xff\xfe utf-8", "<script>&amp;</script>", "\u2028\u2029",
	} {
		var got string
		if err := json.Unmarshal(appendString(nil, s), &got); err != nil {
			t.Errorf("%q: %s is not JSON: %v", s, appendString(nil, s), err)
			continue
		}
		// encoding/json's reading of the same string is the reference.
		ref, _ := json.Marshal(s)
		var want string
		_ = json.Unmarshal(ref, &want)
		if got != want {
			t.Errorf("%q came back as %q", want, got)
		}
	}
}
