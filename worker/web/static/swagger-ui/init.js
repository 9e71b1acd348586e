// Starts Swagger UI on /docs. A file of ours rather than FastAPI's inline
// script: the Content-Security-Policy of every page allows only same-origin
// scripts, and no inline one.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    // Never ask swagger.io to validate the document (nothing leaves the host).
    validatorUrl: null
  });
})();
