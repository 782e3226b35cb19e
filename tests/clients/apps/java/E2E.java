// Uses the Java client the way an application does, driven by tests/clients/test_java_client.py,
// which builds the client with Maven (clients/java/pom.xml), starts the verifiers and mints the
// access token. The test pastes the README's Java snippet into readme() before compiling.
//
// Protocol: prints {"jkt", "jwk"} (the signer's public key) as one JSON line, reads
// java.util.Properties from stdin until it closes (plain, tls, mtls, dead, ca, clientCert,
// clientKey, token), runs the scenarios and prints one JSON line of outcomes keyed by scenario.

import io.dpopverifier.client.DPoPFilter;
import io.dpopverifier.client.ProofSigner;
import io.dpopverifier.client.RequestOptions;
import io.dpopverifier.client.RetryPolicy;
import io.dpopverifier.client.Tls;
import io.dpopverifier.client.VerifierClient;
import io.dpopverifier.client.VerifierException;
import io.dpopverifier.v1.VerifyRequest;
import io.dpopverifier.v1.VerifyResponse;
import jakarta.servlet.ServletContext;
import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.function.Consumer;
import java.util.logging.Level;
import java.util.logging.Logger;
import org.apache.catalina.Context;
import org.apache.catalina.startup.Tomcat;

public final class E2E {
  private static final String TARGET = "https://api.test/orders";
  private static final HttpClient HTTP = HttpClient.newHttpClient();
  private static final List<Tomcat> SERVERS = new ArrayList<>();
  private static Properties given;
  private static ProofSigner signer;

  public static void main(String[] args) throws Exception {
    Logger.getLogger("").setLevel(Level.SEVERE);
    signer = ProofSigner.generate();
    System.out.println(json(Map.of("jkt", signer.jkt(), "jwk", signer.publicJwk())));
    System.out.flush();
    given = new Properties();
    given.load(System.in);
    Map<String, Object> results = new LinkedHashMap<>();

    // 1. The client, straight to the verifier: plaintext, TLS, mTLS, no verifier at all.
    try (VerifierClient plain = VerifierClient.builder(given.getProperty("plain")).insecure().build()) {
      VerifyRequest first = request(signer, TARGET);
      results.put("valid", ask(plain, first));
      results.put("replay", ask(plain, first));
      results.put("wrongHtu", ask(plain, request(signer, "https://api.test/admin")));
      ProofSigner restored = ProofSigner.fromJwk(signer.privateJwk());
      results.put("restoredSigner", ask(plain, request(restored, TARGET)));
    }
    Path ca = Path.of(given.getProperty("ca"));
    Path cert = Path.of(given.getProperty("clientCert"));
    Path key = Path.of(given.getProperty("clientKey"));
    RetryPolicy fast = new RetryPolicy(2, Duration.ofMillis(10), Duration.ofMillis(10), 1, RetryPolicy.DEFAULT.codes());
    Map<String, VerifierClient.Builder> transports = new LinkedHashMap<>();
    transports.put("tls", VerifierClient.builder(given.getProperty("tls"))
        .tls(Tls.builder().caFile(ca).serverName("localhost").build()));
    transports.put("tlsWrongServerName", VerifierClient.builder(given.getProperty("tls"))
        .tls(Tls.builder().caFile(ca).serverName("wrong.test").build()).retry(fast));
    transports.put("tlsUntrusted", VerifierClient.builder(given.getProperty("tls")).tls(Tls.systemRoots()).retry(fast));
    transports.put("plaintextToTls", VerifierClient.builder(given.getProperty("tls")).insecure().retry(fast));
    transports.put("mtls", VerifierClient.builder(given.getProperty("mtls"))
        .tls(Tls.builder().caFile(ca).clientCertificate(cert, key).build()));
    transports.put("mtlsWithoutCertificate", VerifierClient.builder(given.getProperty("mtls"))
        .tls(Tls.builder().caFile(ca).build()).retry(fast));
    transports.put("unreachable", VerifierClient.builder(given.getProperty("dead")).insecure().retry(fast));
    for (Map.Entry<String, VerifierClient.Builder> transport : transports.entrySet()) {
      try (VerifierClient client = transport.getValue().build()) {
        results.put(transport.getKey(), ask(client, request(signer, TARGET)));
      }
    }
    RetryPolicy endless = new RetryPolicy(10000, Duration.ofMillis(20), Duration.ofMillis(20), 1, RetryPolicy.DEFAULT.codes());
    try (VerifierClient patient = VerifierClient.builder(given.getProperty("dead")).insecure()
        .timeout(Duration.ofMillis(500)).retry(endless).build()) {
      long started = System.nanoTime();
      Map<String, Object> outcome = ask(patient, request(signer, TARGET));
      outcome.put("elapsedMs", (System.nanoTime() - started) / 1_000_000);
      results.put("deadline", outcome);
    }
    try {
      VerifierClient.builder(given.getProperty("plain")).build();
      results.put("noTransportChosen", false);
    } catch (IllegalStateException e) {
      results.put("noTransportChosen", true);
    }

    // 2. The filter in embedded Tomcat: in an application under the context path /shop, at the
    // root, behind a proxy that strips /api, with no verifier, and as the README registers it.
    try (VerifierClient plain = VerifierClient.builder(given.getProperty("plain")).insecure().build();
        VerifierClient dead = VerifierClient.builder(given.getProperty("dead")).insecure().retry(fast).build()) {
      String shop = serve("/shop", protect(plain, RequestOptions.defaults()));
      results.put("contextPath", call(shop + "/orders/42?page=2", shop + "/orders/42"));
      results.put("contextPathProofWithoutIt", call(shop + "/orders/42", shop.replace("/shop", "") + "/orders/42"));
      String root = serve("", protect(plain, RequestOptions.defaults()));
      results.put("root", call(root + "/orders/1", root + "/orders/1"));
      String publicOrigin = "https://api.example.com/api";
      String proxied = serve("", protect(plain, RequestOptions.publicOrigin(publicOrigin)));
      results.put("behindProxy", call(proxied + "/orders/1", publicOrigin + "/orders/1"));
      results.put("behindProxyInternalUrl", call(proxied + "/orders/1", proxied + "/orders/1"));
      try {
        RequestOptions.publicOrigin("https://api.example.com/?x=1");
        results.put("badPublicOrigin", false);
      } catch (IllegalArgumentException e) {
        results.put("badPublicOrigin", true);
      }
      String down = serve("", protect(dead, RequestOptions.defaults()));
      results.put("verifierDown", call(down + "/orders/1", down + "/orders/1"));
      String readme = serve("", servletContext -> {
        try {
          readme(servletContext);
        } catch (Exception e) {
          throw new IllegalStateException(e);
        }
        hello(servletContext);
      });
      results.put("readme", call(readme + "/orders/7", "https://api.example.com/orders/7"));
      results.put("readmeInternalUrl", call(readme + "/orders/7", readme + "/orders/7"));
    }
    for (Tomcat tomcat : SERVERS) {
      tomcat.stop();
      tomcat.destroy();
    }
    System.out.println(json(results));
    System.exit(0); // the README snippet's client is never closed, as in an application
  }

  /** The README's snippet, pasted here by the test. */
  static void readme(ServletContext servletContext) throws Exception {
    // README SNIPPET
  }

  static VerifyRequest request(ProofSigner proofSigner, String proofUrl) throws Exception {
    String token = given.getProperty("token");
    return VerifyRequest.newBuilder()
        .setMethod("GET")
        .setTargetUri(TARGET)
        .addAuthorization("DPoP " + token)
        .addDpop(proofSigner.proof("GET", proofUrl, token, null))
        .build();
  }

  static Map<String, Object> ask(VerifierClient client, VerifyRequest request) {
    Map<String, Object> outcome = new LinkedHashMap<>();
    try {
      VerifyResponse answer = client.verify(request);
      outcome.put("allowed", VerifierClient.isAllowed(answer));
      outcome.put("reason", answer.getReasonCode());
      outcome.put("status", answer.getHttpStatus());
      outcome.put("jkt", answer.getJkt());
      outcome.put("sub", answer.getClaims().getSub());
    } catch (VerifierException e) {
      outcome.put("error", "VerifierException");
      outcome.put("code", e.code().name());
      outcome.put("attempts", e.attempts());
    }
    return outcome;
  }

  static Consumer<ServletContext> protect(VerifierClient client, RequestOptions options) {
    return servletContext -> {
      servletContext.addFilter("dpop", new DPoPFilter(client, options))
          .addMappingForUrlPatterns(null, false, "/*");
      hello(servletContext);
    };
  }

  static void hello(ServletContext servletContext) {
    servletContext.addServlet("hello", new HttpServlet() {
      @Override
      protected void service(HttpServletRequest request, HttpServletResponse response) throws IOException {
        VerifyResponse answer = (VerifyResponse) request.getAttribute(DPoPFilter.ANSWER_ATTRIBUTE);
        response.setContentType("application/json");
        response.getWriter().write(json(Map.of("sub", answer.getClaims().getSub(), "pathInfo", request.getPathInfo())));
      }
    }).addMapping("/orders/*");
  }

  /** Starts a Tomcat with one application at contextPath; returns its base URL. */
  static String serve(String contextPath, Consumer<ServletContext> setup) throws Exception {
    Tomcat tomcat = new Tomcat();
    tomcat.setBaseDir(Files.createTempDirectory("tomcat").toString());
    tomcat.setPort(0);
    tomcat.getConnector();
    Context context = tomcat.addContext(contextPath, null);
    context.addServletContainerInitializer((classes, servletContext) -> setup.accept(servletContext), null);
    tomcat.start();
    SERVERS.add(tomcat);
    return "http://127.0.0.1:" + tomcat.getConnector().getLocalPort() + contextPath;
  }

  static Map<String, Object> call(String url, String proofUrl) throws Exception {
    Map<String, String> headers = signer.headers("POST", proofUrl, given.getProperty("token"));
    HttpRequest.Builder request = HttpRequest.newBuilder(URI.create(url)).POST(HttpRequest.BodyPublishers.ofString("{}"));
    headers.forEach(request::header);
    HttpResponse<String> response = HTTP.send(request.build(), HttpResponse.BodyHandlers.ofString());
    Map<String, Object> outcome = new LinkedHashMap<>();
    outcome.put("status", response.statusCode());
    outcome.put("wwwAuthenticate", response.headers().firstValue("WWW-Authenticate").orElse(""));
    outcome.put("body", new Raw(response.body()));
    return outcome;
  }

  record Raw(String json) {}

  static String json(Object value) {
    if (value instanceof Raw raw) {
      return raw.json().isEmpty() ? "null" : raw.json();
    }
    if (value instanceof Map<?, ?> map) {
      List<String> members = new ArrayList<>();
      map.forEach((k, v) -> members.add(json(String.valueOf(k)) + ":" + json(v)));
      return "{" + String.join(",", members) + "}";
    }
    if (value instanceof Number || value instanceof Boolean) {
      return String.valueOf(value);
    }
    if (value == null) {
      return "null";
    }
    StringBuilder out = new StringBuilder("\"");
    for (char c : value.toString().toCharArray()) {
      if (c == '"' || c == '\\') {
        out.append('\\').append(c);
      } else if (c < 0x20) {
        out.append(String.format("\\u%04x", (int) c));
      } else {
        out.append(c);
      }
    }
    return out.append('"').toString();
  }
}
