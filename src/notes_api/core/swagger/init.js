// Swagger UI for the notes service, started from a file of the service's own: the page's
// Content-Security-Policy allows no inline script and nothing from another origin.
"use strict";

// Swagger UI's Authorize shows only OAuth2's `error` and `error_description` of a refused
// token request; the service answers RFC 9457 problems, so their title and detail go there.
function problemAsTokenError(response) {
  if (response.ok || new URL(response.url, window.location.href).pathname !== "/auth/token") {
    return response;
  }
  try {
    const problem = JSON.parse(response.text);
    const body = JSON.stringify({ error: problem.title, error_description: problem.detail });
    response.text = body;
    response.data = body;
  } catch (ignored) {
    // Not a problem document: Swagger UI shows the status as it would anyway.
  }
  return response;
}

window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  persistAuthorization: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  responseInterceptor: problemAsTokenError,
});
