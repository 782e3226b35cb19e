// Command verify-example asks a dpop-verifier service about one HTTP request and prints the
// answer, the way a Go API gateway or service would before serving the request.
//
//	verify-example -addr 127.0.0.1:50051 -method GET -url https://api.example.com/orders \
//	    -token "$TOKEN" -proof "$PROOF" [-ca ca.pem [-cert client.pem -key client.key] [-server-name NAME]]
//
// It prints "<decision> <reason_code> <http_status>" and exits 0 on allow, 1 on deny and 2 when
// the call itself failed (no answer: a caller must treat it as a deny).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/dpop-verifier/dpop-verifier/clients/go/dpopverifier"
	v1 "github.com/dpop-verifier/dpop-verifier/clients/go/dpopverifierv1"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:50051", "verifier address host:port")
	caFile := flag.String("ca", "", "PEM CA bundle: connect with TLS (default: plaintext)")
	certFile := flag.String("cert", "", "PEM client certificate, for mTLS (with -ca and -key)")
	keyFile := flag.String("key", "", "PEM client key, for mTLS")
	serverName := flag.String("server-name", "", "name checked against the server certificate")
	method := flag.String("method", "GET", "the HTTP request's method")
	url := flag.String("url", "", "the HTTP request's full target URI")
	token := flag.String("token", "", "the access token (sent as Authorization: DPoP <token>)")
	proof := flag.String("proof", "", "the DPoP header value")
	timeout := flag.Duration("timeout", dpopverifier.DefaultTimeout, "deadline for the call, retries included")
	flag.Parse()

	options := dpopverifier.Options{Insecure: true, Timeout: *timeout} // plaintext: loopback or an mTLS mesh only
	if *caFile != "" {
		options = dpopverifier.Options{
			TLS:     &dpopverifier.TLS{CAFile: *caFile, CertFile: *certFile, KeyFile: *keyFile, ServerName: *serverName},
			Timeout: *timeout,
		}
	}
	verifier, err := dpopverifier.New(*addr, options)
	if err != nil {
		fail(err)
	}
	defer verifier.Close()

	request := &v1.VerifyRequest{Method: *method, TargetUri: *url}
	if *token != "" {
		request.Authorization = []string{"DPoP " + *token}
	}
	if *proof != "" {
		request.Dpop = []string{*proof}
	}
	answer, err := verifier.Verify(context.Background(), request)
	if err != nil {
		fail(err) // no answer: never an allow, and not a deny either
	}
	fmt.Println(answer.GetDecision(), answer.GetReasonCode(), answer.GetHttpStatus())
	if !dpopverifier.IsAllowed(answer) {
		headers := dpopverifier.ResponseHeaders(answer)
		for _, name := range []string{"WWW-Authenticate", "DPoP-Nonce"} {
			if value := headers.Get(name); value != "" {
				fmt.Printf("%s: %s\n", name, value)
			}
		}
		verifier.Close()
		os.Exit(1)
	}
	fmt.Println("sub:", answer.GetClaims().GetSub(), "jkt:", answer.GetJkt())
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "verify-example:", err)
	os.Exit(2)
}
