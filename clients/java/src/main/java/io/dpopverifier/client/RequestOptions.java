package io.dpopverifier.client;

import java.net.URI;
import java.net.URISyntaxException;

/**
 * How to describe an incoming request to the verifier.
 *
 * @param publicOrigin the origin clients use ({@code https://api.example.com}), followed by the
 *     path prefix a proxy strips if any ({@code https://api.example.com/api}); {@code null}: the
 *     request's own scheme and Host. The proof's htu names the URL the client used; behind a proxy
 *     that is not what the server sees, and forwarded headers a client can set must not decide it.
 * @param route names the route in the verifier's logs and metrics
 * @param proofOnly verify the proof alone (token endpoints): no access token
 */
public record RequestOptions(String publicOrigin, String route, boolean proofOnly) {
  public RequestOptions {
    if (publicOrigin != null) {
      publicOrigin = checkPublicOrigin(publicOrigin);
    }
    route = route == null ? "" : route;
  }

  /** No public origin, no route name. */
  public static RequestOptions defaults() {
    return new RequestOptions(null, "", false);
  }

  /** Only a public origin. */
  public static RequestOptions publicOrigin(String publicOrigin) {
    return new RequestOptions(publicOrigin, "", false);
  }

  /**
   * {@code publicOrigin} without a trailing slash; throws {@link IllegalArgumentException} unless
   * it is {@code http(s)://host[:port]} optionally followed by a path prefix, with no query,
   * fragment or user info.
   */
  public static String checkPublicOrigin(String publicOrigin) {
    URI uri;
    try {
      uri = new URI(publicOrigin);
    } catch (URISyntaxException e) {
      uri = null;
    }
    if (uri == null
        || !("http".equals(uri.getScheme()) || "https".equals(uri.getScheme()))
        || uri.getHost() == null
        || uri.getRawUserInfo() != null
        || publicOrigin.contains("?")
        || publicOrigin.contains("#")) {
      throw new IllegalArgumentException(
          "publicOrigin must look like https://api.example.com[/prefix]: " + publicOrigin);
    }
    return publicOrigin.replaceAll("/+$", "");
  }
}
