package io.dpopverifier.client;

import io.dpopverifier.v1.VerifyResponse;
import jakarta.servlet.Filter;
import jakarta.servlet.FilterChain;
import jakarta.servlet.ServletException;
import jakarta.servlet.ServletRequest;
import jakarta.servlet.ServletResponse;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * A Servlet filter (Jakarta Servlet 5+: Tomcat 10, Jetty 11, Spring Boot 3) that asks the verifier
 * before the application sees a request.
 *
 * <pre>
 * servletContext.addFilter("dpop", new DPoPFilter(verifier, RequestOptions.publicOrigin(origin)))
 *     .addMappingForUrlPatterns(null, false, "/*");
 * </pre>
 *
 * <p>On allow the chain runs with the verifier's answer in the request attribute {@link
 * #ANSWER_ATTRIBUTE}, and a {@code DPoP-Nonce} the verifier issued is added to the response. On a
 * deny the chain does not run: the answer is the verifier's HTTP status, {@code WWW-Authenticate}
 * and {@code DPoP-Nonce} headers and {@code {"error": <rfc_error>}}. When the verifier gives no
 * answer it is 503: never an allow, and never blamed on the client. Correct in an application
 * deployed under a context path (see {@link VerifyRequests#fromServlet}); behind a proxy set the
 * public origin.
 */
public final class DPoPFilter implements Filter {
  /** The request attribute holding the verifier's {@link VerifyResponse} on allow. */
  public static final String ANSWER_ATTRIBUTE = "dpop.answer";

  private static final Logger LOG = Logger.getLogger(DPoPFilter.class.getName());

  private final VerifierClient client;
  private final RequestOptions options;

  public DPoPFilter(VerifierClient client, RequestOptions options) {
    this.client = client;
    this.options = options;
  }

  @Override
  public void doFilter(ServletRequest request, ServletResponse response, FilterChain chain)
      throws IOException, ServletException {
    if (!(request instanceof HttpServletRequest http)
        || !(response instanceof HttpServletResponse reply)) {
      chain.doFilter(request, response);
      return;
    }
    VerifyResponse answer;
    try {
      answer = client.verify(VerifyRequests.fromServlet(http, options));
    } catch (VerifierException e) {
      LOG.log(Level.WARNING, "no answer from the verifier ({0}): 503", e.code());
      writeError(reply, HttpServletResponse.SC_SERVICE_UNAVAILABLE, Map.of(), "temporarily_unavailable");
      return;
    }
    if (!VerifierClient.isAllowed(answer)) {
      int status = answer.getHttpStatus() == 0 ? 401 : answer.getHttpStatus();
      String error = answer.getRfcError().isEmpty() ? "unauthorized" : answer.getRfcError();
      writeError(reply, status, VerifierClient.responseHeaders(answer), error);
      return;
    }
    if (!answer.getDpopNonce().isEmpty()) {
      reply.setHeader("DPoP-Nonce", answer.getDpopNonce());
    }
    http.setAttribute(ANSWER_ATTRIBUTE, answer);
    chain.doFilter(request, response);
  }

  private static void writeError(
      HttpServletResponse reply, int status, Map<String, String> headers, String error)
      throws IOException {
    reply.setStatus(status);
    headers.forEach(reply::setHeader);
    reply.setContentType("application/json");
    byte[] body = Json.object(Map.of("error", error)).getBytes(StandardCharsets.UTF_8);
    reply.setContentLength(body.length);
    reply.getOutputStream().write(body);
  }
}
