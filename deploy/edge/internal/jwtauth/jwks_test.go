package jwtauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"testing"
)

// An EC key in a JWKS reads back as the same public key, and one whose
// coordinates are not the curve's full size or not on it is refused.
func TestJWKSReadsECKeys(t *testing.T) {
	for _, curve := range []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		priv, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		point, err := priv.PublicKey.Bytes() // 0x04 || x || y
		if err != nil {
			t.Fatal(err)
		}
		size := (curve.Params().BitSize + 7) / 8
		enc := base64.RawURLEncoding.EncodeToString
		x, y := enc(point[1:1+size]), enc(point[1+size:])
		jwks := func(x, y string) []byte {
			b, _ := json.Marshal(map[string]any{"keys": []map[string]string{
				{"kty": "EC", "kid": "k1", "crv": curve.Params().Name, "x": x, "y": y},
			}})
			return b
		}
		keys, err := parseJWKS(jwks(x, y))
		if err != nil {
			t.Fatalf("%s: %v", curve.Params().Name, err)
		}
		if got, ok := keys[0].pub.(*ecdsa.PublicKey); !ok || !got.Equal(&priv.PublicKey) {
			t.Errorf("%s: read back %v, want the key written", curve.Params().Name, keys[0].pub)
		}
		short := enc(point[2 : 1+size]) // a leading byte dropped
		bad := []byte(point[1+size:])
		bad[len(bad)-1] ^= 1 // moved off the curve
		for name, b := range map[string][]byte{"short x": jwks(short, y), "off the curve": jwks(x, enc(bad)), "not base64": jwks("!!", y)} {
			if _, err := parseJWKS(b); err == nil {
				t.Errorf("%s: %s accepted", curve.Params().Name, name)
			}
		}
	}
}
