package dpopverifier

import (
	"context"
	"encoding/json"
	"log"
	"net/http"

	v1 "github.com/dpop-verifier/dpop-verifier/clients/go/dpopverifierv1"
)

type answerKey struct{}

// AnswerFrom returns the verifier's answer that the middleware stored in the request context on
// allow (jkt, claims, ...).
func AnswerFrom(ctx context.Context) (*v1.VerifyResponse, bool) {
	answer, ok := ctx.Value(answerKey{}).(*v1.VerifyResponse)
	return answer, ok
}

// Middleware returns a net/http middleware that asks the verifier before next runs. On allow
// next runs with the answer in its context (AnswerFrom), and a DPoP-Nonce the verifier issued is
// added to the response; on a deny next does not run and the answer is the verifier's HTTP
// status, WWW-Authenticate and DPoP-Nonce headers and {"error": <rfc_error>}; when the verifier
// gives no answer it is 503 (never an allow, and never blamed on the client). It is correct under
// http.StripPrefix and on any sub-path (see RequestFromHTTP); behind a proxy set PublicOrigin.
func (c *Client) Middleware(options RequestOptions) (func(http.Handler) http.Handler, error) {
	if options.PublicOrigin != "" {
		origin, err := CheckPublicOrigin(options.PublicOrigin)
		if err != nil {
			return nil, err
		}
		options.PublicOrigin = origin
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			answer, err := c.Verify(r.Context(), RequestFromHTTP(r, options))
			if err != nil {
				log.Printf("dpopverifier: no answer from the verifier: %v", err)
				writeJSON(w, http.StatusServiceUnavailable, nil, "temporarily_unavailable")
				return
			}
			if !IsAllowed(answer) {
				status := int(answer.GetHttpStatus())
				if status == 0 {
					status = http.StatusUnauthorized
				}
				rfcError := answer.GetRfcError()
				if rfcError == "" {
					rfcError = "unauthorized"
				}
				writeJSON(w, status, ResponseHeaders(answer), rfcError)
				return
			}
			if nonce := answer.GetDpopNonce(); nonce != "" {
				w.Header().Set("DPoP-Nonce", nonce)
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), answerKey{}, answer)))
		})
	}, nil
}

func writeJSON(w http.ResponseWriter, status int, headers http.Header, rfcError string) {
	for name, values := range headers {
		w.Header()[name] = values
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": rfcError})
}
