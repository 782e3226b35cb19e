package io.dpopverifier.example;

import io.dpopverifier.client.Tls;
import io.dpopverifier.client.VerifierClient;
import io.dpopverifier.client.VerifierException;
import io.dpopverifier.v1.VerifyRequest;
import io.dpopverifier.v1.VerifyResponse;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;

/**
 * Asks a dpop-verifier service about one HTTP request and prints the answer, the way a Java
 * gateway or service would before serving the request.
 *
 * <pre>
 * java io.dpopverifier.example.VerifyExample --addr 127.0.0.1:50051 --method GET \
 *     --url https://api.example.com/orders --token "$TOKEN" --proof "$PROOF" \
 *     [--ca ca.pem [--cert client.pem --key client.key] [--server-name NAME]]
 * </pre>
 *
 * <p>Prints {@code <decision> <reason_code> <http_status>}; exits 0 on allow, 1 on deny and 2 when
 * there was no answer (the call failed, or the client could not be set up), which a caller must
 * treat as a deny too.
 */
public final class VerifyExample {
  private VerifyExample() {}

  public static void main(String[] args) {
    int status;
    try {
      status = run(parse(args));
    } catch (VerifierException e) {
      System.err.println("verify-example: " + e.getMessage()); // no answer: never an allow
      status = 2;
    } catch (RuntimeException e) {
      System.err.println("verify-example: " + e);
      status = 2;
    }
    System.exit(status);
  }

  private static int run(Map<String, String> options) throws VerifierException {
    VerifierClient.Builder builder =
        VerifierClient.builder(options.getOrDefault("addr", "127.0.0.1:50051"));
    if (options.containsKey("ca")) {
      Tls.Builder tls = Tls.builder().caFile(Path.of(options.get("ca")));
      if (options.containsKey("cert")) {
        tls.clientCertificate(Path.of(options.get("cert")), Path.of(options.get("key")));
      }
      if (options.containsKey("server-name")) {
        tls.serverName(options.get("server-name"));
      }
      builder.tls(tls.build());
    } else {
      builder.insecure(); // plaintext: loopback or an mTLS mesh only
    }
    VerifyRequest.Builder request =
        VerifyRequest.newBuilder()
            .setMethod(options.getOrDefault("method", "GET"))
            .setTargetUri(options.getOrDefault("url", ""));
    if (options.containsKey("token")) {
      request.addAuthorization("DPoP " + options.get("token"));
    }
    if (options.containsKey("proof")) {
      request.addDpop(options.get("proof"));
    }
    try (VerifierClient verifier = builder.build()) {
      VerifyResponse answer = verifier.verify(request.build());
      System.out.println(
          answer.getDecision() + " " + answer.getReasonCode() + " " + answer.getHttpStatus());
      if (!VerifierClient.isAllowed(answer)) {
        VerifierClient.responseHeaders(answer)
            .forEach((name, value) -> System.out.println(name + ": " + value));
        return 1;
      }
      System.out.println("sub: " + answer.getClaims().getSub() + " jkt: " + answer.getJkt());
      return 0;
    }
  }

  private static Map<String, String> parse(String[] args) {
    Map<String, String> options = new HashMap<>();
    for (int i = 0; i + 1 < args.length; i += 2) {
      if (!args[i].startsWith("--")) {
        throw new IllegalArgumentException("expected --name value, got " + args[i]);
      }
      options.put(args[i].substring(2), args[i + 1]);
    }
    return options;
  }
}
