package io.dpopverifier.client;

import io.dpopverifier.v1.VerifyRequest;
import jakarta.servlet.http.HttpServletRequest;
import java.util.Collections;

/** Builds a {@link VerifyRequest} from the request a Servlet container received. */
public final class VerifyRequests {
  private VerifyRequests() {}

  /**
   * The request as the client sent it. The path is {@link HttpServletRequest#getRequestURI()},
   * which keeps the context path and servlet path (an application deployed under {@code /shop}
   * still names {@code /shop/orders}) and the client's percent-encoding. Every {@code
   * Authorization} and {@code DPoP} value is passed on, so the verifier can reject duplicates.
   * Behind a proxy set {@link RequestOptions#publicOrigin()}.
   */
  public static VerifyRequest fromServlet(HttpServletRequest request, RequestOptions options) {
    String origin = options.publicOrigin();
    if (origin == null) {
      String host = request.getHeader("Host");
      if (host == null || host.isEmpty()) {
        host = request.getServerName() + ":" + request.getServerPort();
      }
      origin = request.getScheme() + "://" + host;
    }
    String target = origin + request.getRequestURI();
    if (request.getQueryString() != null) {
      target += "?" + request.getQueryString();
    }
    return VerifyRequest.newBuilder()
        .setMethod(request.getMethod())
        .setTargetUri(target)
        .addAllAuthorization(Collections.list(request.getHeaders("Authorization")))
        .addAllDpop(Collections.list(request.getHeaders("DPoP")))
        .setClientAddress(request.getRemoteAddr() == null ? "" : request.getRemoteAddr())
        .setRoute(options.route())
        .setProofOnly(options.proofOnly())
        .build();
  }
}
