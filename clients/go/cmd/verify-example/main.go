// Command verify-example asks a dpop-verifier service about one HTTP request and prints the
// answer, the way a Go API gateway or service would before serving the request.
//
//	verify-example -addr 127.0.0.1:50051 -method GET -url https://api.example.com/orders \
//	    -token "$TOKEN" -proof "$PROOF"
//
// It prints "<decision> <reason_code> <http_status>" and exits 0 on allow, 1 on deny and 2
// when the call itself failed (which a caller must treat as a deny).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	v1 "github.com/dpop-verifier/dpop-verifier/clients/go/dpopverifierv1"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:50051", "verifier address host:port")
	caFile := flag.String("ca", "", "PEM CA bundle: connect with TLS (default: plaintext)")
	method := flag.String("method", "GET", "the HTTP request's method")
	url := flag.String("url", "", "the HTTP request's full target URI")
	token := flag.String("token", "", "the access token (sent as Authorization: DPoP <token>)")
	proof := flag.String("proof", "", "the DPoP header value")
	timeout := flag.Duration("timeout", 2*time.Second, "deadline for the call")
	flag.Parse()

	transport := grpc.WithInsecure() // plaintext: only on loopback or inside a mesh with mTLS
	if *caFile != "" {
		creds, err := credentials.NewClientTLSFromFile(*caFile, "")
		if err != nil {
			fail(err)
		}
		transport = grpc.WithTransportCredentials(creds)
	}
	conn, err := grpc.Dial(*addr, transport)
	if err != nil {
		fail(err)
	}
	defer conn.Close()

	request := &v1.VerifyRequest{Method: *method, TargetUri: *url}
	if *token != "" {
		request.Authorization = []string{"DPoP " + *token}
	}
	if *proof != "" {
		request.Dpop = []string{*proof}
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	response, err := v1.NewVerifierServiceClient(conn).Verify(ctx, request)
	if err != nil {
		fail(err) // a transport failure is never an allow
	}
	fmt.Println(response.GetDecision(), response.GetReasonCode(), response.GetHttpStatus())
	if response.GetDecision() != v1.Decision_DECISION_ALLOW {
		if challenge := response.GetWwwAuthenticate(); challenge != "" {
			fmt.Println("WWW-Authenticate:", challenge)
		}
		os.Exit(1)
	}
	fmt.Println("sub:", response.GetClaims().GetSub(), "jkt:", response.GetJkt())
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "verify-example:", err)
	os.Exit(2)
}
