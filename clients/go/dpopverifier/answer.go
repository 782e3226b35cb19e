package dpopverifier

import (
	"net/http"

	v1 "github.com/dpop-verifier/dpop-verifier/clients/go/dpopverifierv1"
)

// IsAllowed is true only for DECISION_ALLOW; an unspecified or unknown decision is a deny.
func IsAllowed(response *v1.VerifyResponse) bool {
	return response.GetDecision() == v1.Decision_DECISION_ALLOW
}

// ResponseHeaders are the headers to send back: WWW-Authenticate on a deny and DPoP-Nonce when
// the verifier issued a nonce (either may be absent).
func ResponseHeaders(response *v1.VerifyResponse) http.Header {
	headers := http.Header{}
	if challenge := response.GetWwwAuthenticate(); challenge != "" {
		headers.Set("WWW-Authenticate", challenge)
	}
	if nonce := response.GetDpopNonce(); nonce != "" {
		headers.Set("DPoP-Nonce", nonce)
	}
	return headers
}
