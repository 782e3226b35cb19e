module example.com/dpop-e2e

go 1.19

require github.com/dpop-verifier/dpop-verifier/clients/go v0.2.0
