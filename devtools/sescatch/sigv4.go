package sescatch

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// authError is a refused signature: the error code and message SES would
// answer with, status 403 (400 for a malformed header, as AWS does).
type authError struct {
	status  int
	code    string
	message string
}

func (e *authError) Error() string { return e.code + ": " + e.message }

// maxSkew is how far a request's X-Amz-Date may be from the server's clock,
// as AWS allows.
const maxSkew = 15 * time.Minute

// verify checks r's SigV4 Authorization header against the configured
// credentials, with body the request's payload: it signs a copy of the
// request made of exactly the headers the client says it signed, with the
// secret this server knows, and compares the two headers. Any change to the
// method, path, query, a signed header or the body, and any other secret,
// gives another signature.
func verify(r *http.Request, body []byte, creds aws.Credentials, region string, now time.Time) *authError {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return &authError{http.StatusForbidden, "MissingAuthenticationTokenException", "Missing Authentication Token"}
	}
	const algorithm = "AWS4-HMAC-SHA256 "
	rest, ok := strings.CutPrefix(auth, algorithm)
	if !ok {
		return &authError{http.StatusBadRequest, "IncompleteSignatureException", "Authorization header requires the AWS4-HMAC-SHA256 algorithm"}
	}
	fields := map[string]string{}
	for part := range strings.SplitSeq(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return &authError{http.StatusBadRequest, "IncompleteSignatureException", fmt.Sprintf("Authorization header field %q is not key=value", part)}
		}
		fields[k] = v
	}
	credential, signedHeaders, signature := fields["Credential"], fields["SignedHeaders"], fields["Signature"]
	if credential == "" || signedHeaders == "" || signature == "" {
		return &authError{http.StatusBadRequest, "IncompleteSignatureException", "Authorization header requires Credential, SignedHeaders and Signature"}
	}
	scope := strings.Split(credential, "/")
	if len(scope) != 5 || scope[4] != "aws4_request" {
		return &authError{http.StatusBadRequest, "IncompleteSignatureException", "Credential is not key/date/region/service/aws4_request"}
	}
	if subtle.ConstantTimeCompare([]byte(scope[0]), []byte(creds.AccessKeyID)) != 1 {
		return &authError{http.StatusForbidden, "UnrecognizedClientException", "The security token included in the request is invalid."}
	}
	if scope[2] != region || scope[3] != signingName {
		return &authError{http.StatusForbidden, "SignatureDoesNotMatch", fmt.Sprintf("Credential should be scoped to region %q and service %q", region, signingName)}
	}
	when, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return &authError{http.StatusBadRequest, "IncompleteSignatureException", "X-Amz-Date is missing or malformed"}
	}
	if scope[1] != when.Format("20060102") {
		return &authError{http.StatusForbidden, "SignatureDoesNotMatch", "Credential date does not match X-Amz-Date"}
	}
	if d := now.Sub(when); d > maxSkew || d < -maxSkew {
		return &authError{http.StatusForbidden, "InvalidSignatureException", "Signature expired: " + when.Format("20060102T150405Z") + " is more than 15 minutes from " + now.UTC().Format("20060102T150405Z")}
	}

	clone, err := http.NewRequest(r.Method, r.URL.String(), bytes.NewReader(body))
	if err != nil {
		return &authError{http.StatusBadRequest, "IncompleteSignatureException", err.Error()}
	}
	clone.Host = r.Host
	clone.URL.Host = r.Host
	clone.ContentLength = 0
	hasHost := false
	for name := range strings.SplitSeq(signedHeaders, ";") {
		switch name {
		case "host":
			hasHost = true
		case "content-length":
			clone.ContentLength = r.ContentLength
		default:
			if vs, ok := r.Header[http.CanonicalHeaderKey(name)]; ok {
				clone.Header[http.CanonicalHeaderKey(name)] = vs
			}
		}
	}
	if !hasHost {
		return &authError{http.StatusForbidden, "SignatureDoesNotMatch", "SignedHeaders must include host"}
	}
	sum := sha256.Sum256(body)
	err = v4.NewSigner().SignHTTP(r.Context(), creds, clone, hex.EncodeToString(sum[:]), signingName, region, when)
	if err != nil {
		return &authError{http.StatusForbidden, "SignatureDoesNotMatch", err.Error()}
	}
	if subtle.ConstantTimeCompare([]byte(clone.Header.Get("Authorization")), []byte(auth)) != 1 {
		return &authError{http.StatusForbidden, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method."}
	}
	return nil
}
