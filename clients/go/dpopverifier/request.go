package dpopverifier

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	v1 "github.com/dpop-verifier/dpop-verifier/clients/go/dpopverifierv1"
)

// RequestOptions say how to describe an incoming request to the verifier.
type RequestOptions struct {
	// PublicOrigin is the origin clients use ("https://api.example.com"), followed by the path
	// prefix a proxy strips if any ("https://api.example.com/api"). The proof's htu names the URL
	// the client used; behind a proxy that is not what the server sees, and forwarded headers a
	// client can set must not decide it. Empty: the request's own scheme and Host.
	PublicOrigin string
	// Route names the route in the verifier's logs and metrics.
	Route string
	// ProofOnly verifies the proof alone (token endpoints): no access token.
	ProofOnly bool
}

// CheckPublicOrigin returns origin without a trailing slash, or an error unless it is
// http(s)://host[:port] optionally followed by a path prefix, with no query, fragment or user
// info.
func CheckPublicOrigin(origin string) (string, error) {
	parsed, err := url.Parse(origin)
	if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Hostname() == "" ||
		parsed.User != nil || strings.ContainsAny(origin, "?#") {
		return "", fmt.Errorf("dpopverifier: PublicOrigin must look like https://api.example.com[/prefix]: %q", origin)
	}
	return strings.TrimRight(origin, "/"), nil
}

// RequestFromHTTP describes r for the verifier. The path is r.RequestURI, the request-target as
// the client sent it, so a handler mounted under http.StripPrefix still names the full path.
// Every Authorization and DPoP value is passed on (net/http keeps repeated headers apart), so the
// verifier can reject duplicates. A PublicOrigin that CheckPublicOrigin rejects is used as given,
// and the verifier then denies the request (a URL mismatch): check it once at start-up.
func RequestFromHTTP(r *http.Request, options RequestOptions) *v1.VerifyRequest {
	origin := strings.TrimRight(options.PublicOrigin, "/")
	if origin == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		origin = scheme + "://" + r.Host
	}
	clientAddress, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		clientAddress = r.RemoteAddr
	}
	return &v1.VerifyRequest{
		Method:        r.Method,
		TargetUri:     origin + requestTarget(r),
		Authorization: r.Header.Values("Authorization"),
		Dpop:          r.Header.Values("DPoP"),
		ClientAddress: clientAddress,
		Route:         options.Route,
		ProofOnly:     options.ProofOnly,
	}
}

// requestTarget is the path and query the client sent. r.URL.Path may have been rewritten (by
// http.StripPrefix, for example); r.RequestURI is not. An absolute-form target (sent to proxies)
// keeps only its path and query; a request made in-process has no RequestURI.
func requestTarget(r *http.Request) string {
	switch {
	case strings.HasPrefix(r.RequestURI, "/"):
		return r.RequestURI
	case r.RequestURI != "":
		if parsed, err := url.Parse(r.RequestURI); err == nil && parsed.Scheme != "" {
			return parsed.RequestURI()
		}
		return "/" + r.RequestURI // unusable: the verifier denies it as a URL mismatch
	default:
		return r.URL.RequestURI()
	}
}
