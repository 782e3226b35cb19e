package io.dpopverifier.example;

import io.dpopverifier.v1.Decision;
import io.dpopverifier.v1.VerifierServiceGrpc;
import io.dpopverifier.v1.VerifyRequest;
import io.dpopverifier.v1.VerifyResponse;
import io.grpc.ChannelCredentials;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import io.grpc.TlsChannelCredentials;
import java.io.File;
import java.io.IOException;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * Asks a dpop-verifier service about one HTTP request and prints the answer, the way a Java
 * gateway or service would before serving the request.
 *
 * <pre>
 * java io.dpopverifier.example.VerifyExample --addr 127.0.0.1:50051 --method GET \
 *     --url https://api.example.com/orders --token "$TOKEN" --proof "$PROOF" [--ca ca.pem]
 * </pre>
 *
 * <p>Prints {@code <decision> <reason_code> <http_status>}; exits 0 on allow, 1 on deny and 2 when
 * the call itself failed (which a caller must treat as a deny).
 */
public final class VerifyExample {
  private VerifyExample() {}

  public static void main(String[] args) throws IOException, InterruptedException {
    Map<String, String> options = parse(args);
    ChannelCredentials credentials =
        options.containsKey("ca")
            ? TlsChannelCredentials.newBuilder().trustManager(new File(options.get("ca"))).build()
            : InsecureChannelCredentials.create(); // plaintext: loopback or an mTLS mesh only
    ManagedChannel channel =
        Grpc.newChannelBuilder(options.getOrDefault("addr", "127.0.0.1:50051"), credentials).build();
    try {
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
      VerifyResponse response =
          VerifierServiceGrpc.newBlockingStub(channel)
              .withDeadlineAfter(2, TimeUnit.SECONDS)
              .verify(request.build());
      System.out.println(
          response.getDecision() + " " + response.getReasonCode() + " " + response.getHttpStatus());
      if (response.getDecision() != Decision.DECISION_ALLOW) {
        if (!response.getWwwAuthenticate().isEmpty()) {
          System.out.println("WWW-Authenticate: " + response.getWwwAuthenticate());
        }
        System.exit(1);
      }
      System.out.println("sub: " + response.getClaims().getSub() + " jkt: " + response.getJkt());
    } catch (StatusRuntimeException e) {
      System.err.println("verify-example: " + e.getStatus()); // never an allow
      System.exit(2);
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
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
