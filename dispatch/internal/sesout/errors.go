package sesout

import (
	"errors"
	"net/http"
	"strconv"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"

	"herald/dispatch/internal/provider"
)

// kind is what an SES error code means for the message and the account.
type kind struct {
	outcome provider.Outcome
	// why is said before SES's own message in Result.Reason.
	why string
}

// The SES errors, by error code: those SendEmail documents, then the
// common errors every AWS API may answer. Three kinds of answer:
//
//   - the account or its configuration cannot send (suspended, paused,
//     an unverified MAIL FROM domain, a missing configuration set or
//     identity, credentials refused): Deferred, which counts against the
//     provider's circuit breaker, so that a fallback provider takes over
//     while someone fixes the account; the message itself is kept;
//   - this message is refused (its content, its input): Failed;
//   - slow down: Throttled, with Code 429 whatever the HTTP status
//     (LimitExceeded and Throttling come as 400), because what SES limits
//     is the account's sending rate, which is the bucket a 429 cuts.
var codes = map[string]kind{
	// SendEmail's documented errors.
	"AccountSuspendedException":          {provider.Deferred, "the SES account's sending is permanently restricted (suspended)"},
	"SendingPausedException":             {provider.Deferred, "sending is paused for the SES account or its configuration set"},
	"MailFromDomainNotVerifiedException": {provider.Deferred, "the sending domain's MAIL FROM domain is not verified in SES"},
	"NotFoundException":                  {provider.Deferred, "SES does not know a resource the send names (configuration set or identity)"},
	"MessageRejected":                    {provider.Failed, "SES rejected the message"},
	"BadRequestException":                {provider.Failed, "SES refused the request as invalid"},
	"TooManyRequestsException":           {provider.Throttled, "SES asks to slow down"},
	"LimitExceededException":             {provider.Throttled, "an SES sending limit is exceeded"},
	// Common errors of AWS APIs.
	"ThrottlingException":           {provider.Throttled, "SES asks to slow down"},
	"Throttling":                    {provider.Throttled, "SES asks to slow down"},
	"AccessDeniedException":         {provider.Deferred, "the credentials may not send with SES"},
	"NotAuthorized":                 {provider.Deferred, "the credentials may not send with SES"},
	"UnrecognizedClientException":   {provider.Deferred, "SES does not know the access key"},
	"InvalidClientTokenId":          {provider.Deferred, "SES does not know the access key"},
	"SignatureDoesNotMatch":         {provider.Deferred, "SES refused the request signature (wrong secret access key?)"},
	"InvalidSignatureException":     {provider.Deferred, "SES refused the request signature (wrong secret access key?)"},
	"IncompleteSignature":           {provider.Deferred, "SES refused the request signature"},
	"MissingAuthenticationToken":    {provider.Deferred, "SES got no credentials"},
	"ExpiredToken":                  {provider.Deferred, "the session token has expired"},
	"ExpiredTokenException":         {provider.Deferred, "the session token has expired"},
	"RequestExpired":                {provider.Deferred, "SES found the request's date too far from its clock"},
	"OptInRequired":                 {provider.Deferred, "the account is not subscribed to SES"},
	"InternalFailure":               {provider.Deferred, "SES failed"},
	"InternalServiceErrorException": {provider.Deferred, "SES failed"},
	"ServiceUnavailable":            {provider.Deferred, "SES is unavailable"},
	"ServiceUnavailableException":   {provider.Deferred, "SES is unavailable"},
}

// Classify maps an error from SendEmail onto a result. wrote reports
// whether the whole request had been written when it failed: an error
// without an answer is then Unknown (SES may have taken the message) and
// Deferred otherwise. An answer whose error code is not known is judged by
// its HTTP status: 429 Throttled, 5xx, 401 and 403 Deferred, other 4xx
// Failed, and a 2xx that could not be read Unknown.
func Classify(err error, wrote bool) provider.Result {
	status := 0
	if re, ok := errors.AsType[*awshttp.ResponseError](err); ok {
		status = re.HTTPStatusCode()
	}
	if api, ok := errors.AsType[smithy.APIError](err); ok && status >= 300 {
		if k, ok := codes[api.ErrorCode()]; ok {
			res := provider.Result{Outcome: k.outcome, Code: status, Reason: k.why + ": " + api.ErrorCode()}
			if msg := api.ErrorMessage(); msg != "" {
				res.Reason += ": " + msg
			}
			if k.outcome == provider.Throttled {
				res.Code = http.StatusTooManyRequests
			}
			return res
		}
	}
	reason := err.Error()
	switch {
	case status >= 200 && status < 300:
		return provider.Result{Outcome: provider.Unknown, Code: status, Reason: "unreadable answer to an accepted request: " + reason}
	case status == http.StatusTooManyRequests:
		return provider.Result{Outcome: provider.Throttled, Code: status, Reason: reason}
	case status >= 500, status == http.StatusUnauthorized, status == http.StatusForbidden:
		return provider.Result{Outcome: provider.Deferred, Code: status, Reason: reason}
	case status >= 300:
		return provider.Result{Outcome: provider.Failed, Code: status, Reason: "status " + strconv.Itoa(status) + ": " + reason}
	case wrote:
		return provider.Result{Outcome: provider.Unknown, Reason: "await answer: " + reason}
	default:
		return provider.Result{Outcome: provider.Deferred, Reason: "send request: " + reason}
	}
}
