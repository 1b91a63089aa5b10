package config

import (
	"errors"
	"strings"
	"testing"
)

func TestValueOrFile(t *testing.T) {
	files := map[string]string{"/run/key": "s3cret\n", "/run/empty": "\r\n", "/run/spaced": " pass phrase \n"}
	read := func(name string) ([]byte, error) {
		if v, ok := files[name]; ok {
			return []byte(v), nil
		}
		return nil, errors.New("no such file")
	}
	for _, tc := range []struct {
		value, file, want, wantErr string
	}{
		{value: "inline", want: "inline"},
		{file: "/run/key", want: "s3cret"},
		{file: "/run/spaced", want: " pass phrase "}, // only the line end goes
		{value: "inline", file: "/run/key", wantErr: "give -token or -token-file, not both"},
		{file: "/run/empty", wantErr: "-token-file /run/empty is empty"},
		{file: "/run/missing", wantErr: "read -token-file: no such file"},
	} {
		got, err := ValueOrFile("token", tc.value, tc.file, read)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q, %q: error %v, want %q", tc.value, tc.file, err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q holds the secret", err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q, %q: %q, %v; want %q", tc.value, tc.file, got, err, tc.want)
		}
	}
}
